"""Observing a GreenModel's children from listed objects (the basis of recomputed status)."""

from __future__ import annotations

from datetime import datetime, timezone

from greenmodel.kube import builders, names
from greenmodel.kube.builders import OwnerRef, ServingSpec
from greenmodel.kube.children import observe_children, pod_is_ready, pod_is_unschedulable
from greenmodel.api.state import Placement

OWNER = OwnerRef("chat", "ns", "uid-1")
A = Placement("v1", "europe-west2", "NVIDIA-L4")
B = Placement("v1", "europe-west9", "NVIDIA-L4")
S = ServingSpec(image="i", args=(), gpus_per_replica=1)


def live_dep(p, replicas, ready, generation=1, observed=1):
    d = builders.build_deployment(OWNER, p, replicas, S)
    d["metadata"].update(uid="d-" + p.region, generation=generation)
    d["status"] = {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": replicas,
                   "readyReplicas": ready}
    return d


def live_pod(p, ready=True, unschedulable=False):
    labels = names.child_labels("chat", p)
    if unschedulable:
        status = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                  "reason": "Unschedulable", "message": "0/12 nodes are available: 4 Insufficient nvidia.com/gpu."}]}
    else:
        status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return {"metadata": {"labels": labels}, "spec": {} if unschedulable else {"nodeName": "n"}, "status": status}


def test_ready_and_switch_state():
    svc = builders.build_service(OWNER, A, datetime(2026, 1, 1, tzinfo=timezone.utc))
    state = observe_children("uid-1", [live_dep(A, 2, 2), live_dep(B, 2, 1)],
                             [live_pod(A), live_pod(A), live_pod(B), live_pod(B, ready=False)], svc, None)
    assert state.service_placement == A
    assert state.service_since == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert state.deployments[A].ready and not state.deployments[B].ready
    assert state.ready_pods == 3
    assert state.live_deployment is state.deployments[A]


def test_stale_generation_is_not_ready():
    state = observe_children("uid-1", [live_dep(A, 2, 2, generation=2, observed=1)], [], None, None)
    assert not state.deployments[A].ready


def test_unschedulable_pods_are_counted_with_the_scheduler_message():
    state = observe_children("uid-1", [live_dep(B, 1, 0)], [live_pod(B, unschedulable=True)], None, None)
    d = state.deployments[B]
    assert d.pods_unschedulable == 1 and "Insufficient nvidia.com/gpu" in d.unschedulable_message


def test_children_of_another_owner_are_ignored():
    state = observe_children("other-uid", [live_dep(A, 1, 1)], [], None, None)
    assert state.deployments == {} and state.foreign


def test_hand_edited_selector_keeps_the_annotated_placement():
    svc = builders.build_service(OWNER, A, datetime(2026, 1, 1, tzinfo=timezone.utc))
    svc["spec"]["selector"][names.LABEL_COMPONENT] = "p-tampered"
    state = observe_children("uid-1", [live_dep(A, 1, 1)], [], svc, None)
    assert state.service_placement == A


def test_pod_predicates():
    assert pod_is_ready(live_pod(A))
    assert not pod_is_ready(live_pod(A, ready=False))
    terminating = live_pod(A)
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not pod_is_ready(terminating)
    assert pod_is_unschedulable(live_pod(A)) is None
