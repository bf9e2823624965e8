"""The local control plane is a real Kubernetes: the scheduler places GPU pods against node capacity, kwok
makes them Running, CEL validation and RBAC are enforced by the real API server."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.e2e

GPU = "nvidia.com/gpu"
REGION = "topology.kubernetes.io/region"


def _wait(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


def _gpu_pod_spec(region: str, gpus: int = 1) -> client.V1PodSpec:
    return client.V1PodSpec(
        node_selector={REGION: region},
        containers=[client.V1Container(
            name="serve", image="registry.invalid/vllm:never-pulled",  # kwok runs nothing; the image is never pulled
            resources=client.V1ResourceRequirements(requests={GPU: str(gpus)}, limits={GPU: str(gpus)}))],
    )


def _deployment(name: str, region: str, replicas: int, gpus: int = 1) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels), spec=_gpu_pod_spec(region, gpus)),
        ),
    )


def _running_ready(pod: client.V1Pod) -> bool:
    conds = {c.type: c.status for c in (pod.status.conditions or [])}
    return pod.status.phase == "Running" and conds.get("Ready") == "True"


def _free_gpus(core: client.CoreV1Api, region: str) -> dict[str, int]:
    """Allocatable GPUs minus the GPU requests of non-terminated pods, per node of the region."""
    nodes = core.list_node(label_selector=f"{REGION}={region}").items
    free = {n.metadata.name: int(n.status.allocatable.get(GPU, "0")) for n in nodes}
    for p in core.list_pod_for_all_namespaces(field_selector="status.phase!=Succeeded,status.phase!=Failed").items:
        if p.spec.node_name in free:
            free[p.spec.node_name] -= sum(int((c.resources.requests or {}).get(GPU, "0")) for c in p.spec.containers)
    return free


def test_binaries_report_the_pinned_versions(cluster):
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert server["clientVersion"]["gitVersion"] == server["serverVersion"]["gitVersion"]
    assert server["serverVersion"]["gitVersion"].startswith("v1.36.")
    # helm was built with the Kubernetes minor in its ldflags, so `helm template` does not assume 1.20
    assert "v3." in cluster.helm("version", "--short").stdout


def test_fleet_matches_topology(cluster, k8s):
    nodes = client.CoreV1Api(k8s).list_node(label_selector="greenmodel.dev/simulated=true").items
    regions = cluster.topology["regions"]
    want = sum(int(g.get("count", 1)) for groups in regions.values() for g in groups)
    assert len(nodes) == want
    assert {n.metadata.labels[REGION] for n in nodes} == set(regions)
    assert len({n.spec.pod_cidr for n in nodes}) == len(nodes), "podCIDRs must be distinct"
    for n in nodes:
        labels, product = n.metadata.labels, n.metadata.labels["nvidia.com/gpu.product"]
        assert product in cluster.topology["products"]
        assert labels["topology.kubernetes.io/zone"].startswith(labels[REGION] + "-")
        assert n.status.allocatable[GPU] == n.status.capacity[GPU] == labels["nvidia.com/gpu.count"]
        assert {c.type: c.status for c in n.status.conditions}["Ready"] == "True", n.metadata.name


def test_gpu_deployment_runs_only_in_the_selected_region(k8s, namespace):
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    region = "europe-west9"
    apps.create_namespaced_deployment(namespace, _deployment("llm", region, replicas=3))

    def ready_pods():
        pods = core.list_namespaced_pod(namespace, label_selector="app=llm").items
        return pods if len(pods) == 3 and all(_running_ready(p) for p in pods) else None

    pods = _wait(ready_pods, 60, "3 Running/Ready pods")
    region_nodes = {n.metadata.name for n in core.list_node(label_selector=f"{REGION}={region}").items}
    assert region_nodes, "topology has no europe-west9 nodes"
    for p in pods:
        assert p.spec.node_name in region_nodes, f"{p.metadata.name} on {p.spec.node_name}, outside {region}"
        assert p.status.pod_ip, "kwok assigns a pod IP"
    _wait(lambda: (apps.read_namespaced_deployment(namespace=namespace, name="llm").status.available_replicas or 0) == 3,
          30, "Deployment availableReplicas=3")


def test_exhausted_region_leaves_the_next_pod_pending(k8s, namespace):
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    region = "europe-west3"
    free = sum(max(0, f) for f in _free_gpus(core, region).values())
    assert free > 0, f"{region} has no free GPUs before the test"
    apps.create_namespaced_deployment(namespace, _deployment("fill", region, replicas=free))
    _wait(lambda: sum(_running_ready(p) for p in core.list_namespaced_pod(namespace, label_selector="app=fill").items) == free,
          90, f"{free} fill pods Running in {region}")
    assert sum(max(0, f) for f in _free_gpus(core, region).values()) == 0

    core.create_namespaced_pod(namespace, client.V1Pod(metadata=client.V1ObjectMeta(name="one-more"), spec=_gpu_pod_spec(region)))

    def unschedulable():
        p = core.read_namespaced_pod("one-more", namespace)
        cond = next((c for c in (p.status.conditions or []) if c.type == "PodScheduled"), None)
        return cond if cond and cond.status == "False" else None

    cond = _wait(unschedulable, 30, "PodScheduled=False on the extra pod")
    assert cond.reason == "Unschedulable"
    assert f"Insufficient {GPU}" in cond.message
    pod = core.read_namespaced_pod("one-more", namespace)
    assert pod.status.phase == "Pending" and not pod.spec.node_name

    # the same pod aimed at another region is scheduled: the limit is that region's capacity, nothing else
    other = "europe-central2"
    core.create_namespaced_pod(namespace, client.V1Pod(metadata=client.V1ObjectMeta(name="elsewhere"), spec=_gpu_pod_spec(other)))
    _wait(lambda: _running_ready(core.read_namespaced_pod("elsewhere", namespace)), 30, f"pod Running in {other}")


def test_crd_cel_rule_rejects_bad_object_with_its_message(k8s, namespace):
    ext = client.ApiextensionsV1Api(k8s)
    group = f"t{uuid.uuid4().hex[:8]}.e2e.greenmodel.dev"  # unique: CRDs are cluster-scoped, sessions may overlap
    message = "minReplicas must be less than or equal to maxReplicas"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"scalers.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "scalers", "singular": "scaler", "kind": "Scaler"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                    "type": "object",
                    "properties": {"minReplicas": {"type": "integer"}, "maxReplicas": {"type": "integer"}},
                    "x-kubernetes-validations": [{"rule": "self.minReplicas <= self.maxReplicas", "message": message}],
                }}}},
            }],
        },
    }
    ext.create_custom_resource_definition(crd)
    try:
        _wait(lambda: any(c.type == "Established" and c.status == "True"
                          for c in (ext.read_custom_resource_definition(f"scalers.{group}").status.conditions or [])),
              30, "CRD Established")
        co = client.CustomObjectsApi(k8s)

        def create(lo: int, hi: int):
            body = {"apiVersion": f"{group}/v1", "kind": "Scaler", "metadata": {"name": f"s{lo}-{hi}"},
                    "spec": {"minReplicas": lo, "maxReplicas": hi}}
            return co.create_namespaced_custom_object(group, "v1", namespace, "scalers", body)

        # right after Established the new resource can take a moment to be served
        _wait(lambda: _try(lambda: create(1, 3)), 30, "a valid object to be accepted")
        with pytest.raises(ApiException) as err:
            create(5, 2)
        assert err.value.status == 422
        assert message in err.value.body
    finally:
        ext.delete_custom_resource_definition(f"scalers.{group}")


def _try(fn):
    try:
        return fn() or True
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def test_serviceaccount_without_rights_is_denied(cluster, k8s, namespace):
    core, rbac = client.CoreV1Api(k8s), client.RbacAuthorizationV1Api(k8s)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody")))
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=600))).status.token

    cfg = client.Configuration()
    cfg.host, cfg.ssl_ca_cert = cluster.server, cluster.ca_file
    cfg.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(cfg) as sa_api:
        review = client.AuthenticationV1Api(sa_api).create_self_subject_review(
            client.V1SelfSubjectReview(metadata=client.V1ObjectMeta()))
        user = f"system:serviceaccount:{namespace}:nobody"
        assert review.status.user_info.username == user  # the token authenticates: denial below is RBAC
        sa_core = client.CoreV1Api(sa_api)
        with pytest.raises(ApiException) as err:
            sa_core.list_namespaced_pod(namespace)
        assert err.value.status == 403 and user in err.value.body

        # granting exactly "list pods" makes that call pass and nothing more
        rbac.create_namespaced_role(namespace, client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])]))
        rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="nobody-reads-pods"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="nobody", namespace=namespace)]))
        _wait(lambda: _allowed(lambda: sa_core.list_namespaced_pod(namespace)), 10, "RoleBinding to take effect")
        with pytest.raises(ApiException) as err:
            sa_core.delete_collection_namespaced_pod(namespace)
        assert err.value.status == 403
        with pytest.raises(ApiException) as err:
            sa_core.list_namespaced_pod("default")
        assert err.value.status == 403


def _allowed(fn) -> bool:
    try:
        fn()
        return True
    except ApiException as e:
        if e.status == 403:
            return False
        raise
