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
import logging
import os
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
    # (ns, name) -> {(region, product): (monotonic expiry, message)}: capacity seen missing.
    capacity_exclusions: dict[Key, dict[tuple[str, str], tuple[float, str]]] = field(default_factory=dict)
    capacity_exclusion_seconds: float = 300.0
    drain_seconds: float = 5.0
    poll_seconds: float = 3.0
    namespaces: list[str] = field(default_factory=list)
    reconciler: Any = None  # the pass implementation (greenmodel.handlers.reconcile_pass by default)

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
                             max_backoff=max(60.0, 10 * interval), min_interval=1.0)
        rt.carbon = build_carbon(settings)
        rt.serving_metrics = build_serving_metrics(settings)
        return rt

    # -- inventory -------------------------------------------------------------------------
    def inventory(self) -> Inventory:
        now = time.monotonic()
        if self._inventory is None or now - self._inventory_at > self.inventory_ttl_seconds:
            nodes = self.client.list(kc.NODES)
            pods = self.client.list(kc.PODS, field_selector="status.phase!=Succeeded,status.phase!=Failed")
            self._inventory = gpu_inventory(nodes, pods, skip_managed=True)
            self._inventory_at = now
        return self._inventory

    def our_demands(self):
        return [d for d in (deployment_demand(dep) for dep in self.deployments.values()) if d]

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
            obs.RECONCILE_DURATION.observe(time.perf_counter() - started)
            obs.QUEUE_DEPTH.set(len(self.queue))
            self.health.beat()

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

    cache = ZoneCache.from_settings(settings)
    cache.refresh_due()  # first readings before the first pass (static: instant)
    cache.start()
    return cache


def build_serving_metrics(settings):
    """The Prometheus serving-metrics source, when a Prometheus URL is configured."""
    if not getattr(settings.prometheus, "url", None):
        return None
    try:
        from greenmodel.signals import metrics as sm
    except ImportError:
        return None
    factory = getattr(sm, "from_settings", None)
    return factory(settings) if factory else None


# ---------------------------------------------------------------------------------------------
# kopf registration
def build_registry(rt: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.event(GROUP, VERSION, "greenmodels", registry=registry)
    async def greenmodel_event(type: str, body: Any, **_: Any) -> None:  # noqa: A002 - kopf's name
        raw = dict(body)
        key = (raw["metadata"].get("namespace", ""), raw["metadata"]["name"])
        if type == "DELETED":
            rt.greenmodels.remove(key)
            rt.queue.forget(key)
            rt.capacity_exclusions.pop(key, None)
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
    s.networking.error_backoffs = [1, 2, 5, 10, 20]
    return s


async def serve(rt: Runtime, *, namespaces: list[str], clusterwide: bool,
                stop_flag: asyncio.Event | None = None) -> None:
    """Run kopf (watches) + the work queue + the resync timer + config reload until stopped."""
    rt.namespaces = list(namespaces)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(rt.executor, _prime_with_retry, rt)
    rt.health.ready = True
    stop = stop_flag or asyncio.Event()
    kopf_task = asyncio.create_task(kopf.operator(
        registry=build_registry(rt), settings=kopf_settings(rt), standalone=True,
        clusterwide=clusterwide, namespaces=namespaces, stop_flag=stop), name="kopf")
    others = [asyncio.create_task(c, name=n) for c, n in (
        (rt.queue.run(), "workqueue"), (rt.resync_loop(), "resync"), (rt.config_reload_loop(), "config-reload"))]
    try:
        done, _ = await asyncio.wait([kopf_task, *others], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t.exception() is not None and t is not kopf_task:
                log.error("background task %s failed: %s", t.get_name(), t.exception())
    finally:
        stop.set()
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if not kopf_task.done():
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
def reconcile_pass(rt: Runtime, body: dict) -> float | None:  # replaced below once the API lands
    raise kopf.TemporaryError("reconcile not implemented", delay=60)
