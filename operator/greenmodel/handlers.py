"""kopf registration and the reconcile pass: parse → observe → decide → apply → remember.

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
from typing import Any

import kopf

from greenmodel import observability as obs
from greenmodel.kube import names
from greenmodel.kube.cache import ObjectCache
from greenmodel.planning.decide import decide
from greenmodel.reconcile.apply import apply
from greenmodel.reconcile.observe import observe, parse
from greenmodel.reconcile.runtime import GROUP, VERSION, Runtime, _prime_with_retry, build_carbon

__all__ = ["Runtime", "build_carbon", "build_registry", "kopf_settings", "reconcile_pass", "serve"]

log = logging.getLogger("greenmodel.operator")


def reconcile_pass(rt: Runtime, body: dict) -> float | None:
    """One level-triggered pass for one GreenModel. Returns seconds until it wants another pass."""
    gm = parse(body)
    seen = observe(rt, gm)
    now = rt.clock()
    outcome = decide(gm, seen, now)
    apply(rt, body, gm, seen, outcome, now)
    if rt.greenmodels.get(*gm.key) is not None:  # not deleted meanwhile (its DELETED event dropped the memory)
        rt.memory[gm.key] = outcome.memory
    return outcome.requeue_seconds


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
            rt.memory.pop(key, None)
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
    kopf.on.event("", "v1", "persistentvolumeclaims", labels=ours, registry=registry)(child_handler(rt.claims))
    kopf.on.event("batch", "v1", "jobs", labels=ours, registry=registry)(child_handler(rt.jobs))
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
    rt.reconciler = reconcile_pass
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


