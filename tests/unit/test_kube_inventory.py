"""GPU inventory per region and product: allocatable minus requests of non-terminated pods."""

from __future__ import annotations

from greenmodel.kube.inventory import gpu_inventory, parse_quantity_int, pod_gpu_request


def node(name, region, product, gpus, ready=True, unschedulable=False):
    return {"metadata": {"name": name, "labels": {"topology.kubernetes.io/region": region,
                                                   "nvidia.com/gpu.product": product}},
            "spec": {"unschedulable": unschedulable},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus)},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(node_name, gpus, phase="Running", ns="a", instance=None, init=0):
    labels = {}
    if instance:
        labels = {"app.kubernetes.io/instance": instance, "app.kubernetes.io/managed-by": "greenmodel-operator",
                  "app.kubernetes.io/name": "greenmodel-serving"}
    spec = {"nodeName": node_name, "containers": [{"resources": {"limits": {"nvidia.com/gpu": gpus}}}]}
    if init:
        spec["initContainers"] = [{"resources": {"requests": {"nvidia.com/gpu": init}}}]
    return {"metadata": {"namespace": ns, "labels": labels}, "spec": spec, "status": {"phase": phase}}


def test_counts_allocatable_minus_scheduled_non_terminated():
    nodes = [node("n1", "r1", "L4", 4), node("n2", "r1", "L4", 4), node("n3", "r2", "H100", 8)]
    pods = [pod("n1", 2), pod("n1", 1, phase="Succeeded"), pod("n2", 3, phase="Pending"),
            pod(None, 4, phase="Pending"), pod("n3", 8, phase="Failed")]
    inv = gpu_inventory(nodes, pods)
    assert inv[("r1", "L4")].allocatable == 8
    assert inv[("r1", "L4")].used == 5
    assert inv[("r1", "L4")].free == 3
    assert inv[("r1", "L4")].free_per_node == [2, 1]
    assert inv[("r2", "H100")].free == 8


def test_not_ready_cordoned_and_unlabelled_nodes_do_not_count():
    nodes = [node("n1", "r1", "L4", 4, ready=False), node("n2", "r1", "L4", 4, unschedulable=True),
             {"metadata": {"name": "cpu", "labels": {}}, "status": {"allocatable": {"cpu": "8"}}}]
    assert gpu_inventory(nodes, []) == {}


def test_own_pods_count_as_available_to_their_greenmodel_only():
    inv = gpu_inventory([node("n1", "r1", "L4", 4)], [pod("n1", 2, ns="t", instance="chat"), pod("n1", 1)])
    pool = inv[("r1", "L4")]
    assert pool.free == 1
    assert pool.free_for("t", "chat") == 3
    assert pool.free_for("t", "other") == 1
    assert pool.free_for("u", "chat") == 1


def test_fragmentation_counts_whole_replicas_per_node():
    inv = gpu_inventory([node("n1", "r", "H100", 8), node("n2", "r", "H100", 8)], [pod("n1", 7), pod("n2", 7)])
    pool = inv[("r", "H100")]
    assert pool.free == 2
    assert pool.fits(2) == 0 and pool.fits(1) == 2


def test_quantities_and_init_containers():
    assert parse_quantity_int("2") == 2 and parse_quantity_int(3) == 3 and parse_quantity_int("2000m") == 2
    assert pod_gpu_request(pod("n", 1, init=4)) == 4
    assert pod_gpu_request(pod("n", 2, init=1)) == 2


def test_our_demand_counts_from_deployments_not_pods():
    from greenmodel.kube import builders
    from greenmodel.kube.builders import OwnerRef, ServingSpec
    from greenmodel.kube.inventory import demand_totals, deployment_demand, free_gpus
    from greenmodel.api.state import Placement

    p = Placement("v", "r1", "L4")
    dep_a = builders.build_deployment(OwnerRef("a", "t", "uid-a"), p, 3, ServingSpec("i", (), 2))
    dep_b = builders.build_deployment(OwnerRef("b", "t", "uid-b"), p, 1, ServingSpec("i", (), 1))
    demands = [deployment_demand(dep_a), deployment_demand(dep_b)]
    assert demands[0] == (("r1", "L4"), "uid-a", 6)
    # pods of ours are skipped in the inventory (counted from Deployments even before they exist)
    inv = gpu_inventory([node("n1", "r1", "L4", 8)], [pod("n1", 2, ns="t", instance="a")], skip_managed=True)
    assert inv[("r1", "L4")].used == 0
    totals, by_owner = demand_totals(demands)
    free_gpus_for = lambda uid: free_gpus(inv, totals, by_owner.get(uid, {}))  # noqa: E731
    assert free_gpus_for("uid-a") == {("r1", "L4"): 7}
    assert free_gpus_for("uid-b") == {("r1", "L4"): 2}
    assert free_gpus_for("uid-c") == {("r1", "L4"): 1}


def test_pods_of_ours_in_namespaces_we_do_not_serve_still_count():
    pods = [pod("n1", 2, ns="served", instance="a"), pod("n1", 3, ns="other", instance="b")]
    inv = gpu_inventory([node("n1", "r1", "L4", 8)], pods, skip_managed=True, served_namespaces={"served"})
    assert inv[("r1", "L4")].used == 3
