"""The live-vs-desired comparison that makes idle passes write nothing (and drift get restored)."""

from __future__ import annotations

import copy

from greenmodel.kube import builders
from greenmodel.kube.builders import OwnerRef, ServingSpec
from greenmodel.kube.diff import is_subset, needs_apply
from greenmodel.kube.names import Placement

OWNER = OwnerRef(name="chat", namespace="ns", uid="u1")
P = Placement("v", "europe-west2", "NVIDIA-L4")
DESIRED = builders.build_deployment(OWNER, P, 2, ServingSpec(image="img", args=("--a", "1"), gpus_per_replica=1))


def _as_server_returns(obj: dict) -> dict:
    """What the API server gives back: defaults added, quantities as strings, extra metadata."""
    live = copy.deepcopy(obj)
    live.pop("apiVersion"), live.pop("kind")
    live["metadata"].update(uid="x", resourceVersion="7", generation=1, managedFields=[{"manager": "m"}])
    live["metadata"]["labels"]["extra"] = "by-someone-else"
    c = live["spec"]["template"]["spec"]["containers"][0]
    c.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    c["ports"][0]["hostPort"] = None
    c["readinessProbe"].update(successThreshold=1)
    c["readinessProbe"]["httpGet"]["scheme"] = "HTTP"
    live["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    # another manager's env var survives SSA (merge key `name`)
    c["env"].append({"name": "FROM_OTHER", "value": "1"})
    live["status"] = {"readyReplicas": 2}
    return live


def test_unchanged_object_needs_no_apply():
    assert not needs_apply(DESIRED, _as_server_returns(DESIRED))


def test_missing_object_needs_apply():
    assert needs_apply(DESIRED, None)


def test_drift_in_replicas_args_image_or_labels_needs_apply():
    for mutate in (
        lambda o: o["spec"].__setitem__("replicas", 5),
        lambda o: o["spec"]["template"]["spec"]["containers"][0].__setitem__("args", ["--a", "2"]),
        lambda o: o["spec"]["template"]["spec"]["containers"][0].__setitem__("image", "evil"),
        lambda o: o["metadata"]["labels"].pop("app.kubernetes.io/managed-by"),
        lambda o: o["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].__setitem__(
            "nvidia.com/gpu", "4"),
        lambda o: o["spec"]["template"]["spec"]["containers"][0]["env"].pop(0),
    ):
        live = _as_server_returns(DESIRED)
        mutate(live)
        assert needs_apply(DESIRED, live)


def test_quantities_and_bools():
    assert is_subset({"a": 1}, {"a": "1"})
    assert is_subset({"a": "1"}, {"a": 1})
    assert not is_subset({"a": True}, {"a": 1})
    assert not is_subset({"a": 1}, {"a": True})
    assert not is_subset({"a": False}, {"a": "False"})


def test_atomic_lists_compare_whole():
    assert not is_subset({"args": ["a"]}, {"args": ["a", "b"]})
    assert is_subset({"args": ["a", "b"]}, {"args": ["a", "b"]})


def test_quantities_compare_as_the_api_server_canonicalises_them():
    assert is_subset({"sizeLimit": "1024Mi"}, {"sizeLimit": "1Gi"})
    assert is_subset({"memory": "32768Mi"}, {"memory": "32Gi"}) and is_subset({"cpu": "1000m"}, {"cpu": "1"})
    assert not is_subset({"memory": "32Gi"}, {"memory": "33Gi"}) and not is_subset({"a": "1Gi"}, {"a": "1G"})
