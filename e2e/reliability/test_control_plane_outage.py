"""The API server stopped for 100 s and restarted, etcd data kept (issue 8, "Faults").

Runs on a PRIVATE cluster (own state directory and ports) so the shared one is never disturbed; `make test`
runs it in lane 2, beside the shared-cluster tests (see the Makefile). Pass criteria: the operator
process keeps running (same PID, liveness 200 throughout: the kubelet must not restart-loop it for an
outage it cannot fix), its log is not flooded, watches resume, and a GreenModel created after recovery is
reconciled within 10 s (and Ready once the simulated nodes, whose leases lapsed, are Ready again); one applied
before the outage is still served by exactly one set of children.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from greenmodel.kube import client as kc
from greenmodel.kube import names
from greenmodel.testing.ci import require

from test_reconciler import example_greenmodel, is_ready, record
from test_reconciler_support import REPO, OperatorProcess, wait_for, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLUSTER_SH = REPO / "e2e" / "cluster.sh"
OUTAGE_SECONDS = 100
INTERVAL = 2.0
PORTS = {"GM_PORT_ETCD": "23791", "GM_PORT_ETCD_PEER": "23801", "GM_PORT_APISERVER": "16444",
         "GM_PORT_KCM": "10267", "GM_PORT_SCHEDULER": "10269", "GM_PORT_KWOK": "10249"}


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("outage") / "cluster"
    env = {**os.environ, "GREENMODEL_CLUSTER_DIR": str(state), "GREENMODEL_NO_BUILD": "1", **PORTS}

    def sh(*args, timeout=300):
        return subprocess.run([str(CLUSTER_SH), *args], env=env, capture_output=True, text=True, timeout=timeout)

    up = sh("up")
    if up.returncode != 0:
        require(False, f"private cluster did not come up:\n{up.stderr[-4000:]}")
    kubeconfig = str(state / "admin.kubeconfig")
    api = kc.KubeClient.from_environment(kubeconfig)
    kubectl = Path(next(line.split("=", 1)[1] for line in sh("env").stdout.splitlines()
                        if line.startswith("export PATH=")).split(":")[0].strip("'\"")) / "kubectl"
    for path in (REPO / "crds",):
        subprocess.run([str(kubectl), "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", str(path)],
                       check=True, capture_output=True)
    subprocess.run([str(kubectl), "--kubeconfig", kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
                    "crd/greenmodels.greenmodel.dev", "crd/modelcatalogs.greenmodel.dev"], check=True, capture_output=True)
    subprocess.run([str(kubectl), "--kubeconfig", kubeconfig, "apply", "--server-side", "-f",
                    str(REPO / "examples" / "catalog.yaml")], check=True, capture_output=True)
    try:
        yield {"sh": sh, "kubeconfig": kubeconfig, "api": api, "state": state}
    finally:
        sh("down", timeout=120)


def _healthz(port: int) -> int | None:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def test_api_server_down_100s_then_back(private_cluster, tmp_path):
    pc = private_cluster
    api: kc.KubeClient = pc["api"]
    ns = "outage"
    api.create(kc.ResourceKind("", "v1", "namespaces", namespaced=False), {"metadata": {"name": ns}})
    wait_for(lambda: api.get(kc.ResourceKind("", "v1", "serviceaccounts"), "default", ns), 30, "default SA")
    config = write_config(tmp_path / "config.yaml", interval=INTERVAL)
    op = OperatorProcess(pc["kubeconfig"], config, [ns], tmp_path / "operator.log").start()
    try:
        small = {"load": {"outputTokensPerSecond": 50}, "maxReplicas": 1}

        def apply(name):
            gm = example_greenmodel(name, **small)
            gm["metadata"]["namespace"] = ns
            return api.apply(kc.GREENMODELS, gm, field_manager="e2e-user")

        apply("before")
        wait_for(lambda: is_ready(api.get(kc.GREENMODELS, "before", ns)), 60, "before Ready", on_fail=op.tail)
        pid = op.proc.pid
        lines0 = len(op.log_path.read_bytes().splitlines())

        stop = pc["sh"]("stop", "kube-apiserver")
        assert stop.returncode == 0, stop.stderr
        t_down = time.monotonic()
        health = {}
        while time.monotonic() - t_down < OUTAGE_SECONDS:
            assert op.proc.poll() is None, f"operator exited during the outage:\n{op.tail()}"
            code = _healthz(op.port)
            health[code] = health.get(code, 0) + 1
            time.sleep(2.0)
        outage_lines = len(op.log_path.read_bytes().splitlines()) - lines0
        start = pc["sh"]("start", "kube-apiserver", timeout=120)
        assert start.returncode == 0, start.stderr
        t_back = time.monotonic()

        apply("after")
        t_applied = time.monotonic()

        def reconciled_after():
            g = api.get(kc.GREENMODELS, "after", ns) or {}
            st = g.get("status") or {}
            return st.get("observedGeneration") == g.get("metadata", {}).get("generation") and st.get("decision")

        # Reconciled (observed, decided, status written) within 10 s of its creation. Ready needs free GPUs:
        # the kwok nodes' leases lapsed during the outage, so they may be NotReady for a few seconds.
        wait_for(reconciled_after, 10, "a GreenModel created after recovery reconciled", interval=0.2, on_fail=op.tail)
        reconciled = time.monotonic() - t_applied
        wait_for(lambda: is_ready(api.get(kc.GREENMODELS, "after", ns)), 90, "it becomes Ready once nodes are Ready",
                 interval=0.5, on_fail=op.tail)
        ready_after = time.monotonic() - t_applied
        assert op.proc.poll() is None and op.proc.pid == pid, "the operator restarted"
        # The GreenModel from before keeps its one set of children. (Whether it is Ready again depends on the
        # simulated kubelet: kwok does not mark pods Ready again after their node's lease lapsed, so it is
        # recorded, not asserted.)
        before_ready = is_ready(api.get(kc.GREENMODELS, "before", ns))
        deps = api.list(kc.DEPLOYMENTS, ns, label_selector=names.ALL_OWNED_SELECTOR)
        owners = sorted(d["metadata"]["ownerReferences"][0]["name"] for d in deps)
        assert owners == ["after", "before"], owners
        record("api_server_outage", outage_seconds=OUTAGE_SECONDS, operator_pid_unchanged=True,
               healthz_during_outage=health, log_lines_during_outage=outage_lines,
               log_lines_per_second=round(outage_lines / OUTAGE_SECONDS, 2),
               api_server_start_seconds=round(t_back - t_down - OUTAGE_SECONDS, 2),
               created_after_recovery_reconciled_seconds=round(reconciled, 2),
               created_after_recovery_ready_seconds=round(ready_after, 2),
               earlier_greenmodel_ready_again=before_ready)
        assert set(health) == {200}, f"liveness failed during the outage: {health}"
        assert outage_lines <= 3 * OUTAGE_SECONDS, f"{outage_lines} log lines in {OUTAGE_SECONDS}s of outage"
    finally:
        op.stop()
