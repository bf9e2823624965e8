"""GPU inventory per (region, GPU product): allocatable on nodes minus what scheduled pods hold.

Pure: takes node and pod dicts (as the API returns them) and counts. The reconciler lists
nodes and non-terminated pods once per inventory refresh and shares the result between all
GreenModels of that pass (one LIST of each, not one per GreenModel).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from greenmodel.kube import names
from greenmodel.kube.builders import parse_placement_annotation

TERMINATED_PHASES = ("Succeeded", "Failed")


def parse_quantity_int(value) -> int:
    """Integer count of an extended resource quantity ("2", 2, "2000m")."""
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    s = str(value).strip()
    if s.endswith("m"):
        return int(s[:-1]) // 1000
    if s.endswith("k"):
        return int(s[:-1]) * 1000
    try:
        return int(s)
    except ValueError:
        return int(float(s))


def pod_gpu_request(pod: dict, resource: str = names.GPU_RESOURCE) -> int:
    """GPUs a pod holds: max(sum over containers, max over init containers), requests else limits."""
    spec = pod.get("spec") or {}

    def one(c: dict) -> int:
        res = c.get("resources") or {}
        req = (res.get("requests") or {}).get(resource)
        lim = (res.get("limits") or {}).get(resource)
        return parse_quantity_int(req if req is not None else lim)

    main = sum(one(c) for c in spec.get("containers") or [])
    init = max((one(c) for c in spec.get("initContainers") or []), default=0)
    return max(main, init)


def node_is_schedulable(node: dict) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


@dataclass
class PoolGpus:
    """GPUs of one product in one region."""

    region: str
    gpu_product: str
    allocatable: int = 0
    used: int = 0
    nodes: int = 0
    free_per_node: list[int] = field(default_factory=list)
    used_by_instance: dict[tuple[str, str], int] = field(default_factory=dict)  # (ns, gm) -> GPUs

    @property
    def free(self) -> int:
        return max(0, self.allocatable - self.used)

    def free_for(self, namespace: str, gm_name: str) -> int:
        """Free GPUs as one GreenModel sees them: its own current pods count as available to it."""
        own = self.used_by_instance.get((namespace, names.label_value(gm_name)), 0)
        return max(0, self.allocatable - self.used + own)

    def fits(self, gpus_per_replica: int) -> int:
        """How many replicas of ``gpus_per_replica`` fit, node by node (fragmentation counts)."""
        if gpus_per_replica <= 0:
            return 0
        return sum(f // gpus_per_replica for f in self.free_per_node)


Inventory = dict[tuple[str, str], PoolGpus]


def gpu_inventory(nodes: list[dict], pods: list[dict], resource: str = names.GPU_RESOURCE,
                  skip_managed: bool = False, served_namespaces: set[str] | None = None) -> Inventory:
    """Allocatable GPUs of schedulable Ready nodes, minus requests of scheduled non-terminated pods.

    ``skip_managed`` leaves out our own serving pods (their demand is counted from our
    Deployments instead, see ``free_gpus``) -- only in ``served_namespaces`` (None: all), since
    the Deployments of namespaces another operator serves are not in our cache.
    """
    node_pool: dict[str, tuple[str, str]] = {}
    node_free: dict[str, int] = {}
    inv: Inventory = {}
    for node in nodes:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        region = labels.get(names.REGION_LABEL)
        product = labels.get(names.GPU_PRODUCT_LABEL)
        alloc = parse_quantity_int(((node.get("status") or {}).get("allocatable") or {}).get(resource))
        if not region or not product or alloc <= 0 or not node_is_schedulable(node):
            continue
        pool = inv.setdefault((region, product), PoolGpus(region, product))
        pool.allocatable += alloc
        pool.nodes += 1
        node_pool[meta.get("name", "")] = (region, product)
        node_free[meta.get("name", "")] = alloc
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") in TERMINATED_PHASES:
            continue
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or node_name not in node_pool:
            continue
        gpus = pod_gpu_request(pod, resource)
        if gpus <= 0:
            continue
        pool = inv[node_pool[node_name]]
        pool.used += gpus
        node_free[node_name] -= gpus
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        ours = labels.get(names.LABEL_MANAGED_BY) == names.MANAGED_BY and labels.get(names.LABEL_NAME) == names.APP_NAME
        if ours and skip_managed and (served_namespaces is None or meta.get("namespace") in served_namespaces):
            pool.used -= gpus  # undo: counted from our Deployments instead
            continue
        if ours and labels.get(names.LABEL_INSTANCE):
            key = (meta.get("namespace", ""), labels[names.LABEL_INSTANCE])
            pool.used_by_instance[key] = pool.used_by_instance.get(key, 0) + gpus
    for node_name, key in node_pool.items():
        inv[key].free_per_node.append(max(0, node_free[node_name]))
    for pool in inv.values():
        pool.free_per_node.sort(reverse=True)
    return inv


def deployment_demand(deployment: dict, resource: str = names.GPU_RESOURCE) -> tuple[tuple[str, str], str, int] | None:
    """((region, product), owner uid, GPUs) a Deployment of ours asks for: replicas x GPUs per pod.

    Counting desired replicas (not only scheduled pods) makes a burst of new GreenModels see
    each other's demand at once, before their pods exist.
    """
    meta = deployment.get("metadata") or {}
    placement = parse_placement_annotation(meta.get("annotations"))
    owners = [r.get("uid") for r in meta.get("ownerReferences") or [] if r.get("uid")]
    if placement is None or not owners:
        return None
    spec = deployment.get("spec") or {}
    per_pod = pod_gpu_request({"spec": (spec.get("template") or {}).get("spec") or {}}, resource)
    replicas = max(int(spec.get("replicas", 1)), int((deployment.get("status") or {}).get("replicas") or 0))
    return (placement.region, placement.gpu_product), owners[0], per_pod * replicas


Demands = dict[tuple[str, str], int]  # GPUs per (region, product) pool


def demand_totals(demands: Iterable[tuple[tuple[str, str], str, int]]) -> tuple[Demands, dict[str, Demands]]:
    """GPUs asked for per pool by all our Deployments, and the same per owner uid."""
    totals: Demands = {}
    by_owner: dict[str, Demands] = {}
    for pool, uid, gpus in demands:
        totals[pool] = totals.get(pool, 0) + gpus
        own = by_owner.setdefault(uid, {})
        own[pool] = own.get(pool, 0) + gpus
    return totals, by_owner


def free_gpus(inv: Inventory, totals: Demands, own: Demands) -> dict[tuple[str, str], int]:
    """Free GPUs per pool as one GreenModel sees them: ``inv`` (built from pods *other* than ours,
    ``skip_managed=True``) less every GreenModel's demand (``totals``) except its own (``own``), which
    is free to it (it may rescale or move within what it holds)."""
    return {key: max(0, pool.allocatable - pool.used - (totals.get(key, 0) - own.get(key, 0)))
            for key, pool in inv.items()}

