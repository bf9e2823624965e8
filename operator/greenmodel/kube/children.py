"""What the children of one GreenModel look like right now (pure, from listed objects).

Status is recomputed from this on every pass, never from a handler's memory: kopf is
at-least-once and a restarted operator must reach the same conclusions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from greenmodel.kube import names
from greenmodel.kube.builders import parse_placement_annotation
from greenmodel.kube.names import Placement


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


@dataclass
class DeploymentState:
    name: str
    uid: str
    placement: Placement
    spec_replicas: int
    ready_replicas: int
    updated_replicas: int
    rolled_out: bool  # controller saw the latest spec and every replica is updated and ready
    pods_ready: int = 0
    pods_scheduled: int = 0  # bound to a node and not terminated: they hold GPUs
    pods_unschedulable: int = 0
    unschedulable_message: str = ""
    live: dict = field(default_factory=dict, repr=False)

    @property
    def ready(self) -> bool:
        """Fully up: at least one replica, all desired replicas ready on the latest template."""
        return self.spec_replicas > 0 and self.rolled_out and self.ready_replicas >= self.spec_replicas


@dataclass
class ChildState:
    deployments: dict[Placement, DeploymentState] = field(default_factory=dict)
    service: dict | None = None
    service_placement: Placement | None = None
    service_since: datetime | None = None
    pdb: dict | None = None
    foreign: list[str] = field(default_factory=list)  # our labels but not owned by this GreenModel uid

    @property
    def ready_pods(self) -> int:
        return sum(d.pods_ready for d in self.deployments.values())

    @property
    def live_deployment(self) -> DeploymentState | None:
        if self.service_placement is None:
            return None
        return self.deployments.get(self.service_placement)


def _owned_by(obj: dict, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def observe_children(owner_uid: str, deployments: list[dict], pods: list[dict],
                     service: dict | None, pdb: dict | None) -> ChildState:
    state = ChildState()
    for dep in deployments:
        meta = dep.get("metadata") or {}
        if not _owned_by(dep, owner_uid):
            state.foreign.append(meta.get("name", ""))
            continue
        placement = parse_placement_annotation(meta.get("annotations"))
        if placement is None:
            state.foreign.append(meta.get("name", ""))
            continue
        spec = dep.get("spec") or {}
        st = dep.get("status") or {}
        spec_replicas = int(spec.get("replicas", 1))
        ready = int(st.get("readyReplicas") or 0)
        updated = int(st.get("updatedReplicas") or 0)
        rolled_out = (
            int(st.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
            and updated >= spec_replicas
            and int(st.get("replicas") or 0) == spec_replicas
        )
        state.deployments[placement] = DeploymentState(
            name=meta.get("name", ""), uid=meta.get("uid", ""), placement=placement,
            spec_replicas=spec_replicas, ready_replicas=ready, updated_replicas=updated,
            rolled_out=rolled_out, live=dep)
    by_component = {names.component(p): d for p, d in state.deployments.items()}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        dep = by_component.get(labels.get(names.LABEL_COMPONENT, ""))
        if dep is None:
            continue
        if pod_is_ready(pod):
            dep.pods_ready += 1
        if (pod.get("spec") or {}).get("nodeName") and (pod.get("status") or {}).get("phase") not in (
                "Succeeded", "Failed"):
            dep.pods_scheduled += 1
        msg = pod_is_unschedulable(pod)
        if msg:
            dep.pods_unschedulable += 1
            dep.unschedulable_message = msg
    if service is not None and _owned_by(service, owner_uid):
        state.service = service
        ann = (service.get("metadata") or {}).get("annotations") or {}
        state.service_placement = parse_placement_annotation(ann)
        state.service_since = _parse_time(ann.get(names.ANNOTATION_PLACEMENT_SINCE))
        # Our annotation says which placement the Service should serve (a hand-edited selector
        # is drift and gets restored). Without it, fall back to what the selector selects.
        if state.service_placement is None:
            sel = ((service.get("spec") or {}).get("selector") or {}).get(names.LABEL_COMPONENT)
            dep = by_component.get(sel or "")
            state.service_placement = dep.placement if dep else None
    if pdb is not None and _owned_by(pdb, owner_uid):
        state.pdb = pdb
    return state
