"""Measured GPU energy end to end: the operator (`greenmodel run`) reads vLLM- and DCGM-shaped series
of its GreenModel's pods from a REAL Prometheus (Debian binary) scraping the workload simulator, and
status shows what was measured beside what was predicted; emissions are accounted from measured
energy. Then Prometheus stops (replicas held, MetricsAvailable=False saying why) and starts again on
the same port and storage (MetricsAvailable=True again within two operator intervals).

Timings (apply -> Measured in status, outage detection, recovery) are printed and appended to
$GREENMODEL_E2E_RESULTS like the other e2e figures.
"""

from __future__ import annotations

import time

import pytest
import yaml

from greenmodel.kube import names
from greenmodel.kube import client as kc
from greenmodel.testing.ci import require
from greenmodel.testing.prometheus import PrometheusProcess, find_prometheus
from greenmodel.testing.workload import ServedModel, WorkloadSimulator

from test_reconciler import api, children, example_greenmodel, gm_apply, gm_get, record, wait_ready  # noqa: F401
from test_reconciler_support import OperatorProcess, condition, wait_for, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

INTERVAL = 2.0  # operator timer interval (s)
RATE_WINDOW = "10s"  # Prometheus rate window the operator queries (10 samples at a 1 s scrape)


def _metrics_cond(gm: dict | None) -> dict:
    return condition(gm or {}, "MetricsAvailable") or {}


def test_measured_energy_beside_prediction_and_prometheus_outage(cluster, api, namespace, tmp_path):  # noqa: F811
    require(find_prometheus(), "prometheus binary not installed (e2e/system-deps.sh)")
    t_start = time.monotonic()
    sim = WorkloadSimulator([]).start()
    (tmp_path / "prom").mkdir()
    # A fixed port and storage directory: stop() and start() bring back the same server.
    prom = PrometheusProcess([f"127.0.0.1:{sim.port}"], scrape_interval="1s", workdir=tmp_path / "prom").start()
    op = None
    try:
        cfg_path = write_config(tmp_path / "operator-config.yaml", interval=INTERVAL)
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["prometheus"] = {"url": prom.url, "rateWindow": RATE_WINDOW, "refreshIntervalSeconds": 1,
                             "queryTimeoutSeconds": 2}
        cfg.setdefault("network", {})["allowInsecureHttpHosts"] = ["127.0.0.1"]
        cfg_path.write_text(yaml.safe_dump(cfg))
        op = OperatorProcess(cluster.kubeconfig, cfg_path, [namespace], tmp_path / "operator.log").start()

        # Small footprint: 1 request/s of 350 output tokens fits one replica.
        gm = example_greenmodel("chat", load={"requestsPerSecond": 1, "averageOutputTokens": 350,
                                              "averageInputTokens": 1000}, maxReplicas=2)
        t_apply = time.monotonic()
        gm_apply(api, namespace, gm)
        ready = wait_ready(api, namespace, "chat", op=op)["status"]
        pods = [p["metadata"]["name"] for p in children(api, namespace, "chat")["pods"]]
        assert pods, "Ready GreenModel without pods"
        # The simulator exposes the series of exactly these pods (names and instance label as in a cluster).
        sim.add_model(ServedModel(namespace, names.label_value("chat"), "meta-llama/Llama-3.1-8B-Instruct",
                                  pods=len(pods), pod_names=pods, gpu_product=ready["gpuProduct"], speed=1.0))
        t_series = time.monotonic()

        def measured():
            st = (gm_get(api, namespace, "chat") or {}).get("status") or {}
            m, em = st.get("measured") or {}, st.get("emissions") or {}
            ok = (m.get("gpuPowerWatts") is not None and m.get("energySource") == "DCGM"
                  and em.get("energySource") in ("Measured", "Mixed") and em.get("measuredEnergyJoules", 0) > 0
                  and _metrics_cond({"status": st}).get("status") == "True")
            return st if ok else None

        st = wait_for(measured, 60, "status.measured and emissions.energySource Measured/Mixed",
                      on_fail=lambda: yaml.safe_dump((gm_get(api, namespace, "chat") or {}).get("status"))[:4000]
                      + "\n" + op.tail())
        t_measured = time.monotonic() - t_series
        m, pred, em = st["measured"], st["predicted"], st["emissions"]
        # Measured sits beside predicted, in the same units; GPU power is within the simulated
        # GPUs' idle..peak range (L4 16-72 W, A100 60-400 W, H100 70-700 W per GPU).
        gpus = pred["gpus"]
        lo, hi = {"NVIDIA-L4": (16, 72), "NVIDIA-A100-SXM4-80GB": (60, 400)}.get(st["gpuProduct"], (70, 700))
        assert gpus * lo * 0.9 <= m["gpuPowerWatts"] <= gpus * hi * 1.1, (m, pred)
        assert pred["powerWatts"] > 0 and m["pods"] == len(pods) and m["windowSeconds"] == 10
        assert m.get("outputTokensPerSecond") is None or m["outputTokensPerSecond"] >= 0
        assert em["measuredEnergyJoules"] + em["estimatedEnergyJoules"] == pytest.approx(em["energyJoules"], rel=1e-6)
        assert em["inputs"]["pue"] == 1.1 and em["inputs"]["embodiedKilogramsPerGpu"] > 0
        assert em["daily"] and em["daily"][-1]["energyJoules"] > 0
        assert _metrics_cond({"status": st})["reason"] == "Available"
        assert "DCGM" in _metrics_cond({"status": st})["message"]
        # The operator's own counters carry the same accounting.
        assert op.metric_sum("greenmodel_energy_joules_total") > 0
        assert op.metric_sum("greenmodel_measured_gpu_power_watts") > 0

        # -- Prometheus goes away: replicas are held, the condition says what happened.
        replicas_before = gm_get(api, namespace, "chat")["status"]["replicas"]
        prom.stop()
        t_stop = time.monotonic()
        down = wait_for(lambda: (lambda g: g if _metrics_cond(g).get("status") == "False" else None)(
            gm_get(api, namespace, "chat")), 30, "MetricsAvailable=False", on_fail=op.tail)
        t_detect = time.monotonic() - t_stop
        c = _metrics_cond(down)
        assert c["reason"] == "PrometheusUnreachable", c
        assert prom.url.split("//")[1] in c["message"] and "holding the metrics" in c["message"], c
        # Several passes without metrics: replicas never drop below what was planned with them.
        seen = []
        deadline = time.monotonic() + 3 * INTERVAL
        while time.monotonic() < deadline:
            g = gm_get(api, namespace, "chat")
            deps = children(api, namespace, "chat")["deployments"]
            seen.append((g["status"]["replicas"], sum(d["spec"]["replicas"] for d in deps)))
            time.sleep(0.5)
        assert all(r >= replicas_before and d >= replicas_before for r, d in seen), (replicas_before, seen)

        # -- Prometheus returns on the same port and storage: available again within two intervals.
        prom.start()
        t_back = time.monotonic()
        wait_for(lambda: _metrics_cond(gm_get(api, namespace, "chat")).get("status") == "True", 30,
                 "MetricsAvailable=True after Prometheus returned", interval=0.1, on_fail=op.tail)
        t_recover = time.monotonic() - t_back
        assert t_recover <= 2 * INTERVAL + 1.0, f"recovered after {t_recover:.1f}s (> two {INTERVAL}s intervals)"
        deps = children(api, namespace, "chat")
        assert len({d["metadata"]["name"] for d in deps["deployments"]}) == 1 and len(deps["services"]) == 1
        record("measured_energy", apply_to_ready_seconds=round(t_series - t_apply, 1),
               series_to_measured_status_seconds=round(t_measured, 1),
               outage_detected_seconds=round(t_detect, 1), recovery_seconds=round(t_recover, 1),
               measured_gpu_power_watts=m["gpuPowerWatts"], predicted_power_watts=pred["powerWatts"],
               measured_joules_per_token=m.get("joulesPerToken"), predicted_joules_per_token=pred.get("joulesPerToken"),
               energy_source=em["energySource"], replicas=replicas_before,
               wall_seconds=round(time.monotonic() - t_start, 1))
    finally:
        if op is not None:
            op.stop()
        try:  # free the GPUs now (the namespace fixture deletes the rest)
            api.delete(kc.GREENMODELS, "chat", namespace)
        except Exception:  # noqa: BLE001 - already gone
            pass
        prom.close()
        sim.stop()
