"""What the children of one GreenModel look like right now (pure, from listed objects).

Status is recomputed from this on every pass, never from a handler's memory: kopf is
at-least-once and a restarted operator must reach the same conclusions.
"""

from __future__ import annotations

from datetime import datetime

from greenmodel.api.state import CacheState, ChildState, DeploymentState, Placement
from greenmodel.kube import names
from greenmodel.kube.builders import parse_placement_annotation
from greenmodel.kube.inventory import pod_gpu_request


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def pod_is_ready(pod: dict) -> bool:
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_is_unschedulable(pod: dict) -> str | None:
    """The scheduler's message when the pod cannot be placed (e.g. Insufficient nvidia.com/gpu)."""
    status = pod.get("status") or {}
    if status.get("phase") != "Pending" or (pod.get("spec") or {}).get("nodeName"):
        return None
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return (c.get("message") or "Unschedulable").splitlines()[0]
    return None


def _owned_by(obj: dict, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def _cache_key(obj: dict, owner_uid: str) -> tuple[str, str] | None:
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    if not _owned_by(obj, owner_uid) or names.ANNOTATION_MODEL_ID not in ann:
        return None
    return ann[names.ANNOTATION_MODEL_ID], ann.get(names.ANNOTATION_REGION, "")


def observe_caches(owner_uid: str, claims: list[dict], jobs: list[dict]) -> dict[tuple[str, str], CacheState]:
    """Model caches (PVC + download Job) by (model id, region), from the annotations both carry."""
    found: dict[tuple[str, str], dict] = {}
    for pvc in claims:
        key = _cache_key(pvc, owner_uid)
        if key is not None:
            meta = pvc["metadata"]
            found.setdefault(key, {}).update(claim_name=meta.get("name", ""), claim_uid=meta.get("uid", ""),
                                             claim_phase=(pvc.get("status") or {}).get("phase", "Pending"))
    for job in jobs:
        key = _cache_key(job, owner_uid)
        if key is None:
            continue
        meta, st = job["metadata"], job.get("status") or {}
        conds = {c.get("type"): c for c in st.get("conditions") or [] if c.get("status") == "True"}
        failed = conds.get("Failed")
        found.setdefault(key, {}).update(
            job_name=meta.get("name", ""), job_uid=meta.get("uid", ""),
            job_succeeded="Complete" in conds or int(st.get("succeeded") or 0) > 0,
            job_failed=(failed.get("message") or failed.get("reason") or "Failed") if failed else "",
            job_started=_parse_time(st.get("startTime") or meta.get("creationTimestamp")),
            job_completed=_parse_time(st.get("completionTime")))
    return {k: CacheState(model_id=k[0], region=k[1], **d) for k, d in found.items()}


def observe_children(owner_uid: str, deployments: list[dict], pods: list[dict],
                     service: dict | None, pdb: dict | None, claims: list[dict] | None = None,
                     jobs: list[dict] | None = None) -> ChildState:
    """The typed state of one GreenModel's children, from the listed objects (the parse boundary: nothing
    below this reads a raw body)."""
    foreign: list[str] = []
    deps: dict[Placement, dict] = {}
    for dep in deployments:
        meta = dep.get("metadata") or {}
        placement = parse_placement_annotation(meta.get("annotations")) if _owned_by(dep, owner_uid) else None
        if placement is None:
            foreign.append(meta.get("name", ""))
            continue
        spec = dep.get("spec") or {}
        st = dep.get("status") or {}
        spec_replicas = int(spec.get("replicas", 1))
        updated = int(st.get("updatedReplicas") or 0)
        deps[placement] = dict(
            name=meta.get("name", ""), namespace=meta.get("namespace", ""), uid=meta.get("uid", ""),
            placement=placement, spec_replicas=spec_replicas, ready_replicas=int(st.get("readyReplicas") or 0),
            updated_replicas=updated, status_replicas=int(st.get("replicas") or 0),
            rolled_out=(int(st.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
                        and updated >= spec_replicas and int(st.get("replicas") or 0) == spec_replicas),
            gpus_per_pod=pod_gpu_request({"spec": (spec.get("template") or {}).get("spec") or {}}),
            intent=(meta.get("annotations") or {}).get(names.ANNOTATION_INTENT, ""),
            created_at=_parse_time(meta.get("creationTimestamp")),
            pods_ready=0, pods_scheduled=0, pods_unschedulable=0, unschedulable_message="")
    by_component = {names.component(p): d for p, d in deps.items()}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        dep = by_component.get(labels.get(names.LABEL_COMPONENT, ""))
        if dep is None:
            continue
        if pod_is_ready(pod):
            dep["pods_ready"] += 1
        if (pod.get("spec") or {}).get("nodeName") and (pod.get("status") or {}).get("phase") not in (
                "Succeeded", "Failed"):
            dep["pods_scheduled"] += 1
        msg = pod_is_unschedulable(pod)
        if msg:
            dep["pods_unschedulable"] += 1
            dep["unschedulable_message"] = msg
    service_placement = service_since = None
    has_service = service is not None and _owned_by(service, owner_uid)
    if has_service:
        ann = (service.get("metadata") or {}).get("annotations") or {}
        service_placement = parse_placement_annotation(ann)
        service_since = _parse_time(ann.get(names.ANNOTATION_PLACEMENT_SINCE))
        # Our annotation says which placement the Service should serve (a hand-edited selector
        # is drift and gets restored). Without it, fall back to what the selector selects.
        if service_placement is None:
            sel = ((service.get("spec") or {}).get("selector") or {}).get(names.LABEL_COMPONENT)
            dep = by_component.get(sel or "")
            service_placement = dep["placement"] if dep else None
    return ChildState(deployments={p: DeploymentState(**d) for p, d in deps.items()}, service_exists=has_service,
                      service_placement=service_placement, service_since=service_since,
                      pdb_exists=pdb is not None and _owned_by(pdb, owner_uid), foreign=tuple(foreign),
                      caches=observe_caches(owner_uid, claims or [], jobs or []))
