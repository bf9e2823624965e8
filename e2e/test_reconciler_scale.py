"""200 GreenModels all Ready: time from apply to all Ready, reported (a measurement, generous limit).

The default fleet has 80 GPUs, so the test adds 50 simulated L4 nodes (200 GPUs) in a region of
its own, `e2e-scale-1`, with a static intensity in the test's operator config, and pins the
GreenModels there. The nodes are not labelled greenmodel.dev/simulated, so `cluster.sh up` never
touches them; the test deletes them at the end.
"""

from __future__ import annotations

import time

import pytest
import yaml

from greenmodel.kube import client as kc
from greenmodel.kube import names

from test_reconciler import INTERVAL, api, example_greenmodel, gm_apply, is_ready, record  # noqa: F401
from test_reconciler_support import OperatorProcess, wait_for, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
N_GREENMODELS = 200
N_NODES = 50
REGION = "e2e-scale-1"


def _node(i: int) -> dict:
    name = f"{REGION}-a-l4-{i}"
    res = {"cpu": "48", "memory": "192Gi", "ephemeral-storage": "1Ti", "pods": "110", names.GPU_RESOURCE: "4"}
    cidr = f"10.200.{i}.0/24"
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": name, "type": "kwok", "greenmodel.dev/e2e-scale": "true",
                                    names.REGION_LABEL: REGION, "topology.kubernetes.io/zone": f"{REGION}-a",
                                    names.GPU_PRODUCT_LABEL: "NVIDIA-L4", "nvidia.com/gpu.count": "4"}},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"capacity": res, "allocatable": dict(res)}}


@pytest.fixture
def scale_nodes(api):
    for n in api.list(kc.NODES, label_selector="greenmodel.dev/e2e-scale=true"):
        api.delete(kc.NODES, n["metadata"]["name"])
    for i in range(N_NODES):
        api.create(kc.NODES, _node(i))
    wait_for(lambda: sum(1 for n in api.list(kc.NODES, label_selector="greenmodel.dev/e2e-scale=true")
                         if any(c["type"] == "Ready" and c["status"] == "True"
                                for c in (n.get("status") or {}).get("conditions") or [])) == N_NODES,
             60, "scale nodes Ready")
    yield
    for n in api.list(kc.NODES, label_selector="greenmodel.dev/e2e-scale=true"):
        api.delete(kc.NODES, n["metadata"]["name"])


def test_200_greenmodels_all_ready(cluster, api, namespace, tmp_path, scale_nodes):
    config = write_config(tmp_path / "config.yaml", interval=30.0)
    cfg = yaml.safe_load(config.read_text())
    cfg["carbon"]["providers"]["static"]["gramsPerKilowattHour"]["SCALE"] = 50.0
    cfg["carbon"]["regions"][REGION] = {"zone": "SCALE", "providers": ["static"], "pue": 1.1}
    config.write_text(yaml.safe_dump(cfg))
    op = OperatorProcess(cluster.kubeconfig, config, [namespace], tmp_path / "operator.log").start()
    try:
        base = example_greenmodel(load={"outputTokensPerSecond": 50}, maxReplicas=1,
                                  placement={"regions": [REGION], "gpuProducts": ["NVIDIA-L4"]},
                                  quality={"benchmark": "MMLU", "minScore": 60})
        t0 = time.monotonic()
        for i in range(N_GREENMODELS):
            gm = dict(base, metadata={"name": f"gm-{i:03d}"})
            gm_apply(api, namespace, gm)
        t_applied = time.monotonic() - t0

        def count_ready():
            return sum(1 for g in api.list(kc.GREENMODELS, namespace) if is_ready(g))

        wait_for(lambda: count_ready() == N_GREENMODELS, 600, f"{N_GREENMODELS} GreenModels Ready",
                 interval=1.0, on_fail=lambda: f"{count_ready()} ready\n{op.tail()}")
        t_ready = time.monotonic() - t0
        deps = api.list(kc.DEPLOYMENTS, namespace, label_selector=names.ALL_OWNED_SELECTOR)
        assert len(deps) == N_GREENMODELS
        m = op.metrics()
        requests = sum(v for k, v in m.items() if k.startswith("greenmodel_child_writes_total"))
        record("scale_200", greenmodels=N_GREENMODELS, apply_seconds=round(t_applied, 2),
               apply_to_all_ready_seconds=round(t_ready, 2), child_writes=requests,
               status_writes=m.get("greenmodel_status_writes_total"),
               passes=sum(v for k, v in m.items() if k.startswith("greenmodel_reconcile_total")))
    finally:
        op.stop()
