"""kopf registration and the reconcile loop: observe → planning.plan() → apply, status from observed state.

How kopf is used, and why (numbers in docs/operations.md):

- Only ``@kopf.on.event`` (watching) handlers are registered. They store the object in an
  in-memory cache and enqueue its GreenModel in a keyed work queue. kopf's changing handlers
  (on.create/update/resume) persist progress and a diff-base in annotations/status of the
  object (writes on every change, two PATCHes per handling), and ``@kopf.timer``/``daemon``
  always add a finalizer (``requires_finalizer=True`` in kopf 1.45 on.py), which blocks
  deletion while the operator is down. Watching handlers write nothing, add no finalizer and
  need no patch RBAC on GreenModels; deletion is left to owner references.
- The "timer" is a resync loop that enqueues every known GreenModel every
  ``reconcile.timerIntervalSeconds`` (spread over the interval): level-triggered, so the grid,
  the metrics and the GPU inventory are re-read without any event on our object.
- One pass per GreenModel at a time (work queue), coalesced events, at most one pass per key
  per second, exponential backoff on errors; ``kopf.TemporaryError(delay=...)`` from a pass
  requeues after that delay. kopf is at-least-once; so are we: children have deterministic
  names, are server-side applied under one field manager, and status is recomputed from the
  observed children on every pass.
- Blocking Kubernetes calls run in our own thread pool (``run_in_executor``), never on the
  loop; the event handlers are ``async`` and only touch memory, so they never wait for a pass.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import kopf

from greenmodel import observability as obs
from greenmodel.kube import client as kc
from greenmodel.kube import names
from greenmodel.kube.cache import ObjectCache
from greenmodel.kube.client import ApiError, KubeClient
from greenmodel.kube.inventory import Inventory, deployment_demand, gpu_inventory
from greenmodel.kube.workqueue import WorkQueue

log = logging.getLogger("greenmodel.operator")

GROUP, VERSION = "greenmodel.dev", "v1alpha1"
Key = tuple[str, str]  # (namespace, name) of a GreenModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Runtime:
    """Everything a pass needs, shared by the handlers (kopf's memo, made explicit)."""

    client: KubeClient
    settings: Any  # greenmodel.settings.Settings
    config_path: str | None = None
    workers: int = 8
    clock: Callable[[], datetime] = utcnow
    carbon: Any = None  # signals.carbon.cache.ZoneCache
    serving_metrics: Any = None  # signals.metrics source, when configured
    greenmodels: ObjectCache = field(default_factory=lambda: ObjectCache("greenmodels"))
    catalogs: ObjectCache = field(default_factory=lambda: ObjectCache("modelcatalogs"))
    deployments: ObjectCache = field(default_factory=lambda: ObjectCache("deployments"))
    services: ObjectCache = field(default_factory=lambda: ObjectCache("services"))
    pdbs: ObjectCache = field(default_factory=lambda: ObjectCache("poddisruptionbudgets"))
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
    _demands: tuple[int, Any, Any] | None = None
    _demand_memo: dict[tuple[str, str], tuple[str, Any]] = field(default_factory=dict)
    catalog_memo: dict[str, tuple[tuple, Any]] = field(default_factory=dict)  # name -> (version, resolve result)
    _reported_requests: dict[str, int] = field(default_factory=dict)
    # (ns, name) -> {(region, product): (monotonic expiry, message)}: capacity seen missing.
    capacity_exclusions: dict[Key, dict[tuple[str, str], tuple[float, str]]] = field(default_factory=dict)
    capacity_exclusion_seconds: float = 300.0
    drain_seconds: float = 5.0
    poll_seconds: float = 3.0
    namespaces: list[str] = field(default_factory=list)
    reconciler: Any = None  # the pass implementation (greenmodel.handlers.reconcile_pass by default)
    last_metrics: dict[Key, Any] = field(default_factory=dict)  # last good serving metrics (held)
    # Latency factors the planner learned from serving metrics, per GreenModel (Plan.learned).
    learned: dict[Key, Any] = field(default_factory=dict)
    # Emissions accounting: advanced in memory every pass, written to status at most every
    # accounting_flush_seconds (so an idle GreenModel is not rewritten every tick).
    emissions: dict[Key, Any] = field(default_factory=dict)
    accounting_flush_seconds: float = 3600.0
    measured: dict[Key, dict] = field(default_factory=dict)  # freshest status.measured (written rarely)

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

    def demand_totals(self):
        """(GPUs per pool asked for by all our Deployments, the same per owner uid), recomputed only
        when the Deployment cache changed, and then only for Deployments whose resourceVersion moved."""
        from greenmodel.kube.inventory import demand_totals

        cached = self._demands
        if cached is not None and cached[0] == self.deployments.version:
            return cached[1], cached[2]
        version, deps = self.deployments.items_with_version()
        memo: dict[tuple[str, str], tuple[str, Any]] = {}
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
        try:
            result = await loop.run_in_executor(self.executor, self.reconcile_key, key)
            obs.RECONCILE_TOTAL.labels("success").inc()
            return result
        except Exception:
            obs.RECONCILE_TOTAL.labels("error").inc()
            raise
        finally:
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

    def reconcile_key(self, key: Key) -> float | None:
        body = self.greenmodels.get(*key)
        if body is None:
            return None
        impl = self.reconciler or reconcile_pass
        return impl(self, body)

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
        from greenmodel.settings import SettingsError, load_settings

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


def build_carbon(settings):
    """One ZoneCache for the configured regions, refreshed by its own thread (or None)."""
    if not settings.carbon.regions:
        return None
    from greenmodel.signals.carbon.cache import ZoneCache

    from greenmodel.observability import record_carbon_outcome

    cache = ZoneCache.from_settings(settings, listener=record_carbon_outcome)
    cache.refresh_due()  # first readings before the first pass (static: instant)
    cache.start()
    return cache


def build_serving_metrics(settings):
    """The Prometheus serving-metrics source (it answers NotConfigured without a URL)."""
    from greenmodel.signals.metrics import MetricsClient

    return MetricsClient(settings)


# ---------------------------------------------------------------------------------------------
# kopf registration
def build_registry(rt: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        """In a pod: the ServiceAccount token; else the kubeconfig ($KUBECONFIG / --kubeconfig)."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.event(GROUP, VERSION, "greenmodels", registry=registry)
    async def greenmodel_event(type: str, body: Any, **_: Any) -> None:  # noqa: A002 - kopf's name
        raw = dict(body)
        key = (raw["metadata"].get("namespace", ""), raw["metadata"]["name"])
        if type == "DELETED":
            rt.greenmodels.remove(key)
            rt.queue.forget(key)
            rt.capacity_exclusions.pop(key, None)
            rt.emissions.pop(key, None)
            rt.measured.pop(key, None)
            rt.last_metrics.pop(key, None)
            rt.learned.pop(key, None)
            obs.forget_object(*key)
            obs.GREENMODELS.set(len(rt.greenmodels))
            return
        old = rt.greenmodels.get(*key)
        rt.greenmodels.upsert(raw)
        # Our own status writes come back as events: they change nothing we plan from.
        if old is not None and _same_inputs(old, raw):
            return
        rt.queue.add(key)

    @kopf.on.event(GROUP, VERSION, "modelcatalogs", registry=registry)
    async def catalog_event(type: str, body: Any, **_: Any) -> None:  # noqa: A002
        raw = dict(body)
        if type == "DELETED":
            rt.catalogs.remove(raw)
        else:
            rt.catalogs.upsert(raw)
        for key in rt.greenmodels.keys():
            rt.queue.add(key)

    def child_handler(cache: ObjectCache):
        async def handler(type: str, body: Any, **_: Any) -> None:  # noqa: A002
            raw = dict(body)
            if type == "DELETED":
                cache.remove(raw)
            elif not cache.upsert(raw):
                return
            key = rt.owner_key(raw)
            if key is not None and rt.greenmodels.get(*key) is not None:
                rt.queue.add(key)
        return handler

    ours = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_NAME: names.APP_NAME}
    kopf.on.event("apps", "v1", "deployments", labels=ours, registry=registry)(child_handler(rt.deployments))
    kopf.on.event("", "v1", "services", labels=ours, registry=registry)(child_handler(rt.services))
    kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=ours, registry=registry)(child_handler(rt.pdbs))
    kopf.on.event("", "v1", "pods", labels=ours, registry=registry)(child_handler(rt.pods))
    return registry


def _same_inputs(old: dict, new: dict) -> bool:
    """Whether two versions of a GreenModel differ only in status/managed metadata."""
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    return (old.get("spec") == new.get("spec") and om.get("generation") == nm.get("generation")
            and om.get("deletionTimestamp") == nm.get("deletionTimestamp") and om.get("uid") == nm.get("uid"))


def kopf_settings(rt: Runtime) -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
    # Nothing of kopf's own is written to objects: no changing handlers means no progress or
    # diff-base storage is used; posting kopf's log lines as Events is off (we post our own).
    s.posting.enabled = False
    # Resources are fully specified and namespaces named: no CRD/namespace scanning needed
    # (least privilege) unless serving all namespaces, where kopf watches cluster-wide anyway.
    s.scanning.disabled = True
    # Watches: reconnect every 5-10 min; detect silently stalled streams; bounded backoff on errors.
    s.watching.server_timeout = 300
    s.watching.client_timeout = 330
    s.watching.connect_timeout = 10
    s.watching.reconnect_backoff = 1.0
    s.networking.request_timeout = 30
    # Retry API errors forever (never give a watch up: a finite list makes kopf drop the watch stream
    # for good after an API-server outage longer than its sum), every 5 s at most once it lasts.
    s.networking.error_backoffs = _ForeverBackoffs()
    return s


class _ForeverBackoffs:
    """An iterable (not Sized: kopf then retries without a limit) with a fresh iterator per request."""

    def __iter__(self):
        return itertools.chain((1.0, 2.0), itertools.repeat(5.0))


async def serve(rt: Runtime, *, namespaces: list[str], clusterwide: bool,
                stop_flag: asyncio.Event | None = None) -> None:
    """Run kopf (watches) + the work queue + the resync timer + config reload until stopped."""
    rt.namespaces = list(namespaces)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(rt.executor, _prime_with_retry, rt)
    rt.health.ready = True
    stop = stop_flag or asyncio.Event()
    # kopf gets no stop flag of ours: on SIGTERM it would wait 5 s for its own waiter on that flag
    # (which we only set after kopf returns). We stop it by cancelling its task instead, and every task
    # of ours exists before kopf starts, so its shutdown never waits for them.
    others = [asyncio.create_task(c, name=n) for c, n in (
        (rt.queue.run(), "workqueue"), (rt.resync_loop(), "resync"), (rt.config_reload_loop(), "config-reload"))]
    await asyncio.sleep(0)  # the queue spawns its workers
    kopf_task = asyncio.create_task(kopf.operator(
        registry=build_registry(rt), settings=kopf_settings(rt), standalone=True,
        clusterwide=clusterwide, namespaces=namespaces), name="kopf")
    flagged = asyncio.create_task(stop.wait(), name="stop-flag")
    try:
        done, _ = await asyncio.wait([kopf_task, flagged, *others], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t in others and not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed: %s", t.get_name(), t.exception())
    except asyncio.CancelledError:
        pass  # SIGTERM/SIGINT: kopf stops; we stop with it
    finally:
        stop.set()
        for t in (*others, flagged):
            t.cancel()
        await asyncio.gather(*others, flagged, return_exceptions=True)
        if not kopf_task.done():
            kopf_task.cancel()
            await asyncio.wait([kopf_task], timeout=10)
        if rt.carbon is not None:
            rt.carbon.stop(timeout=1)
        if rt.executor is not None:
            rt.executor.shutdown(wait=False, cancel_futures=True)


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


# ---------------------------------------------------------------------------------------------
# Thin I/O used by the pass: every write is counted, skipped when the live copy already matches,
# and written through to the cache.
_CACHES = {"Deployment": "deployments", "Service": "services", "PodDisruptionBudget": "pdbs"}
_KINDS = {"Deployment": kc.DEPLOYMENTS, "Service": kc.SERVICES, "PodDisruptionBudget": kc.PDBS}


def apply_child(rt: Runtime, desired: dict, *, verify_live: bool = False) -> bool:
    """Server-side apply ``desired`` unless the cached live object already matches. True if sent.

    ``verify_live`` re-reads the object from the API first (used before moving a Service, the
    one write whose staleness could cost availability).
    """
    from greenmodel.kube.diff import needs_apply

    kind = desired["kind"]
    cache: ObjectCache = getattr(rt, _CACHES[kind])
    meta = desired["metadata"]
    live = cache.get(meta["namespace"], meta["name"])
    if verify_live:
        live = rt.client.get(_KINDS[kind], meta["name"], meta["namespace"])
        if live is not None:
            cache.upsert(live)
    if not needs_apply(desired, live):
        return False
    result = rt.client.apply(_KINDS[kind], desired)
    obs.CHILD_WRITES_TOTAL.labels(kind, "apply").inc()
    cache.upsert(result)
    return True


def delete_child(rt: Runtime, kind: str, obj: dict) -> bool:
    meta = obj.get("metadata") or {}
    gone = rt.client.delete(_KINDS[kind], meta["name"], meta.get("namespace"), uid=meta.get("uid"))
    obs.CHILD_WRITES_TOTAL.labels(kind, "delete").inc()
    getattr(rt, _CACHES[kind]).remove(obj)
    return gone


def write_status(rt: Runtime, body: dict, status: dict) -> bool:
    """Merge-patch /status only when it differs from the stored status. True if written.

    Keys we published before but not now are sent as null (merge-patch deletion).
    """
    live = body.get("status") or {}
    if all(live.get(k) == v for k, v in status.items()):
        return False
    patch = dict(status)
    meta = body["metadata"]
    result = rt.client.patch_status(kc.GREENMODELS, meta["name"], meta.get("namespace"), patch)
    obs.STATUS_WRITES_TOTAL.inc()
    if result:
        rt.greenmodels.upsert(result)
    return True


def involved_ref(body: dict) -> dict:
    meta = body["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "GreenModel", "name": meta["name"],
            "namespace": meta.get("namespace", ""), "uid": meta.get("uid", "")}


def update_capacity_exclusions(rt: Runtime, key: Key, children, now_mono: float | None = None
                               ) -> dict[tuple[str, str], str]:
    """Remember (region, product) pools where our pods were Unschedulable; forget expired ones.

    Returns the active exclusions with the scheduler's message. A pool stays excluded for
    ``capacity_exclusion_seconds`` after the last sighting, so a freed placement does not
    flap back and forth with the scheduler.
    """
    now_mono = time.monotonic() if now_mono is None else now_mono
    ex = rt.capacity_exclusions.setdefault(key, {})
    for dep in children.deployments.values():
        if dep.pods_unschedulable > 0:
            pool = (dep.placement.region, dep.placement.gpu_product)
            msg = (f"{dep.pods_unschedulable} pod(s) of {dep.name} Pending in {pool[0]} "
                   f"({pool[1]}): {dep.unschedulable_message}")
            ex[pool] = (now_mono + rt.capacity_exclusion_seconds, msg)
    for pool in [p for p, (until, _) in ex.items() if until <= now_mono]:
        del ex[pool]
    if not ex:
        rt.capacity_exclusions.pop(key, None)
    return {pool: msg for pool, (_, msg) in ex.items()}


# ---------------------------------------------------------------------------------------------
# The pass
DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.8.5"
_PACKAGED_CATALOG: dict | None = None
_KIND = {"measured": "Measured", "estimated": "Estimated", "forecast": "Forecast", "static": "Static"}


def packaged_default_catalog() -> dict | None:
    """The catalog shipped in the package (used when no ModelCatalog named `default` exists)."""
    global _PACKAGED_CATALOG
    if _PACKAGED_CATALOG is None:
        from importlib import resources

        import yaml

        try:
            text = resources.files("greenmodel").joinpath("data/default-catalog.yaml").read_text()
        except (FileNotFoundError, OSError):
            return None
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
        _PACKAGED_CATALOG = next((d for d in docs if d.get("kind") == "ModelCatalog"), None)
    return _PACKAGED_CATALOG


def resolve_catalog(rt: Runtime, name: str):
    """(typed ModelCatalog, None) or (None, (reason, message))."""
    from greenmodel.api.v1alpha1 import InvalidObject, parse_modelcatalog

    body = rt.catalogs.get(None, name)
    source = f"ModelCatalog {name}"
    if body is None and name == "default":
        body = packaged_default_catalog()
        source = "the packaged default catalog"
    if body is None:
        return None, ("CatalogNotFound", f"ModelCatalog {name!r} does not exist")
    # Parsed once per catalog version, not once per pass (it was a third of an idle pass's CPU).
    meta = body.get("metadata") or {}
    version = (source, meta.get("uid"), meta.get("resourceVersion"), meta.get("generation"))
    cacheable = meta.get("resourceVersion") is not None or body is _PACKAGED_CATALOG
    hit = rt.catalog_memo.get(name)
    if cacheable and hit is not None and hit[0] == version:
        return hit[1]
    try:
        result = parse_modelcatalog(body), None
    except InvalidObject as exc:
        result = None, ("CatalogInvalid", f"{source} is invalid: {exc}")
    if cacheable:
        rt.catalog_memo[name] = (version, result)
    return result


def serving_spec(variant, candidate) -> "builders.ServingSpec":
    """Container image and args for the chosen variant, runtime and operating point."""
    from greenmodel.kube.builders import ServingSpec

    rt_name = (variant.runtime.name or "vLLM")
    image = variant.runtime.image or (DEFAULT_VLLM_IMAGE if rt_name.lower() == "vllm" else None)
    if image is None:
        raise ValueError(f"variant {variant.name}: runtime {rt_name} has no image in the catalog")
    extra = list(candidate.runtime_args)
    args = ["--model", variant.model_id, "--served-model-name", variant.family, "--port", "8000"]
    if rt_name.lower() == "vllm":
        if not any(a.startswith("--tensor-parallel-size") for a in extra):
            args += ["--tensor-parallel-size", str(candidate.gpus_per_replica)]
        if not any(a.startswith("--max-num-seqs") for a in extra):
            args += ["--max-num-seqs", str(candidate.batch_cap)]
    return ServingSpec(image=image, args=tuple(args + extra), gpus_per_replica=candidate.gpus_per_replica,
                       runtime=rt_name)


def _intensity_from_reading(reading) -> Any:
    from greenmodel.planning import Intensity

    if reading is None:
        return None
    return Intensity(grams_per_kwh=float(reading.value), source=reading.source, zone=reading.zone,
                     timestamp=reading.timestamp, kind=_KIND.get(reading.kind, "Measured"))


def _static_intensity(settings, region: str) -> Any:
    from greenmodel.planning import Intensity

    rs = settings.region(region)
    if rs is None:
        return None
    for pname in rs.providers:
        prov = settings.carbon.providers.get(pname)
        if prov is not None and prov.type == "static":
            pzone = rs.provider_zones.get(pname, rs.zone)
            if pzone in prov.grams_per_kilowatt_hour:
                return Intensity(grams_per_kwh=float(prov.grams_per_kilowatt_hour[pzone]), source=pname,
                                 zone=rs.zone, timestamp=None, kind="Static")
    return None


@dataclass
class Observation:
    observed: Any  # planning.Observed
    exclusions: dict[tuple[str, str], str]
    carbon_signals: dict[str, tuple[str, str]]  # region -> (reason, message) of its zone's carbon data
    metrics: Any = None  # signals.metrics.ServingMetrics or None
    free: dict[tuple[str, str], int] = field(default_factory=dict)


def observe(rt: Runtime, spec, children, uid: str, key: Key, now: datetime) -> Observation:
    from greenmodel.kube.inventory import free_gpus
    from greenmodel.planning import CurrentPlacement, Observed, RegionObs
    from greenmodel.planning import ServingMetrics as PlanMetrics

    inv = rt.inventory()
    totals, by_owner = rt.demand_totals()
    free = free_gpus(inv, totals, by_owner.get(uid, {}))
    live = children.live_deployment
    current = None
    held = None
    since = children.service_since
    if live is None and children.deployments:
        # A crash between applying a Deployment and its Service (kopf is at-least-once): plan
        # from what runs, so hysteresis holds instead of starting over somewhere else.
        live = max(children.deployments.values(),
                   key=lambda d: (d.pods_ready, (d.live.get("metadata") or {}).get("creationTimestamp", "")))
        ts = (live.live.get("metadata") or {}).get("creationTimestamp")
        since = datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else now
    if live is not None:
        held = deployment_demand(live.live)
        if held is not None:
            pool, _, gpus = held
            # Observed.free_gpus excludes what the current placement holds (the planner adds it back).
            free[pool] = max(0, free.get(pool, 0) - gpus)
        current = CurrentPlacement(variant=live.placement.variant, region=live.placement.region,
                                   gpu_product=live.placement.gpu_product, replicas=live.spec_replicas,
                                   since=since or now)
    exclusions = update_capacity_exclusions(rt, key, children)
    for pool in exclusions:
        # Only the GPUs our scheduled pods already hold there are usable. The planner adds the
        # current placement's replicas x GPUs back, so subtract what of that is not scheduled.
        free[pool] = 0
        if current is not None and (current.region, current.gpu_product) == pool and held is not None:
            per_pod = held[2] // max(1, live.spec_replicas)
            free[pool] = (live.pods_scheduled - current.replicas) * per_pod
    settings = rt.settings
    region_names = set(settings.carbon.regions) | {r for r, _ in inv}
    regions: dict[str, Any] = {}
    signals: dict[str, tuple[str, str]] = {}
    for region in sorted(region_names):
        zone = settings.zone_for_region(region)
        reading = None
        if zone is not None and rt.carbon is not None and zone in rt.carbon.zones():
            st = rt.carbon.status(zone)
            ok, reason, message = st.condition()
            # The last accepted reading, even if old: the planner applies maxHoldSeconds. Once the chain is
            # down to its static link, that is the last *live* reading: the annual mean is not live data, and
            # whether to use it is the GreenModel's missingData.carbonFallback (the planner gets it below as
            # static_intensity), not the chain's.
            reading = st.live_reading if st.static_only and st.using_fallback else st.reading
            signals[region] = (reason, message)
            if reading is not None:
                obs.GRID_INTENSITY.labels(region).set(reading.value)
                obs.GRID_DATA_AGE.labels(region).set(max(0.0, reading.age_seconds(now)))
        elif zone is None:
            signals[region] = ("NoZone", f"region {region} has no grid zone in the operator config")
        pool_free = {prod: n for (r, prod), n in free.items() if r == region}
        regions[region] = RegionObs(intensity=_intensity_from_reading(reading),
                                    pue=settings.pue_for_region(region) or 1.2,
                                    free_gpus=pool_free,
                                    static_intensity=_static_intensity(settings, region))
    metrics = None
    plan_metrics = None
    if rt.serving_metrics is not None:
        try:
            metrics = rt.serving_metrics.get(key[0], names.label_value(key[1]))
        except Exception as exc:  # noqa: BLE001 - metrics are optional input
            log.warning("serving metrics for %s/%s failed: %s", key[0], key[1], exc)
        last = rt.last_metrics.get(key)
        if metrics is not None and metrics.available:
            plan_metrics = PlanMetrics(
                timestamp=metrics.observed_at, output_tokens_per_second=metrics.output_tokens_per_second,
                requests_per_second=metrics.request_rate_per_second,
                ttft_p95_milliseconds=None if metrics.ttft_p95_seconds is None else metrics.ttft_p95_seconds * 1000,
                inter_token_p95_milliseconds=None if metrics.itl_p95_seconds is None else metrics.itl_p95_seconds * 1000,
                power_watts=metrics.gpu_power_watts)
            rt.last_metrics[key] = plan_metrics
        else:
            plan_metrics = last  # held: the planner drops it after maxHoldSeconds (by its timestamp)
    observed = Observed(regions=regions, current=current, metrics=plan_metrics, learned=rt.learned.get(key) or {})
    return Observation(observed=observed, exclusions=exclusions, carbon_signals=signals, metrics=metrics,
                       free=free)


def _r(x: float | None, digits: int = 4) -> float | None:
    """Round to significant digits, so noise in inputs does not rewrite status every pass."""
    if x is None:
        return None
    if x == 0:
        return 0.0
    from math import floor, log10

    return round(x, -int(floor(log10(abs(x)))) + (digits - 1))


def _predicted(c) -> dict:
    from greenmodel.api.v1alpha1 import Predicted

    return Predicted(
        ttft_p95_milliseconds=_r(c.ttft_p95_ms), inter_token_p95_milliseconds=_r(c.itl_p95_ms),
        output_tokens_per_second=_r(c.load_tokens_per_second),
        capacity_output_tokens_per_second=_r(c.capacity_tokens_per_second), utilization=_r(c.utilization, 3),
        power_watts=_r(c.power_watts), joules_per_token=_r(c.joules_per_token), gpus=c.gpus,
        grams_per_million_tokens=_r(c.g_per_mtok), scope2_grams_per_million_tokens=_r(c.scope2_g_per_mtok),
        embodied_grams_per_million_tokens=_r(c.embodied_g_per_mtok), grams_per_hour=_r(c.grams_per_hour),
    ).to_k8s()


def _alternatives(plan) -> list[dict]:
    from greenmodel.api.v1alpha1 import MAX_ALTERNATIVES, Alternative

    out: list[dict] = []
    # Room for why-not: at most 5 feasible runners-up, then rejections (capacity first).
    for c in plan.alternatives[:5]:
        out.append(Alternative(variant=c.variant, region=c.region, gpu_product=c.gpu_product, replicas=c.replicas,
                               grams_per_million_tokens=_r(c.g_per_mtok), ttft_p95_milliseconds=_r(c.ttft_p95_ms),
                               inter_token_p95_milliseconds=_r(c.itl_p95_ms), reason="HigherScore",
                               message=f"score {_r(c.score)} vs chosen {_r(plan.chosen.score)}"
                               if plan.chosen else "").to_k8s())
    order = {"InsufficientGPUs": 0, "CarbonDataMissing": 1}
    for rj in sorted(plan.rejected, key=lambda r: order.get(r.reason, 2)):
        if len(out) >= MAX_ALTERNATIVES:
            break
        c = rj.candidate
        out.append(Alternative(variant=rj.variant[:63], region=rj.region, gpu_product=rj.gpu_product,
                               replicas=c.replicas if c else None,
                               grams_per_million_tokens=_r(c.g_per_mtok) if c else None,
                               reason=rj.reason[:63], message=obs.one_line(rj.message, 1024)).to_k8s())
    return out[:MAX_ALTERNATIVES]


def _fmt_g(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.1f}"


def _stable(status: dict) -> dict:
    """Status with the parts that change without meaning masked (for the write-or-not decision)."""
    import copy
    import re

    s = copy.deepcopy(status)
    dec = s.get("decision")
    if isinstance(dec, dict):
        dec.pop("time", None)
        if isinstance(dec.get("message"), str):
            dec["message"] = re.sub(r"\d+(\.\d+)?", "#", dec["message"])
    inten = s.get("intensity")
    if isinstance(inten, dict):
        inten.pop("timestamp", None)
    # Messages carry counters that move every pass (dwell seconds, reading times, free GPUs);
    # the numbers that matter are typed fields compared above. Reasons and statuses still count.
    for c in s.get("conditions") or []:
        if isinstance(c.get("message"), str):
            c["message"] = re.sub(r"\d+(\.\d+)?", "#", c["message"])
    return s


# Predictions move with every live load reading (and with what the planner learns); a status write
# for each wobble would make a GreenModel with live metrics never idle. Their numbers count as changed
# only beyond this relative tolerance (placement, replicas, reasons and conditions are still exact).
PREDICTION_TOLERANCE = 0.1
_TOLERANT_STATUS_KEYS = ("predicted", "alternatives")


def _close(a, b, tol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b or abs(a - b) <= tol * max(abs(a), abs(b))
    return a == b


def _unchanged(old: dict, new: dict) -> bool:
    """Stored and wanted status (both through ``_stable``) are the same for the write-or-not decision."""
    o, n = dict(old), dict(new)
    pairs = [(o.pop(k, None), n.pop(k, None)) for k in _TOLERANT_STATUS_KEYS]
    return o == n and all(_close(a, b, PREDICTION_TOLERANCE) for a, b in pairs)


def _what_changed(old: dict, new: dict) -> str:
    """Which status fields a write changes (for its log line): ``conditions[Ready,Reconciling], replicas``."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if k in _TOLERANT_STATUS_KEYS and _close(a, b, PREDICTION_TOLERANCE) or a == b:
            continue
        if k == "conditions":
            ca = {c.get("type"): c for c in a or [] if isinstance(c, dict)}
            cb = {c.get("type"): c for c in b or [] if isinstance(c, dict)}
            out.append("conditions[" + ",".join(sorted(t for t in set(ca) | set(cb) if ca.get(t) != cb.get(t))) + "]")
        else:
            out.append(k)
    return ", ".join(out)


def publish_status(rt: Runtime, body: dict, status: dict) -> bool:
    """Write status unless it equals the stored one up to timestamps and dwell counters.

    ``emissions`` and ``measured`` reach status on their own rare cadence (see ``account`` and
    ``measured_status``); when a write happens anyway, it carries their freshest in-memory values
    at no extra cost.
    """
    live = body.get("status") or {}
    # Keys we published before but not now are cleared (None -> merge-patch delete), except the
    # emissions totals and the last measurement, which only their own paths advance.
    full = {k: status.get(k, live.get(k) if k in _KEPT_STATUS_KEYS else None)
            for k in set(status) | (set(live) & MANAGED_STATUS_KEYS)}
    before, after = _stable({k: live.get(k) for k in full}), _stable(full)
    if _unchanged(before, after):
        return False
    meta = body.get("metadata") or {}
    key = (meta.get("namespace", ""), meta.get("name", ""))
    if log.isEnabledFor(logging.DEBUG):
        obs.object_logger(log, *key).debug("status changes: %s", _what_changed(before, after))
    if full.get("emissions") is not None and rt.emissions.get(key) is not None:
        full["emissions"] = rt.emissions[key].to_k8s()
    if full.get("measured") is not None and rt.measured.get(key) is not None:
        full["measured"] = rt.measured[key]
    return write_status(rt, body, full)


MANAGED_STATUS_KEYS = {"observedGeneration", "conditions", "variant", "region", "gpuProduct", "replicas",
                       "readyReplicas", "placedSince", "intensity", "predicted", "measured", "decision",
                       "alternatives", "emissions"}
_KEPT_STATUS_KEYS = {"emissions", "measured"}
# status.measured is rewritten when one of these moves by more than this share (or at the flush).
_MEASURED_TRIGGERS = ("gpuPowerWatts", "outputTokensPerSecond")
_MEASURED_MOVE = 0.25


def account(rt: Runtime, key: Key, body: dict, c, catalog, serving_pods: int, now: datetime,
            metrics=None) -> dict | None:
    """status.emissions: fold the time since the last pass into the running totals.

    Energy is the measured GPU energy from Prometheus when this pass's serving metrics are
    Available and carry it (the energy counter's mean power over the rate window x the interval,
    or the power gauge x the interval: ``planning.accounting.measured_energy_joules``), labelled
    Measured; else the planner's predicted IT power x time, labelled Estimated. Output tokens are
    the measured tokens/s x the interval when known, else the planned load. Intensity and PUE are
    those of this pass (passes are at most one timer interval apart, so the hour is right to within
    it); embodied is the catalog's kg per GPU over its lifetime for the GPUs of the serving pods.
    Each accounted interval adds to the Prometheus counters. Totals advance in memory on every pass
    and reach status at most every ``accounting_flush_seconds``, or once when the energy label
    changes (Estimated -> Measured/Mixed: at most twice in a life); after a restart they resume from
    status (``advance_status`` ignores intervals already counted, so a repeated pass never
    double-counts).
    """
    from greenmodel.api.v1alpha1 import Emissions
    from greenmodel.planning.accounting import advance_status, measured_energy_joules, pass_interval

    stored_raw = (body.get("status") or {}).get("emissions")
    stored = None
    if stored_raw:
        try:
            stored = Emissions.model_validate(stored_raw)
        except ValueError:
            stored = None
    prev = rt.emissions.get(key) or stored
    if prev is None or prev.updated is None:
        prev = Emissions(since=now, updated=now)
    elif serving_pods > 0 and now > prev.updated:
        gpu = catalog.spec.gpu(c.gpu_product)
        seconds = (now - prev.updated).total_seconds()
        live = metrics if metrics is not None and metrics.available else None
        joules = None
        if live is not None:
            joules, _basis = measured_energy_joules(seconds, window_energy_joules=live.gpu_energy_joules,
                                                    window_seconds=live.window_seconds,
                                                    power_watts=live.gpu_power_watts)
        tps = live.output_tokens_per_second if live is not None else None
        tokens, token_source = ((tps * seconds, "Measured") if tps is not None
                                else (c.load_tokens_per_second * seconds, "Planned"))
        try:
            interval = pass_interval(
                start=prev.updated, end=now, region=c.region, gpus_reserved=serving_pods * c.gpus_per_replica,
                embodied_kg_per_gpu=gpu.embodied_kilograms if gpu else 0.0,
                lifetime_years=gpu.lifetime_years if gpu else 4.0, pue=c.pue,
                intensity_g_per_kwh=c.intensity.grams_per_kwh, intensity_source=c.intensity.source,
                output_tokens=tokens, estimated_power_watts=c.power_watts * serving_pods / max(1, c.replicas),
                measured_energy_joules=joules, gpu_product=c.gpu_product, output_tokens_source=token_source)
            advanced = advance_status(prev, interval)
            if advanced is not prev:
                obs.record_accounted(key[0], key[1], interval)
            prev = advanced
        except ValueError as exc:
            log.warning("emissions accounting for %s/%s skipped: %s", key[0], key[1], exc)
    else:
        prev = prev.model_copy(update={"updated": now})  # nothing served: nothing to count
    rt.emissions[key] = prev
    flushed = stored.updated if stored is not None and stored.updated else None
    relabelled = stored is not None and prev.energy_joules > 0 and prev.energy_source != stored.energy_source
    if flushed is None or relabelled or (now - flushed).total_seconds() >= rt.accounting_flush_seconds:
        return prev.to_k8s()
    return stored_raw


def measured_status(rt: Runtime, key: Key, body: dict, metrics, held: bool, now: datetime) -> dict | None:
    """status.measured: what the serving metrics show, beside status.predicted.

    From this pass's metrics when Available (unknown figures absent, never 0). Status gets a new
    block only when it appears, when the meter or pod count changes, when GPU power or output
    tokens/s move by more than 25 % from the stored block, or when the stored one is older than the
    accounting flush; otherwise the stored block stays, so serving noise causes no writes. While
    metrics are unavailable the last block stays as long as the planner holds the last metrics
    (``held``; its ``observedAt`` says how old), then it is cleared.
    """
    from greenmodel.api.v1alpha1 import Measured, MeterKind

    stored = (body.get("status") or {}).get("measured")
    if metrics is None or not metrics.available:
        rt.measured.pop(key, None)
        return stored if held else None
    ms = lambda s: None if s is None else _r(s * 1000)  # noqa: E731
    meter = {"dcgm": MeterKind.DCGM, "kepler": MeterKind.KEPLER}.get(metrics.energy_source or "")
    fresh = Measured(
        gpu_power_watts=_r(metrics.gpu_power_watts), joules_per_token=_r(metrics.gpu_energy_joules_per_output_token),
        output_tokens_per_second=_r(metrics.output_tokens_per_second),
        requests_per_second=_r(metrics.request_rate_per_second),
        ttft_p95_milliseconds=ms(metrics.ttft_p95_seconds), inter_token_p95_milliseconds=ms(metrics.itl_p95_seconds),
        energy_source=meter, pods=metrics.pods, window_seconds=metrics.window_seconds,
        observed_at=metrics.observed_at).to_k8s()
    rt.measured[key] = fresh
    if not stored:
        return fresh
    for k in ("energySource", "pods", "windowSeconds"):
        if stored.get(k) != fresh.get(k):
            return fresh
    for k in _MEASURED_TRIGGERS:
        a, b = stored.get(k), fresh.get(k)
        if (a is None) != (b is None):
            return fresh
        if a is not None and abs(b - a) > _MEASURED_MOVE * max(abs(a), 1e-9):
            return fresh
    try:
        at = datetime.fromisoformat(str(stored.get("observedAt")).replace("Z", "+00:00"))
    except ValueError:
        return fresh
    if (now - at).total_seconds() >= rt.accounting_flush_seconds:
        return fresh
    return stored


def _conditions(body: dict, wanted: list, generation: int | None, now: datetime) -> list[dict]:
    from greenmodel.kube.conditions import merge_conditions

    return merge_conditions((body.get("status") or {}).get("conditions"), wanted, generation, now)


# Reasons of a zone's carbon data (ZoneStatus.condition) under which its reading is usable as it is.
_CARBON_OK = {"Live", "FallbackProvider", "StaticConfigured"}


def _carbon_condition(plan, signals: dict[str, tuple[str, str]]):
    """CarbonDataAvailable for the chosen (or best) candidate's region.

    True: ``Live``; ``FallbackProvider`` (another live provider of the chain answers); ``StaticConfigured``
    (the operator config names only a static intensity for the zone: the admin's choice, nothing is missing).
    False: ``HoldingLastReading`` (no fresh live reading; the last one is used within
    missingData.maxHoldSeconds), ``StaticFallback`` (no live reading within that hold: the configured
    annual mean is used per missingData.carbonFallback; decisions no longer follow the grid),
    ``NoUsableReading``.
    """
    from greenmodel.kube.conditions import Cond

    c = plan.chosen or plan.best
    if c is not None:
        kind = c.intensity.kind
        where = f"{c.region}: {c.intensity.grams_per_kwh:.0f} g/kWh from {c.intensity.source} ({kind})"
        reason, message = signals.get(c.region, ("NoData", "no carbon data for this region"))
        others = "; ".join(f"{r}: {why}: {m}" for r, (why, m) in sorted(signals.items())
                           if r != c.region and why not in ("Live", "StaticConfigured"))
        tail = f"; other regions: {others}" if others else ""
        if kind == "Static" and reason == "StaticConfigured":
            return Cond("CarbonDataAvailable", True, "StaticConfigured", f"{where}: {message}{tail}")
        if kind == "Static":
            return Cond("CarbonDataAvailable", False, "StaticFallback",
                        f"{where}: no live reading within missingData.maxHoldSeconds ({reason}: {message}); "
                        f"using the configured static intensity per missingData.carbonFallback{tail}")
        if kind == "Held" or reason not in _CARBON_OK:
            return Cond("CarbonDataAvailable", False, "HoldingLastReading",
                        f"{where}, the last live reading; no fresh one ({reason}: {message}); holding it within "
                        f"missingData.maxHoldSeconds{tail}")
        if reason == "FallbackProvider":
            return Cond("CarbonDataAvailable", True, "FallbackProvider", f"{where}; {message}{tail}")
        return Cond("CarbonDataAvailable", True, "Live", f"{where}{tail}")
    problems = {r: v for r, v in signals.items() if v[0] not in _CARBON_OK}
    if problems:
        return Cond("CarbonDataAvailable", False, "NoUsableReading",
                    "; ".join(f"{r}: {why}: {m}" for r, (why, m) in sorted(problems.items())))
    return Cond("CarbonDataAvailable", None, "NotEvaluated", "no placement was evaluated")


def _metrics_condition(o: Observation):
    """MetricsAvailable: are serving metrics live, what is held meanwhile, and what energy is used."""
    from greenmodel.kube.conditions import Cond

    m = o.metrics
    held = o.observed.metrics
    if m is None:
        return Cond("MetricsAvailable", False, "NotConfigured",
                    "no Prometheus configured; planning from spec.load; emissions use estimated energy")
    ok, reason, message = m.condition()
    if ok:
        meter = {"dcgm": "DCGM", "kepler": "Kepler"}.get(m.energy_source or "")
        message += (f"; GPU energy measured by {meter}" if meter else
                    "; no GPU energy series (DCGM or Kepler) for these pods: emissions use estimated energy")
    elif held is not None and held.timestamp is not None:
        message += (f"; holding the metrics observed at {held.timestamp.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                    "within missingData.maxHoldSeconds (replicas kept at least as planned from them); "
                    "emissions use estimated energy meanwhile")
    else:
        message += "; planning from spec.load; emissions use estimated energy"
    return Cond("MetricsAvailable", bool(ok), reason or ("Available" if ok else "Unavailable"), message)


def _capacity_condition(plan, o: Observation):
    from greenmodel.kube.conditions import Cond

    c = plan.chosen
    notes = [f"{r}/{p}: {m}" for (r, p), m in sorted(o.exclusions.items())]
    if c is not None:
        # Only pools that exist (a region without that GPU product is not "full").
        better = [rj for rj in plan.rejected if rj.reason == "InsufficientGPUs" and rj.region
                  and (rj.region, rj.gpu_product) in o.free
                  and o.observed.regions.get(rj.region) is not None
                  and (o.observed.regions[rj.region].intensity or o.observed.regions[rj.region].static_intensity)
                  is not None and rj.region != c.region
                  and (o.observed.regions[rj.region].intensity or o.observed.regions[rj.region].static_intensity
                       ).grams_per_kwh < c.intensity.grams_per_kwh]
        for rj in better[:3]:
            notes.append(f"{rj.region}/{rj.gpu_product}: {rj.message}")
        if notes:
            return Cond("CapacityAvailable", False, "InsufficientGPUs",
                        f"placed in {c.region} ({c.gpu_product}) because greener capacity is missing: "
                        + "; ".join(notes))
        free = o.free.get((c.region, c.gpu_product))
        return Cond("CapacityAvailable", True, "GPUsAvailable",
                    f"{c.replicas}x{c.gpus_per_replica} {c.gpu_product} in {c.region}"
                    + (f"; {free} more free" if free is not None else ""))
    gpu_fail = [f for f in plan.failed_constraints if f.reason == "InsufficientGPUs"]
    if gpu_fail or notes:
        return Cond("CapacityAvailable", False, "InsufficientGPUs",
                    "; ".join([f.message for f in gpu_fail] + notes))
    return Cond("CapacityAvailable", None, "NotEvaluated", plan.message[:1000] if plan else "")


def _slo_condition(plan, o: Observation, spec):
    from greenmodel.kube.conditions import Cond

    c = plan.chosen
    if c is None:
        return Cond("SLOMet", False, plan.reason, plan.message)
    m = o.observed.metrics
    if m is not None and m.inter_token_p95_milliseconds is not None and \
            m.inter_token_p95_milliseconds > spec.latency.inter_token_p95_milliseconds:
        return Cond("SLOMet", False, "ObservedLatencyAboveSLO",
                    f"observed p95 ITL {m.inter_token_p95_milliseconds:.1f} ms > "
                    f"{spec.latency.inter_token_p95_milliseconds} ms")
    if not c.slo_met:
        return Cond("SLOMet", False, "SLOUnreachableWithinBounds", plan.message)
    return Cond("SLOMet", True, "ModelledSLOMet",
                f"predicted p95 TTFT {c.ttft_p95_ms:.0f}/{spec.latency.ttft_p95_milliseconds} ms, "
                f"p95 ITL {c.itl_p95_ms:.1f}/{spec.latency.inter_token_p95_milliseconds} ms at "
                f"{c.load_tokens_per_second:.0f} tok/s ({plan.load_source})")


def _placement_fields(children, prev: dict) -> dict:
    """Status placement fields from what is actually serving (when nothing better is known)."""
    live = children.live_deployment
    if live is None:
        return {k: prev.get(k) for k in ("variant", "region", "gpuProduct", "replicas", "placedSince")}
    return {"variant": live.placement.variant, "region": live.placement.region,
            "gpuProduct": live.placement.gpu_product, "replicas": live.spec_replicas,
            "placedSince": builders_format(children.service_since)}


def builders_format(ts: datetime | None) -> str | None:
    from greenmodel.kube.builders import format_since

    return format_since(ts) if ts else None


def reconcile_pass(rt: Runtime, body: dict) -> float | None:
    """One level-triggered pass for one GreenModel. Returns seconds until it wants another pass."""
    from greenmodel import planning
    from greenmodel.api.v1alpha1 import InvalidObject, parse_greenmodel
    from greenmodel.kube import builders
    from greenmodel.kube.builders import OwnerRef
    from greenmodel.kube.children import observe_children
    from greenmodel.kube.conditions import Cond, signal_transitions
    from greenmodel.kube.names import Placement
    from greenmodel.kube.switch import decide

    meta = body["metadata"]
    ns, name, uid = meta.get("namespace", ""), meta["name"], meta.get("uid", "")
    generation = meta.get("generation")
    key = (ns, name)
    if meta.get("deletionTimestamp"):
        return None  # owner references take the children with it
    now = rt.clock()
    olog = obs.object_logger(log, ns, name)
    involved = involved_ref(body)
    prev = body.get("status") or {}
    children = observe_children(uid, rt.deployments.owned_by(uid),
                                rt.pods.owned_by(f"{ns}/{names.label_value(name)}"),
                                rt.services.get(ns, names.service_name(name)), rt.pdbs.get(ns, names.pdb_name(name)))
    live = children.live_deployment
    live_ready = live.pods_ready if live is not None else 0
    obs.set_if(obs.READY_REPLICAS, float(children.ready_pods), ns, name)

    def stalled(reason: str, message: str, event: bool = True) -> None:
        """Nothing we can do until the spec or the cluster changes: keep what runs, say why."""
        serving = live_ready > 0
        conds = [
            Cond("Ready", serving, "ServingLastPlacement" if serving else reason,
                 (f"{live_ready} pod(s) keep serving the last placement; " if serving else "") + message),
            Cond("Reconciling", False, reason, message),
            Cond("Stalled", True, reason, message),
        ]
        status = {"observedGeneration": generation, "conditions": _conditions(body, conds, generation, now),
                  "readyReplicas": live_ready, **_placement_fields(children, prev)}
        publish_status(rt, body, status)
        if event:
            rt.recorder.record(involved, reason, message, "Warning")
        olog.info("stalled: %s: %s", reason, message)

    try:
        gm = parse_greenmodel(body)
    except InvalidObject as exc:
        stalled("InvalidSpec", str(exc))
        return None
    spec = gm.spec
    catalog, problem = resolve_catalog(rt, spec.model.catalog_name)
    if catalog is None:
        stalled(*problem)
        return None

    if spec.suspend:
        serving = live_ready > 0
        msg = "spec.suspend is true: no changes are made" + (f"; {live_ready} pod(s) serving" if serving else "")
        # kstatus: not Ready and not Reconciling must be Stalled (nothing progresses while suspended).
        conds = [Cond("Ready", serving, "Suspended", msg), Cond("Reconciling", False, "Suspended", msg),
                 Cond("Stalled", not serving, "Suspended", msg)]
        status = {"observedGeneration": generation, "conditions": _conditions(body, conds, generation, now),
                  "readyReplicas": live_ready, **_placement_fields(children, prev)}
        publish_status(rt, body, status)
        return None

    o = observe(rt, spec, children, uid, key, now)
    plan = planning.plan(spec, catalog.spec, o.observed, now)
    if plan.learned:
        rt.learned[key] = plan.learned
    carbon_cond = _carbon_condition(plan, o.carbon_signals)
    metrics_cond = _metrics_condition(o)
    capacity_cond = _capacity_condition(plan, o)
    # An input that degrades or recovers is told once, as an Event, besides its condition.
    for reason, message, type_ in signal_transitions(prev.get("conditions"), [carbon_cond, metrics_cond]):
        rt.recorder.record(involved, reason, message, type_)

    if not plan.feasible or plan.chosen is None or not plan.chosen.slo_met and plan.chosen.placement not in {
            (p.variant, p.region, p.gpu_product) for p in children.deployments}:
        # Never scale to zero or move for an infeasible plan: keep what runs and explain.
        serving = live_ready > 0
        msg = obs.one_line(plan.message, 4000)
        conds = [
            Cond("Ready", serving, "ServingLastPlacement" if serving else plan.reason,
                 (f"{live_ready} pod(s) keep serving the last placement; " if serving else "") + msg),
            Cond("Reconciling", False, plan.reason, msg),
            Cond("Stalled", True, plan.reason, msg),
            carbon_cond, metrics_cond, capacity_cond, _slo_condition(plan, o, spec),
        ]
        from greenmodel.api.v1alpha1 import Decision

        status = {"observedGeneration": generation, "conditions": _conditions(body, conds, generation, now),
                  "readyReplicas": live_ready, **_placement_fields(children, prev),
                  "predicted": _predicted(plan.chosen) if plan.chosen else None,
                  "decision": Decision(reason=plan.reason[:63], message=obs.one_line(plan.message, 4096),
                                       time=now, kept_current=False).to_k8s(),
                  "alternatives": _alternatives(plan)}
        publish_status(rt, body, status)
        rt.recorder.record(involved, "PlanInfeasible", f"{plan.reason}: {msg}", "Warning")
        obs.DECISIONS_TOTAL.labels("PlanInfeasible").inc()
        return None

    c = plan.chosen
    variant = next(v for v in catalog.spec.variants if v.name == c.variant)
    try:
        serving = serving_spec(variant, c)
    except ValueError as exc:
        stalled("RuntimeImageMissing", str(exc))
        return None
    desired = Placement(c.variant, c.region, c.gpu_product)
    actions = decide(desired, c.replicas, children, now, rt.drain_seconds, rt.poll_seconds)
    owner = OwnerRef(name=name, namespace=ns, uid=uid)

    dep_obj = builders.build_deployment(owner, desired, c.replicas, serving)
    dep_changed = apply_child(rt, dep_obj)
    svc_changed = apply_child(rt, builders.build_service(owner, actions.service_placement, actions.service_since),
                              verify_live=actions.service_moved)
    apply_child(rt, builders.build_pdb(owner))
    for d in actions.delete:
        delete_child(rt, "Deployment", d.live)
        olog.info("deleted Deployment %s (placement %s/%s/%s no longer serves)", d.name,
                  d.placement.variant, d.placement.region, d.placement.gpu_product)

    # Events: one per decision that changed something, with old vs new numbers.
    prev_g = (prev.get("predicted") or {}).get("gramsPerMillionTokens")
    new_g = c.g_per_mtok
    where = lambda p: f"{p.variant} on {p.gpu_product} in {p.region}"  # noqa: E731
    def event(reason: str, message: str, type_: str = "Normal") -> None:
        obs.DECISIONS_TOTAL.labels(reason).inc()
        rt.recorder.record(involved, reason, message, type_)

    live_p = children.service_placement if live is not None else None
    # A switch prices the placement it leaves at its own region's intensity now (status.predicted already
    # describes the target once the switch has started); a rescale compares with the stored prediction.
    was_g = plan.current.g_per_mtok if plan.current is not None and live_p is not None and \
        plan.current.placement == (live_p.variant, live_p.region, live_p.gpu_product) else None
    if dep_changed and desired not in children.deployments:
        if live_p is None:
            event("VariantSelected", f"placing {where(desired)} x{c.replicas}: {_fmt_g(new_g)} gCO2e/Mtok "
                                     f"at {c.intensity.grams_per_kwh:.0f} g/kWh ({plan.reason})")
        else:
            event("SwitchStarted", f"starting {where(desired)} x{c.replicas} ({_fmt_g(new_g)} gCO2e/Mtok) "
                                   f"beside {where(live_p)} ({_fmt_g(was_g)} gCO2e/Mtok); {plan.hysteresis}")
    if actions.service_moved and live_p is not None and actions.service_placement == desired and live_p != desired:
        if live_p.region != desired.region:
            event("RegionSwitched", f"{live_p.region} -> {desired.region}: {_fmt_g(was_g)} -> {_fmt_g(new_g)} "
                                    f"gCO2e/Mtok ({where(live_p)} -> {where(desired)})")
        if live_p.variant != desired.variant:
            event("VariantSelected", f"{live_p.variant} -> {desired.variant}: {_fmt_g(was_g)} -> {_fmt_g(new_g)} "
                                     f"gCO2e/Mtok in {desired.region}")
        if live_p.gpu_product != desired.gpu_product and live_p.variant == desired.variant \
                and live_p.region == desired.region:
            event("GPUProductSwitched", f"{live_p.gpu_product} -> {desired.gpu_product}: {_fmt_g(was_g)} -> "
                                        f"{_fmt_g(new_g)} gCO2e/Mtok")
    if dep_changed and live_p == desired and live is not None and live.spec_replicas != c.replicas:
        event("Rescaled", f"replicas {live.spec_replicas} -> {c.replicas} for {c.load_tokens_per_second:.0f} "
                          f"output tok/s ({plan.load_source}); predicted p95 ITL {c.itl_p95_ms:.1f} ms, "
                          f"{_fmt_g(prev_g)} -> {_fmt_g(new_g)} gCO2e/Mtok")
    if capacity_cond.status is False and o.exclusions:
        event("CapacityUnavailable", capacity_cond.message, "Warning")

    # Status from what we observed plus what this pass did.
    desired_dep = children.deployments.get(desired)
    serving_desired = actions.service_placement == desired
    desired_ready = (desired_dep is not None and desired_dep.ready and not dep_changed
                     and desired_dep.ready_replicas >= c.replicas)
    ready = serving_desired and desired_dep is not None and desired_dep.pods_ready > 0 and desired_dep.ready
    in_flight = actions.phase != "Steady" or dep_changed or svc_changed or not desired_ready
    ready_pods = desired_dep.pods_ready if (serving_desired and desired_dep) else live_ready
    if ready:
        ready_cond = Cond("Ready", True, "Serving",
                          f"{desired_dep.pods_ready}/{c.replicas} replicas of {where(desired)} ready")
    elif live_ready > 0:
        ready_cond = Cond("Ready", False, actions.phase if actions.phase != "Steady" else "Rescaling",
                          f"{actions.message or 'rolling out'}; {live_ready} pod(s) serving meanwhile")
    else:
        ready_cond = Cond("Ready", False, "Deploying",
                          f"waiting for {where(desired)}: {desired_dep.ready_replicas if desired_dep else 0}/"
                          f"{c.replicas} ready")
    if in_flight:
        phase = actions.phase if actions.phase != "Steady" else ("Rescaling" if dep_changed else "Deploying")
        rec_cond = Cond("Reconciling", True, phase, actions.message or f"{where(desired)}: rolling out "
                        f"{c.replicas} replica(s)")
    else:
        rec_cond = Cond("Reconciling", False, "ReconciliationSucceeded", obs.one_line(plan.message, 2000))
    conds = [ready_cond, rec_cond, Cond("Stalled", False, "Progressing", "placement is feasible"),
             carbon_cond, metrics_cond, capacity_cond, _slo_condition(plan, o, spec)]
    from greenmodel.api.v1alpha1 import Decision, IntensityStatus

    inten = c.intensity
    status = {
        "observedGeneration": generation,
        "conditions": _conditions(body, conds, generation, now),
        "variant": c.variant, "region": c.region, "gpuProduct": c.gpu_product, "replicas": c.replicas,
        "readyReplicas": ready_pods,
        "placedSince": builders_format(actions.service_since) if serving_desired else prev.get("placedSince"),
        "intensity": IntensityStatus(grams_per_kilowatt_hour=_r(inten.grams_per_kwh), source=inten.source[:63],
                                     zone=inten.zone[:63], timestamp=inten.timestamp,
                                     kind=inten.kind).to_k8s(),
        "predicted": _predicted(c),
        "measured": measured_status(rt, key, body, o.metrics, o.observed.metrics is not None, now),
        "decision": Decision(reason=plan.reason[:63], message=obs.one_line(plan.message, 4096), time=now,
                             kept_current=plan.kept_current).to_k8s(),
        "alternatives": _alternatives(plan),
        "emissions": account(rt, key, body, c, catalog, ready_pods if serving_desired else 0, now,
                             metrics=o.metrics),
    }
    publish_status(rt, body, status)
    obs.set_if(obs.REPLICAS, float(c.replicas), ns, name)
    obs.set_if(obs.PREDICTED_GRAMS, c.g_per_mtok, ns, name)
    obs.set_if(obs.PREDICTED_POWER, c.power_watts * c.pue, ns, name)
    obs.set_if(obs.PREDICTED_GPU_POWER, c.power_watts, ns, name)
    obs.set_if(obs.MEASURED_GPU_POWER, o.metrics.gpu_power_watts if o.metrics is not None and o.metrics.available
               else None, ns, name)
    if dep_changed or svc_changed or actions.delete:
        olog.info("%s: %s x%d (%s)%s", plan.reason, where(desired), c.replicas, actions.phase,
                  f"; {actions.message}" if actions.message else "")
    return actions.requeue_seconds
