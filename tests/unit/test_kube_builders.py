"""Pure builders: deterministic names, owner references, our labels, GPU limits, affinity, PSS."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from greenmodel.kube import builders, names
from greenmodel.kube.builders import OwnerRef, ServingSpec
from greenmodel.kube.names import Placement

OWNER = OwnerRef(name="chat", namespace="team-a", uid="1234-uid")
P = Placement("llama-3.2-3b-instruct-bf16", "europe-west9", "NVIDIA-L4")
SERVING = ServingSpec(image="vllm/vllm-openai:v0.6.3", args=("--model", "m", "--tensor-parallel-size", "2"),
                      gpus_per_replica=2)


def test_deployment_names_are_deterministic_and_distinct_per_placement():
    a = builders.build_deployment(OWNER, P, 2, SERVING)
    b = builders.build_deployment(OWNER, P, 5, SERVING)
    assert a["metadata"]["name"] == b["metadata"]["name"]
    other = Placement(P.variant, "europe-west3", P.gpu_product)
    assert names.deployment_name("chat", other) != a["metadata"]["name"]
    # another GreenModel with the same placement gets another name
    assert names.deployment_name("chat2", P) != a["metadata"]["name"]


@pytest.mark.parametrize("gm", ["x" * 253, "a" * 47, "9starts-with-digit", "chat"])
def test_names_fit_kubernetes_limits(gm):
    dn = names.deployment_name(gm, P)
    assert len(dn) <= 47 and dn[0].isalnum() and dn[-1].isalnum()
    sn = names.service_name(gm)
    assert len(sn) <= 63 and sn[0].isalpha()
    for v in names.child_labels(gm, P).values():
        assert len(v) <= 63


def test_long_names_with_common_prefix_do_not_collide():
    a, b = "x" * 100 + "a", "x" * 100 + "b"
    assert names.deployment_name(a, P) != names.deployment_name(b, P)
    assert names.service_name(a) != names.service_name(b)


def test_deployment_has_owner_labels_gpu_limits_affinity_and_probes():
    d = builders.build_deployment(OWNER, P, 3, SERVING)
    meta = d["metadata"]
    assert meta["ownerReferences"] == [{
        "apiVersion": "greenmodel.dev/v1alpha1", "kind": "GreenModel", "name": "chat", "uid": "1234-uid",
        "controller": True, "blockOwnerDeletion": True}]
    assert meta["labels"][names.LABEL_NAME] == "greenmodel-serving"
    assert meta["labels"][names.LABEL_INSTANCE] == "chat"
    assert meta["labels"][names.LABEL_MANAGED_BY] == "greenmodel-operator"
    assert meta["labels"][names.LABEL_COMPONENT] == names.component(P)
    spec = d["spec"]
    assert spec["replicas"] == 3
    sel = spec["selector"]["matchLabels"]
    assert all(spec["template"]["metadata"]["labels"][k] == v for k, v in sel.items())
    c = spec["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert c["args"] == list(SERVING.args)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
    terms = spec["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    exprs = {e["key"]: e["values"] for e in terms[0]["matchExpressions"]}
    assert exprs == {"topology.kubernetes.io/region": ["europe-west9"], "nvidia.com/gpu.product": ["NVIDIA-L4"]}
    assert builders.parse_placement_annotation(meta["annotations"]) == P


def test_pod_is_restricted_pss_compatible():
    pod = builders.build_deployment(OWNER, P, 1, SERVING)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True
    # restricted PSS allows only these volume types
    assert all(set(v) - {"name"} <= {"emptyDir", "configMap", "secret", "projected", "persistentVolumeClaim",
                                      "downwardAPI", "csi", "ephemeral"} for v in pod["volumes"])
    assert "hostNetwork" not in pod and "hostPID" not in pod


def test_labels_are_ours_never_the_parents():
    d = builders.build_deployment(OWNER, P, 1, SERVING)
    assert set(d["metadata"]["labels"]) == {
        names.LABEL_NAME, names.LABEL_INSTANCE, names.LABEL_COMPONENT, names.LABEL_MANAGED_BY,
        names.LABEL_VARIANT, names.LABEL_REGION, names.LABEL_GPU_PRODUCT}


def test_service_selects_exactly_the_live_placement():
    since = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    s = builders.build_service(OWNER, P, since)
    assert s["spec"]["selector"] == names.placement_selector("chat", P)
    assert s["metadata"]["annotations"][names.ANNOTATION_PLACEMENT_SINCE] == "2026-01-02T03:04:05Z"
    assert builders.parse_placement_annotation(s["metadata"]["annotations"]) == P


def test_pdb_spans_every_placement_of_the_instance():
    pdb = builders.build_pdb(OWNER)
    assert pdb["spec"]["selector"]["matchLabels"] == names.instance_selector("chat")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError):
        builders.build_deployment(OWNER, P, -1, SERVING)
    with pytest.raises(ValueError):
        builders.build_deployment(OWNER, P, 1, ServingSpec(image="x", args=(), gpus_per_replica=0))
