"""Operator faults on the real control plane (issue 8, "Faults"): inject, then converge within a stated
limit, with exactly one set of children per GreenModel and nothing lost.

- SIGKILL at random moments, 20 times, during a burst of GreenModels;
- the operator down while 50 GreenModels are edited and 10 deleted;
- another writer patching a child Deployment every 100 ms;
- SIGTERM in the middle of reconciling a burst.

The GreenModels are pinned to a region of simulated L4 nodes of their own (the fixture of
e2e/test_reconciler_scale.py), so these tests never compete for the default fleet's GPUs.
Figures are printed as RESULT lines (and appended to $GREENMODEL_E2E_RESULTS).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter

import pytest
import yaml

from greenmodel.kube import client as kc
from greenmodel.kube import names

from test_reconciler import api, example_greenmodel, gm_apply, gm_get, is_ready, record  # noqa: F401
from test_reconciler_scale import REGION, scale_nodes  # noqa: F401  (fixture: 200 L4 GPUs in REGION)
from test_reconciler_support import OperatorProcess, wait_for, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
INTERVAL = 2.0
SMALL = {"load": {"outputTokensPerSecond": 50}, "maxReplicas": 3,
         "placement": {"regions": [REGION], "gpuProducts": ["NVIDIA-L4"]},
         "quality": {"benchmark": "MMLU", "minScore": 60}}


@pytest.fixture
def config(tmp_path):
    path = write_config(tmp_path / "config.yaml", interval=INTERVAL)
    cfg = yaml.safe_load(path.read_text())
    cfg["carbon"]["providers"]["static"]["gramsPerKilowattHour"]["SCALE"] = 50.0
    cfg["carbon"]["regions"][REGION] = {"zone": "SCALE", "providers": ["static"], "pue": 1.1}
    path.write_text(yaml.safe_dump(cfg))
    return path


def no_pods_terminating(api) -> bool:  # noqa: F811
    return not any((p.get("metadata") or {}).get("deletionTimestamp") for p in api.list(kc.PODS))


@pytest.fixture
def start(cluster, api, namespace, config, tmp_path, scale_nodes):  # noqa: F811
    # The previous test's namespace (up to 60 pods) is still being deleted: let kwok finish that first, so a
    # test measures the operator, not kwok working through another test's deletions.
    wait_for(lambda: no_pods_terminating(api), 120, "the previous test's pods deleted", interval=0.5)
    procs: list[OperatorProcess] = []

    def _start(check_health: bool = True) -> OperatorProcess:
        op = OperatorProcess(cluster.kubeconfig, config, [namespace], tmp_path / "operator.log")
        if check_health:
            op.start()
        else:  # a bare Popen: the SIGKILL test kills it at any moment, even before /readyz
            import os
            import subprocess
            from test_reconciler_support import GREENMODEL_BIN, REPO
            op._log = open(op.log_path, "ab")
            op.proc = subprocess.Popen(
                [str(GREENMODEL_BIN), "run", "--config", str(config), "--metrics-port", str(op.port),
                 "--namespace", namespace], env={**os.environ, "KUBECONFIG": cluster.kubeconfig},
                stdout=op._log, stderr=subprocess.STDOUT, cwd=REPO)
        procs.append(op)
        return op

    yield _start
    for op in procs:
        op.stop()


def gm(name: str, **extra) -> dict:
    return example_greenmodel(name, **{**SMALL, **extra})


def children_by_owner(api, ns) -> dict[str, Counter]:  # noqa: F811
    out: dict[str, Counter] = {}
    for kind, plural in ((kc.DEPLOYMENTS, "deployments"), (kc.SERVICES, "services"), (kc.PDBS, "pdbs")):
        for o in api.list(kind, ns, label_selector=names.ALL_OWNED_SELECTOR):
            refs = o["metadata"].get("ownerReferences") or []
            owner = refs[0]["name"] if refs else "<orphan>"
            out.setdefault(owner, Counter())[plural] += 1
    return out


def exactly_one_set(api, ns, expected: set[str]):  # noqa: F811
    per = children_by_owner(api, ns)
    ok = set(per) == expected and all(c == Counter(deployments=1, services=1, pdbs=1) for c in per.values())
    return per if ok else None


def all_ready(api, ns, expected: set[str]) -> bool:  # noqa: F811
    gms = {g["metadata"]["name"]: g for g in api.list(kc.GREENMODELS, ns)}
    return set(gms) == expected and all(is_ready(g) for g in gms.values())


def wait_for_a_pass_in_flight(op: OperatorProcess, timeout: float) -> float | None:
    """Poll the operator's own gauge until a reconcile pass is running; the monotonic time it was seen (the
    caller signals right after), or None if no pass ran within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if op.metrics().get("greenmodel_reconciles_in_flight", 0) >= 1:
                return time.monotonic()
        except OSError:  # not serving /metrics yet
            pass
        time.sleep(0.005)
    return None


def replicasets_per_deployment(api, ns) -> Counter:  # noqa: F811
    rs = api.list(kc.ResourceKind("apps", "v1", "replicasets"), ns, label_selector=names.ALL_OWNED_SELECTOR)
    return Counter((r["metadata"].get("ownerReferences") or [{"name": "<orphan>"}])[0]["name"] for r in rs)


# ---------------------------------------------------------------------------------------------------
def test_sigkill_twenty_times_during_a_burst(api, namespace, start):  # noqa: F811
    seed = int(time.time())
    rng = random.Random(seed)
    n = 30
    expected = {f"burst-{i:02d}" for i in range(n)}
    pending = sorted(expected)
    kills, mid_pass = [], 0
    for k in range(20):
        # apply a slice of the burst, start the operator, kill it while a pass runs (its own gauge says so);
        # every fourth round at a random moment instead (before or after ready, maybe between passes)
        for _ in range(2 if k < 15 else 0):
            if pending:
                gm_apply(api, namespace, gm(pending.pop(0)))
        op = start(check_health=False)
        t0 = time.monotonic()
        if k % 4 == 3:
            time.sleep(rng.uniform(0.2, 2.5))
            seen = None
        else:
            seen = wait_for_a_pass_in_flight(op, 10.0)
        op.kill(signal.SIGKILL)
        mid_pass += seen is not None
        kills.append((round(time.monotonic() - t0, 2), "mid-pass" if seen is not None else "random"))
    for name in pending:
        gm_apply(api, namespace, gm(name))
    t_last = time.monotonic()
    op = start()
    wait_for(lambda: all_ready(api, namespace, expected), 2 * INTERVAL + 60, f"{n} GreenModels Ready after the last restart",
             interval=0.5, on_fail=op.tail)
    converge = time.monotonic() - t_last
    per = wait_for(lambda: exactly_one_set(api, namespace, expected), 30,
                   "exactly one Deployment, Service and PDB per GreenModel",
                   on_fail=lambda: f"{children_by_owner(api, namespace)}\n{op.tail()}")
    rs = replicasets_per_deployment(api, namespace)
    assert "<orphan>" not in rs and all(v == 1 for v in rs.values()), rs
    assert len(per) == n
    assert mid_pass >= 12, f"only {mid_pass} of 15 targeted kills landed while a pass ran: {kills}"
    record("sigkill_20_times", seed=seed, kills_after_start_seconds=kills, kills_mid_pass=mid_pass, greenmodels=n,
           ready_after_last_restart_seconds=round(converge, 2), timer_interval_seconds=INTERVAL)


# ---------------------------------------------------------------------------------------------------
def test_operator_down_while_50_are_edited_and_10_deleted(api, namespace, start):  # noqa: F811
    n = 60
    names_ = [f"gm-{i:02d}" for i in range(n)]
    op = start()
    for name in names_:
        gm_apply(api, namespace, gm(name))
    wait_for(lambda: all_ready(api, namespace, set(names_)), 120, f"{n} Ready", interval=0.5, on_fail=op.tail)
    op.stop()
    edited, deleted = names_[:50], names_[50:]
    for name in edited:  # minReplicas 2: every edited GreenModel needs its Deployment scaled
        gm_apply(api, namespace, gm(name, minReplicas=2))
    for name in deleted:
        api.delete(kc.GREENMODELS, name, namespace)
    t0 = time.monotonic()
    op = start()

    def converged():
        if not all_ready(api, namespace, set(edited)):
            return None
        deps = api.list(kc.DEPLOYMENTS, namespace, label_selector=names.ALL_OWNED_SELECTOR)
        by_owner = {d["metadata"]["ownerReferences"][0]["name"]: d for d in deps}
        if set(by_owner) != set(edited):
            return None
        return all(d["spec"]["replicas"] == 2 for d in by_owner.values()) or None

    wait_for(converged, 120, "50 edits applied and 10 deletions cleaned up", interval=1.0,
             on_fail=lambda: f"{children_by_owner(api, namespace)}\n{op.tail()}")
    took = time.monotonic() - t0
    assert exactly_one_set(api, namespace, set(edited)), children_by_owner(api, namespace)
    m = op.metrics()
    leaked = [k for k in m if any(f'name="{d}"' in k for d in deleted)]
    assert not leaked, f"metrics of deleted GreenModels: {leaked[:5]}"
    record("down_while_edited", edited=len(edited), deleted=len(deleted), converge_after_return_seconds=round(took, 2),
           limit_seconds=120)


# ---------------------------------------------------------------------------------------------------
def test_a_writer_fighting_over_a_child_every_100ms(api, namespace, start):  # noqa: F811
    op = start()
    gm_apply(api, namespace, gm("contested"))
    wait_for(lambda: is_ready(gm_get(api, namespace, "contested")), 60, "contested Ready", on_fail=op.tail)
    dep = api.list(kc.DEPLOYMENTS, namespace, label_selector=names.ALL_OWNED_SELECTOR)[0]
    dname, want = dep["metadata"]["name"], dep["spec"]["replicas"]
    intruder = kc.KubeClient.from_environment(op.kubeconfig)
    stop = threading.Event()
    patches = Counter()

    def fight():
        while not stop.is_set():
            try:
                intruder.apply(kc.DEPLOYMENTS, {"apiVersion": "apps/v1", "kind": "Deployment",
                                                "metadata": {"name": dname, "namespace": namespace},
                                                "spec": {"replicas": want + 2}},
                               field_manager="e2e-intruder", force=True)
                patches["ok"] += 1
            except Exception as exc:  # noqa: BLE001 - counted, the fight goes on
                patches[type(exc).__name__] += 1
            stop.wait(0.1)

    log_lines0 = len(op.log_path.read_bytes().splitlines())
    writes0 = op.metric_sum("greenmodel_child_writes_total")
    restores0 = op.metrics().get('greenmodel_child_writes_total{kind="Deployment",verb="apply"}', 0)
    t = threading.Thread(target=fight, daemon=True)
    seconds = 15.0
    t.start()
    time.sleep(seconds)
    stop.set()
    t.join()
    writes = op.metric_sum("greenmodel_child_writes_total") - writes0
    restores = (op.metrics().get('greenmodel_child_writes_total{kind="Deployment",verb="apply"}', 0)
                - restores0)
    lines = op.log_path.read_bytes().splitlines()[log_lines0:]
    errors = [ln for ln in lines if b'"level": "error"' in ln.lower() or b'"level": "critical"' in ln.lower()]
    t_stop = time.monotonic()
    wait_for(lambda: (api.get(kc.DEPLOYMENTS, dname, namespace) or {}).get("spec", {}).get("replicas") == want,
             2 * INTERVAL + 2, "the Deployment back at the desired replicas after the other writer stopped",
             on_fail=op.tail)
    back = time.monotonic() - t_stop
    record("conflicting_writer", other_writes=patches["ok"], other_errors=dict(patches), seconds=seconds,
           operator_child_writes=writes, operator_deployment_restores=restores,
           operator_writes_per_second=round(writes / seconds, 2),
           error_log_lines=len(errors), log_lines=len(lines), restored_after_seconds=round(back, 2))
    assert patches["ok"] >= seconds * 4, patches  # the fight really happened
    # ... and the operator fought back: it re-applied the Deployment while the other writer was at it
    assert restores >= 1, f"no Deployment write by the operator in {seconds:.0f}s of fighting"
    # All objects of the GreenModel together (Deployment, Service, PDB) at most about one write a second.
    assert writes <= seconds * 1.2 + 3, f"{writes} operator writes in {seconds:.0f}s"
    assert len(errors) <= 2, b"\n".join(errors[:5]).decode(errors="replace")


# ---------------------------------------------------------------------------------------------------
def test_sigterm_mid_reconcile_exits_in_grace_and_restart_has_no_duplicates(api, namespace, start):  # noqa: F811
    n = 20
    expected = {f"term-{i:02d}" for i in range(n)}
    op = start()
    for name in sorted(expected):
        gm_apply(api, namespace, gm(name))
    seen = wait_for_a_pass_in_flight(op, 10.0)  # the operator's own gauge: a pass is running now
    assert seen is not None, f"no reconcile pass ran within 10 s of applying {n} GreenModels:\n{op.tail()}"
    t0 = time.monotonic()
    op.proc.send_signal(signal.SIGTERM)
    rc = op.proc.wait(timeout=30)
    exit_s = time.monotonic() - t0
    assert rc == 0, f"exit code {rc}:\n{op.tail()}"
    assert exit_s < 30, "did not exit within the default terminationGracePeriodSeconds"
    op2 = start()
    wait_for(lambda: all_ready(api, namespace, expected), 90, f"{n} Ready after restart", interval=0.5, on_fail=op2.tail)
    wait_for(lambda: exactly_one_set(api, namespace, expected), 30, "one set of children each",
             on_fail=lambda: str(children_by_owner(api, namespace)))
    record("sigterm_mid_reconcile", greenmodels=n, exit_seconds=round(exit_s, 2), exit_code=rc, grace_seconds=30,
           signal_after_pass_seen_ms=round((t0 - seen) * 1000, 1))
