"""The write half of a pass: server-side apply of the children the Outcome asks for (skipped when the cached live
object already matches), deletes by uid, status only when it changed, Events, gauges and counters. Every write
is counted and written through to the cache. Nothing here decides anything: ``planning.decide`` did.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from greenmodel import observability as obs
from greenmodel.kube import builders
from greenmodel.kube import client as kc
from greenmodel.kube.builders import OwnerRef
from greenmodel.kube.cache import ObjectCache
from greenmodel.kube.diff import needs_apply
from greenmodel.planning.decide import Outcome, Seen, Subject
from greenmodel.reconcile.runtime import GROUP, VERSION, Runtime

log = logging.getLogger("greenmodel.operator")

_CACHES = {"Deployment": "deployments", "Service": "services", "PodDisruptionBudget": "pdbs",
           "PersistentVolumeClaim": "claims", "Job": "jobs"}
_KINDS = {"Deployment": kc.DEPLOYMENTS, "Service": kc.SERVICES, "PodDisruptionBudget": kc.PDBS,
          "PersistentVolumeClaim": kc.PVCS, "Job": kc.JOBS}


def apply_child(rt: Runtime, desired: dict, *, verify_live: bool = False) -> bool:
    """Server-side apply ``desired`` unless the cached live object already matches. True if sent.

    ``verify_live`` re-reads the object from the API first (used before moving a Service, the
    one write whose staleness could cost availability).
    """
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


def delete_child(rt: Runtime, kind: str, name: str, namespace: str, uid: str) -> bool:
    """Conditional delete: only the object with this uid (never a newer one that reuses the name)."""
    gone = rt.client.delete(_KINDS[kind], name, namespace, uid=uid)
    obs.CHILD_WRITES_TOTAL.labels(kind, "delete").inc()
    getattr(rt, _CACHES[kind]).remove((namespace, name))
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


def involved_ref(gm: Subject) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "GreenModel", "name": gm.name, "namespace": gm.namespace,
            "uid": gm.uid}


_NUMBER = re.compile(r"\d+(\.\d+)?")


def _stable(status: dict) -> dict:
    """Status with the parts that change without meaning masked (for the write-or-not decision). Copies only
    what it masks: the rest is shared with ``status``, which is never changed (a deep copy of the whole status
    was half of an idle pass's CPU)."""
    s = dict(status)
    dec = s.get("decision")
    if isinstance(dec, dict):
        dec = {k: v for k, v in dec.items() if k != "time"}
        if isinstance(dec.get("message"), str):
            dec["message"] = _NUMBER.sub("#", dec["message"])
        s["decision"] = dec
    inten = s.get("intensity")
    if isinstance(inten, dict):
        s["intensity"] = {k: v for k, v in inten.items() if k != "timestamp"}
    # Messages carry counters that move every pass (dwell seconds, reading times, free GPUs);
    # the numbers that matter are typed fields compared above. Reasons and statuses still count.
    conds = s.get("conditions")
    if isinstance(conds, list):
        s["conditions"] = [{**c, "message": _NUMBER.sub("#", c["message"])}
                           if isinstance(c, dict) and isinstance(c.get("message"), str) else c for c in conds]
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


def publish_status(rt: Runtime, body: dict, status: dict, outcome: Outcome | None = None) -> bool:
    """Write status unless it equals the stored one up to timestamps and dwell counters.

    ``status`` is the full status: a managed key it lacks is cleared (merge-patch null). ``emissions`` and
    ``measured`` advance on their own rare cadence (planning.decide chooses when); when a write happens anyway,
    it carries their freshest in-memory values at no extra cost.
    """
    live = body.get("status") or {}
    full = {k: status.get(k) for k in set(status) | (set(live) & MANAGED_STATUS_KEYS)}
    before, after = _stable({k: live.get(k) for k in full}), _stable(full)
    if _unchanged(before, after):
        return False
    meta = body.get("metadata") or {}
    if log.isEnabledFor(logging.DEBUG):
        obs.object_logger(log, meta.get("namespace", ""), meta.get("name", "")).debug(
            "status changes: %s", _what_changed(before, after))
    memory = outcome.memory if outcome is not None else None
    if full.get("emissions") is not None and memory is not None and memory.emissions is not None:
        full["emissions"] = memory.emissions.to_k8s()
    if full.get("measured") is not None and memory is not None and memory.measured is not None:
        full["measured"] = memory.measured.to_k8s()
    return write_status(rt, body, full)


MANAGED_STATUS_KEYS = {"observedGeneration", "conditions", "variant", "region", "gpuProduct", "replicas",
                       "readyReplicas", "placedSince", "intensity", "predicted", "measured", "decision",
                       "alternatives", "emissions"}


def owner_of(gm: Subject) -> OwnerRef:
    return OwnerRef(name=gm.name, namespace=gm.namespace, uid=gm.uid)


def apply(rt: Runtime, body: dict, gm: Subject, seen: Seen, outcome: Outcome, now: datetime) -> bool:
    """Carry ``outcome`` out. Returns whether any child or status was written."""
    olog = obs.object_logger(log, gm.namespace, gm.name)
    owner = owner_of(gm)
    wrote = False
    for c in outcome.caches:  # before the Deployment that mounts it
        if c.claim:
            wrote |= apply_child(rt, builders.build_cache_claim(owner, c.serving, c.storage_class, c.access_mode))
        if c.job:
            wrote |= apply_child(rt, builders.build_download_job(owner, c.placement, c.serving))
    if outcome.deployment is not None:
        d = outcome.deployment
        wrote |= apply_child(rt, builders.build_deployment(owner, d.placement, d.replicas, d.serving))
    if outcome.service is not None:
        s = outcome.service
        wrote |= apply_child(rt, builders.build_service(owner, s.placement, s.since), verify_live=s.verify_live)
    if outcome.pdb:
        wrote |= apply_child(rt, builders.build_pdb(owner))
    for d in outcome.deletions:
        delete_child(rt, d.kind, d.name, d.namespace, d.uid)
        olog.info("deleted %s %s (%s)", d.kind, d.name, d.why)
        wrote = True
    if outcome.status is not None:
        wrote |= publish_status(rt, body, outcome.status.to_k8s(), outcome)
    involved = involved_ref(gm)
    for ev in outcome.events:
        if ev.decision:
            obs.DECISIONS_TOTAL.labels(ev.reason).inc()
        rt.recorder.record(involved, ev.reason, ev.message, ev.type)
    if outcome.accounted is not None:
        obs.record_accounted(gm.namespace, gm.name, outcome.accounted)
    export_gauges(gm, seen, outcome, now)
    if outcome.log:
        olog.info("%s", outcome.log)
    return wrote


def export_gauges(gm: Subject, seen: Seen, outcome: Outcome, now: datetime) -> None:
    for region, r in seen.regions.items():
        if r.intensity is not None:
            obs.GRID_INTENSITY.labels(region).set(r.intensity.grams_per_kwh)
            ts = r.intensity.timestamp
            obs.GRID_DATA_AGE.labels(region).set(max(0.0, (now - ts).total_seconds()) if ts is not None else 0.0)
    g = outcome.gauges
    if g is None:
        return
    ns, name = gm.namespace, gm.name
    obs.set_if(obs.READY_REPLICAS, g.ready_replicas, ns, name)
    if outcome.kind != "Serving":
        return
    obs.set_if(obs.REPLICAS, g.replicas, ns, name)
    obs.set_if(obs.PREDICTED_GRAMS, g.predicted_grams_per_million_tokens, ns, name)
    obs.set_if(obs.PREDICTED_POWER, g.predicted_power_watts, ns, name)
    obs.set_if(obs.PREDICTED_GPU_POWER, g.predicted_gpu_power_watts, ns, name)
    obs.set_if(obs.MEASURED_GPU_POWER, g.measured_gpu_power_watts, ns, name)
