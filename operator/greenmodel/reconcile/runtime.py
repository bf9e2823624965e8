"""The operator's process state: informer-style caches, the GPU inventory, the work queue, the carbon cache and
the serving-metrics source, the per-GreenModel memory, and the background loops (resync timer, config reload).

kopf's watch handlers (handlers.py) fill the caches and enqueue keys; the work queue runs one reconcile pass per
GreenModel at a time in a thread pool (``Runtime.reconciler``, set by handlers.py to ``reconcile_pass``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Protocol

from greenmodel import observability as obs
from greenmodel.api.state import ServingMetrics
from greenmodel.kube import client as kc
from greenmodel.kube import names
from greenmodel.kube.cache import ObjectCache
from greenmodel.kube.client import ApiError, KubeAccess, KubeClient
from greenmodel.kube.inventory import Demands, Inventory, demand_totals, deployment_demand, gpu_inventory
from greenmodel.kube.workqueue import WorkQueue
from greenmodel.planning.decide import Memory
from greenmodel.settings import Settings, SettingsError, load_settings
from greenmodel.signals.carbon.cache import ZoneCache, ZoneStatus
from greenmodel.signals.metrics import MetricsClient

log = logging.getLogger("greenmodel.operator")

GROUP, VERSION = "greenmodel.dev", "v1alpha1"
Key = tuple[str, str]  # (namespace, name) of a GreenModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CarbonSource(Protocol):
    """Per-zone grid intensity (signals.carbon.cache.ZoneCache; tests pass stand-ins)."""

    def zones(self) -> list[str]: ...

    def status(self, zone: str) -> ZoneStatus: ...


class MetricsSource(Protocol):
    """Per-GreenModel serving metrics (signals.metrics.MetricsClient; tests pass stand-ins)."""

    def get(self, namespace: str, instance: str, model_name: str | None = None) -> ServingMetrics: ...


Reconciler = Callable[["Runtime", dict], "float | None"]


@dataclass
class Runtime:
    """Everything a pass needs, shared by the handlers (kopf's memo, made explicit)."""

    client: KubeAccess
    settings: Settings
    config_path: str | None = None
    workers: int = 8
    clock: Callable[[], datetime] = utcnow
    carbon: CarbonSource | None = None
    serving_metrics: MetricsSource | None = None
    greenmodels: ObjectCache = field(default_factory=lambda: ObjectCache("greenmodels"))
    catalogs: ObjectCache = field(default_factory=lambda: ObjectCache("modelcatalogs"))
    deployments: ObjectCache = field(default_factory=lambda: ObjectCache("deployments"))
    services: ObjectCache = field(default_factory=lambda: ObjectCache("services"))
    pdbs: ObjectCache = field(default_factory=lambda: ObjectCache("poddisruptionbudgets"))
    claims: ObjectCache = field(default_factory=lambda: ObjectCache("persistentvolumeclaims"))  # model caches
    jobs: ObjectCache = field(default_factory=lambda: ObjectCache("jobs"))  # their download Jobs
    pods: ObjectCache = field(default_factory=lambda: ObjectCache("pods", index_label=names.LABEL_INSTANCE))
    health: obs.Health = field(default_factory=obs.Health)
    recorder: obs.EventRecorder | None = None
    queue: WorkQueue | None = None
    executor: ThreadPoolExecutor | None = None
    # GPU inventory of nodes minus pods that are not ours, refreshed at most every ttl seconds.
    inventory_ttl_seconds: float = 10.0
    _inventory: Inventory | None = None
    _inventory_at: float = 0.0
    # One refresh at a time: without it every worker whose pass starts after the ttl ran out re-listed all
    # nodes and pods (up to `workers` concurrent cluster-wide LISTs per tick; seen as 3 refreshes per 10 s).
    _inventory_lock: threading.Lock = field(default_factory=threading.Lock)
    _warned_pod_scope: bool = False
    # Our Deployments' GPU demand, derived from the Deployment cache at a version (an idle pass at 1,000
    # GreenModels spent 75% of its CPU re-deriving it from every Deployment); per-object memo by resourceVersion.
    _demands: tuple[int, Demands, dict[str, Demands]] | None = None
    _demand_memo: dict[tuple[str, str], tuple[str, tuple[tuple[str, str], str, int] | None]] = field(
        default_factory=dict)
    catalog_memo: dict[str, tuple[tuple, object]] = field(default_factory=dict)  # name -> (version, resolved)
    _reported_requests: dict[str, int] = field(default_factory=dict)
    _reported_seconds: dict[str, float] = field(default_factory=dict)
    # Timing knobs of the pass (planning.decide.Tuning).
    capacity_exclusion_seconds: float = 300.0
    drain_seconds: float = 5.0
    poll_seconds: float = 3.0
    accounting_flush_seconds: float = 3600.0
    namespaces: list[str] = field(default_factory=list)
    reconciler: Reconciler | None = None  # the pass (handlers.reconcile_pass)
    # What each GreenModel's passes remember between them (learned latency factors, held metrics, running
    # emissions totals, the freshest measured block, capacity exclusions): planning.decide.Memory.
    memory: dict[Key, Memory] = field(default_factory=dict)

    @classmethod
    def create(cls, settings, *, config_path: str | None = None, kubeconfig: str | None = None,
               workers: int = 8) -> "Runtime":
        client = KubeClient.from_environment(kubeconfig, pool_size=workers + 4)
        interval = settings.reconcile.timer_interval_seconds
        rt = cls(client=client, settings=settings, config_path=config_path, workers=workers)
        rt.health = obs.Health(max_age_seconds=max(120.0, 4 * interval))
        rt.recorder = obs.EventRecorder(lambda ev: rt.client.create(kc.EVENTS, ev, ev["metadata"]["namespace"]),
                                        suppress_seconds=max(600.0, 10 * interval))
        rt.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="greenmodel-pass")
        rt.queue = WorkQueue(rt._work, workers=workers, base_backoff=1.0,
                             max_backoff=60.0, min_interval=1.0)
        rt.carbon = build_carbon(settings)
        rt.serving_metrics = build_serving_metrics(settings)
        return rt

    # -- inventory -------------------------------------------------------------------------
    def inventory(self) -> Inventory:
        with self._inventory_lock:
            return self._inventory_locked()

    def _inventory_locked(self) -> Inventory:
        now = time.monotonic()
        if self._inventory is None or now - self._inventory_at > self.inventory_ttl_seconds:
            nodes = self.client.list(kc.NODES)
            live = "status.phase!=Succeeded,status.phase!=Failed"
            try:
                pods = self.client.list(kc.PODS, field_selector=live)
            except ApiError as exc:
                if exc.status != 403 or not self.namespaces:
                    raise
                # Namespaced install without cluster-wide pod read: count what we may see and
                # say that free GPUs are overestimated (the scheduler's Pending pods then tell).
                if not self._warned_pod_scope:
                    log.warning("cannot list pods cluster-wide (%s); GPU usage of other namespaces is "
                                "not counted, free GPUs may be overestimated", exc.message)
                    self._warned_pod_scope = True
                pods = [p for ns in self.namespaces for p in self.client.list(kc.PODS, ns, field_selector=live)]
            self._inventory = gpu_inventory(nodes, pods, skip_managed=True,
                                            served_namespaces=set(self.namespaces) if self.namespaces else None)
            self._inventory_at = now
        return self._inventory

    def demand_totals(self) -> tuple[Demands, dict[str, Demands]]:
        """(GPUs per pool asked for by all our Deployments, the same per owner uid), recomputed only
        when the Deployment cache changed, and then only for Deployments whose resourceVersion moved."""
        cached = self._demands
        if cached is not None and cached[0] == self.deployments.version:
            return cached[1], cached[2]
        version, deps = self.deployments.items_with_version()
        memo: dict[tuple[str, str], tuple[str, tuple[tuple[str, str], str, int] | None]] = {}
        demands = []
        for dep in deps:
            meta = dep.get("metadata") or {}
            key, rv = (meta.get("namespace") or "", meta.get("name") or ""), meta.get("resourceVersion") or ""
            hit = self._demand_memo.get(key)
            demand = hit[1] if hit is not None and hit[0] == rv and rv else deployment_demand(dep)
            memo[key] = (rv, demand)
            if demand:
                demands.append(demand)
        totals, by_owner = demand_totals(demands)
        self._demand_memo = memo
        self._demands = (version, totals, by_owner)
        return totals, by_owner

    # -- caches ------------------------------------------------------------------------------
    def prime(self) -> None:
        """One LIST per kind before any pass, so a pass never mistakes 'not seen yet' for 'absent'."""
        sel = names.ALL_OWNED_SELECTOR
        scopes: list[str | None] = list(self.namespaces) or [None]

        def listed(kind, **kw):
            out: list[dict] = []
            for ns in scopes:
                out.extend(self.client.list(kind, ns, **kw))
            return out

        self.catalogs.replace_all(self.client.list(kc.MODELCATALOGS))
        self.deployments.replace_all(listed(kc.DEPLOYMENTS, label_selector=sel))
        self.services.replace_all(listed(kc.SERVICES, label_selector=sel))
        self.pdbs.replace_all(listed(kc.PDBS, label_selector=sel))
        self.claims.replace_all(listed(kc.PVCS, label_selector=sel))
        self.jobs.replace_all(listed(kc.JOBS, label_selector=sel))
        self.pods.replace_all(listed(kc.PODS, label_selector=sel))
        self.greenmodels.replace_all(listed(kc.GREENMODELS))
        for key in self.greenmodels.keys():
            self.queue.add(key)
        obs.GREENMODELS.set(len(self.greenmodels))

    def owner_key(self, obj: dict) -> Key | None:
        meta = obj.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "GreenModel" and ref.get("apiVersion", "").startswith(GROUP + "/"):
                return meta.get("namespace") or "", ref.get("name", "")
        inst = (meta.get("labels") or {}).get(names.LABEL_INSTANCE)
        if inst and (meta.get("labels") or {}).get(names.LABEL_NAME) == names.APP_NAME:
            # pods: owned by ReplicaSets; find the GreenModel whose label value matches
            ns = meta.get("namespace") or ""
            for gns, gname in self.greenmodels.keys():
                if gns == ns and names.label_value(gname) == inst:
                    return gns, gname
        return None

    # -- the work ----------------------------------------------------------------------------
    async def _work(self, key: Key) -> float | None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        obs.RECONCILES_IN_FLIGHT.inc()
        try:
            result = await loop.run_in_executor(self.executor, self.reconcile_key, key)
            obs.RECONCILE_TOTAL.labels("success").inc()
            return result
        except Exception:
            obs.RECONCILE_TOTAL.labels("error").inc()
            raise
        finally:
            obs.RECONCILES_IN_FLIGHT.dec()
            self._export_request_counts()
            obs.RECONCILE_DURATION.observe(time.perf_counter() - started)
            obs.QUEUE_DEPTH.set(len(self.queue))
            self.health.beat()

    def _export_request_counts(self) -> None:
        """Kubernetes API requests made by the reconciler (kopf's watches not included), by verb."""
        counts = dict(getattr(self.client, "requests_total", {}) or {})
        for verb, n in counts.items():
            delta = n - self._reported_requests.get(verb, 0)
            if delta > 0:
                obs.API_REQUESTS_TOTAL.labels(verb).inc(delta)
                self._reported_requests[verb] = n
        for verb, secs in dict(getattr(self.client, "request_seconds_total", {}) or {}).items():
            delta = secs - self._reported_seconds.get(verb, 0.0)
            if delta > 0:
                obs.API_REQUEST_SECONDS_TOTAL.labels(verb).inc(delta)
                self._reported_seconds[verb] = secs

    def reconcile_key(self, key: Key) -> float | None:
        body = self.greenmodels.get(*key)
        if body is None:
            return None
        if self.reconciler is None:
            raise RuntimeError("Runtime.reconciler is not set (handlers.serve sets it)")
        return self.reconciler(self, body)

    # -- background loops ------------------------------------------------------------------
    async def resync_loop(self) -> None:
        """The timer: every interval, every GreenModel gets a pass (spread over the interval)."""
        while True:
            interval = float(self.settings.reconcile.timer_interval_seconds)
            keys = self.greenmodels.keys()
            n = max(1, len(keys))
            for i, key in enumerate(keys):
                self.queue.add(key, delay=interval * 0.8 * i / n)
            obs.GREENMODELS.set(len(keys))
            obs.QUEUE_DEPTH.set(len(self.queue))
            self.health.beat()
            await asyncio.sleep(interval)

    async def config_reload_loop(self, poll_seconds: float = 2.0) -> None:
        """Reload the config file when it changes (ConfigMap updates reach mounted files)."""
        if not self.config_path:
            return

        def mtime() -> float | None:
            try:
                return os.stat(self.config_path).st_mtime_ns
            except OSError:
                return None

        last = mtime()
        while True:
            await asyncio.sleep(poll_seconds)
            now = mtime()
            if now is None or now == last:
                continue
            last = now
            try:
                settings = await asyncio.to_thread(load_settings, self.config_path)
            except SettingsError as exc:
                log.error("config reload refused, keeping the previous config: %s", exc)
                continue
            old_carbon = self.carbon
            self.settings = settings
            self.carbon = build_carbon(settings)
            self.serving_metrics = build_serving_metrics(settings)
            if old_carbon is not None:
                await asyncio.to_thread(old_carbon.stop)
            log.info("config reloaded from %s; re-planning every GreenModel", self.config_path)
            for key in self.greenmodels.keys():
                self.queue.add(key)


def build_carbon(settings: Settings) -> ZoneCache | None:
    """One ZoneCache for the configured regions, refreshed by its own thread (or None)."""
    if not settings.carbon.regions:
        return None
    cache = ZoneCache.from_settings(settings, listener=obs.record_carbon_outcome)
    cache.refresh_due()  # first readings before the first pass (static: instant)
    cache.start()
    return cache


def build_serving_metrics(settings: Settings) -> MetricsClient:
    """The Prometheus serving-metrics source (it answers NotConfigured without a URL)."""
    return MetricsClient(settings)


def _prime_with_retry(rt: Runtime) -> None:
    delay = 1.0
    while True:
        try:
            rt.prime()
            return
        except (ApiError, OSError, Exception) as exc:  # API not reachable yet: keep trying
            log.warning("initial listing failed, retrying in %.0fs: %s", delay, exc)
            time.sleep(delay)
            delay = min(30.0, delay * 2)


