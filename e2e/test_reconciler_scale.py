"""200 GreenModels all Ready: time from apply to all Ready, reported (a measurement, generous limit).

The default fleet has 80 GPUs, so the test adds 50 simulated L4 nodes (200 GPUs) in a region of
its own, `e2e-scale-1`, with a static intensity in the test's operator config, and pins the
GreenModels there. The nodes are not labelled greenmodel.dev/simulated, so `cluster.sh up` never
touches them; the test deletes them at the end.

Then, with the same 200 reconciled GreenModels, the operator is restarted (SIGTERM, start again): it must
write no child object, be idle again (work queue empty, every GreenModel passed once, no write for
IDLE_WINDOW s) within 60 s of launch, and write nothing (child or status) over the next 2 timer ticks.
"""

from __future__ import annotations

import time

import pytest
import yaml

from greenmodel.kube import client as kc
from greenmodel.kube import names
from greenmodel.testing import kwok

from test_reconciler import INTERVAL, api, example_greenmodel, gm_apply, is_ready, record  # noqa: F401
from test_reconciler_support import OperatorProcess, wait_for, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
N_GREENMODELS = 200
N_NODES = 50
REGION = "e2e-scale-1"
TIMER = 10.0  # operator timer interval (s): 2 idle ticks cost 20 s of CI time
IDLE_WINDOW = 3.0
RESTART_IDLE_LIMIT = 60.0


def _node(i: int, suffix: str) -> dict:
    name = f"{REGION}-a-l4-{i}-{suffix}"  # never a name used before: see greenmodel.testing.kwok
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
    suffix = kwok.fresh_suffix()
    for i in range(N_NODES):
        api.create(kc.NODES, _node(i, suffix))
    wait_for(lambda: sum(1 for n in api.list(kc.NODES, label_selector="greenmodel.dev/e2e-scale=true")
                         if any(c["type"] == "Ready" and c["status"] == "True"
                                for c in (n.get("status") or {}).get("conditions") or [])) == N_NODES,
             60, "scale nodes Ready")
    yield
    for n in api.list(kc.NODES, label_selector="greenmodel.dev/e2e-scale=true"):
        api.delete(kc.NODES, n["metadata"]["name"])


def test_200_greenmodels_all_ready(cluster, api, namespace, tmp_path, scale_nodes):
    config = write_config(tmp_path / "config.yaml", interval=TIMER)
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

        # ---- restart with the 200 reconciled GreenModels
        assert op.stop() == 0, op.tail()
        op = OperatorProcess(cluster.kubeconfig, config, [namespace], tmp_path / "operator-restart.log")
        t_launch = time.monotonic()
        op.start()
        idle_at = _wait_idle(op, t_launch)
        m = op.metrics()
        child_writes, status_writes = _writes(m)
        assert child_writes == 0, f"{child_writes} child writes after a restart with nothing to change\n{op.tail()}"
        assert idle_at <= RESTART_IDLE_LIMIT, f"idle {idle_at:.1f} s after the restart (limit {RESTART_IDLE_LIMIT})"

        # ---- 2 timer ticks while idle: every GreenModel is looked at, nothing is written
        passes0 = op.metric_sum("greenmodel_reconcile_total")
        time.sleep(2 * TIMER)
        m2 = op.metrics()
        tick_writes = sum(_writes(m2)) - child_writes - status_writes
        tick_passes = op.metric_sum("greenmodel_reconcile_total") - passes0
        assert tick_passes >= N_GREENMODELS, f"only {tick_passes} passes in 2 ticks: the timer did not run"
        assert tick_writes == 0, f"{tick_writes} writes by {N_GREENMODELS} idle GreenModels over 2 ticks"
        deps = api.list(kc.DEPLOYMENTS, namespace, label_selector=names.ALL_OWNED_SELECTOR)
        assert len(deps) == N_GREENMODELS
        record("scale_200_restart", greenmodels=N_GREENMODELS, restart_idle_seconds=round(idle_at, 1),
               restart_child_writes=child_writes, restart_status_writes=status_writes,
               restart_passes=_sum(m, "greenmodel_reconcile_total"),
               restart_kube_requests=_sum(m, "greenmodel_kube_requests_total"),
               idle_writes_per_gm_per_tick=tick_writes / N_GREENMODELS / 2, idle_passes_2_ticks=tick_passes)
    finally:
        op.stop()


def _sum(m: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in m.items() if k == prefix or k.startswith(prefix + "{"))


def _writes(m: dict[str, float]) -> tuple[float, float]:
    return _sum(m, "greenmodel_child_writes_total"), _sum(m, "greenmodel_status_writes_total")


def _wait_idle(op: OperatorProcess, t_launch: float) -> float:
    """Seconds from launch until the operator is idle: work queue drained once after every GreenModel passed,
    and no child/status write since, held for IDLE_WINDOW s (signals: greenmodel_workqueue_depth,
    greenmodel_reconcile_total, greenmodel_*_writes_total)."""
    state: dict = {"w": None, "since": 0.0, "quiet_since": None}

    def idle():
        m = op.metrics()
        now = time.monotonic()
        w = _writes(m)
        if w != state["w"]:
            state["w"], state["since"] = w, now
        quiet = m.get("greenmodel_workqueue_depth", 1) == 0 and _sum(m, "greenmodel_reconcile_total") >= N_GREENMODELS
        # the gauge also counts the timer's spread-out future passes, so it reads 0 only in the gap between
        # ticks: the queue having drained once (after every GreenModel passed) is the signal
        if quiet and state["quiet_since"] is None:
            state["quiet_since"] = now
        began = max(state["since"], state["quiet_since"] or now)
        return began - t_launch if state["quiet_since"] is not None and now - began >= IDLE_WINDOW else None

    return wait_for(idle, RESTART_IDLE_LIMIT + IDLE_WINDOW + 30, "operator idle after restart", interval=0.5,
                    on_fail=lambda: op.tail())
