"""Observability helpers used by the handlers: Events, JSON logs, /metrics and /healthz."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

import pytest

from greenmodel import observability as obs

INVOLVED = {"apiVersion": "greenmodel.dev/v1alpha1", "kind": "GreenModel", "name": "chat",
            "namespace": "ns", "uid": "u-1"}


def test_event_is_single_line_camelcase_and_references_the_object():
    ev = obs.build_event(INVOLVED, "RegionSwitched", "moved\nfrom europe-west3 (412.0 g/Mtok)\n to FR", "Normal")
    assert ev["message"] == "moved from europe-west3 (412.0 g/Mtok) to FR"
    assert ev["involvedObject"]["uid"] == "u-1" and ev["metadata"]["namespace"] == "ns"
    assert ev["reason"] == "RegionSwitched"
    with pytest.raises(ValueError):
        obs.build_event(INVOLVED, "region switched", "x")
    with pytest.raises(ValueError):
        obs.build_event(INVOLVED, "Ok", "x", "Error")


def test_identical_events_are_suppressed_within_the_window():
    posted, now = [], [0.0]
    rec = obs.EventRecorder(posted.append, suppress_seconds=60, clock=lambda: now[0])
    assert rec.record(INVOLVED, "PlanInfeasible", "no GPU", "Warning")
    assert not rec.record(INVOLVED, "PlanInfeasible", "no GPU", "Warning")
    assert rec.record(INVOLVED, "PlanInfeasible", "no GPU at all", "Warning")
    now[0] = 61
    assert rec.record(INVOLVED, "PlanInfeasible", "no GPU", "Warning")
    assert len(posted) == 3


def test_event_post_failure_does_not_raise():
    def boom(_):
        raise RuntimeError("api down")

    assert obs.EventRecorder(boom).record(INVOLVED, "Rescaled", "2 -> 3 replicas")


def test_json_log_lines_carry_the_object_reference():
    fmt = obs.JsonFormatter()
    rec = logging.LogRecord("greenmodel", logging.INFO, __file__, 1, "applied %d", (3,), None)
    rec.k8s_ref = {"kind": "GreenModel", "namespace": "ns", "name": "chat"}
    doc = json.loads(fmt.format(rec))
    assert doc["message"] == "applied 3" and doc["object"] == {"kind": "GreenModel", "namespace": "ns", "name": "chat"}
    assert doc["level"] == "info"


def test_metrics_and_health_endpoints():
    health = obs.Health(max_age_seconds=1000)
    server = obs.serve_http(0, health)
    try:
        port = server.server_port
        obs.RECONCILE_TOTAL.labels("success").inc()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "greenmodel_reconcile_total" in body
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
        health.max_age = -1
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert err.value.code == 503
    finally:
        server.shutdown()


def test_unknown_is_not_exported_as_zero():
    obs.set_if(obs.PREDICTED_GRAMS, 12.5, "ns", "x")
    assert obs.PREDICTED_GRAMS.labels("ns", "x")._value.get() == 12.5
    obs.set_if(obs.PREDICTED_GRAMS, None, "ns", "x")
    assert ("ns", "x") not in {tuple(s.labels.values()) for m in obs.PREDICTED_GRAMS.collect() for s in m.samples}


def test_accounting_series_are_scraped_with_base_units_and_removed_on_delete():
    from datetime import datetime, timedelta, timezone

    from prometheus_client.parser import text_string_to_metric_families

    from greenmodel.planning import accounting as acc

    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    kw = dict(region="r", gpus_reserved=2, embodied_kg_per_gpu=275, lifetime_years=4, pue=1.2,
              intensity_g_per_kwh=100, intensity_source="s", output_tokens=9000)
    # 0.5 kWh measured over 30 min, then 10 min estimated at 600 W (0.1 kWh)
    m = acc.pass_interval(start=t0, end=t0 + timedelta(minutes=30), measured_energy_joules=1.8e6, **kw)
    e = acc.pass_interval(start=t0 + timedelta(minutes=30), end=t0 + timedelta(minutes=40),
                          estimated_power_watts=600, **kw)
    obs.forget_object("obs-ns", "acct")
    obs.record_accounted("obs-ns", "acct", m)
    obs.record_accounted("obs-ns", "acct", e)
    obs.set_if(obs.MEASURED_GPU_POWER, 3600.0, "obs-ns", "acct")
    obs.set_if(obs.PREDICTED_GPU_POWER, 3400.0, "obs-ns", "acct")

    def scrape() -> dict:
        server = obs.serve_http(0, obs.Health(max_age_seconds=1000))
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
        finally:
            server.shutdown()
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.labels.get("name") == "acct":
                    extra = s.labels.get("source") or s.labels.get("scope") or ""
                    out[(s.name, extra)] = s.value
        return out

    got = scrape()
    assert got[("greenmodel_energy_joules_total", "measured")] == pytest.approx(1.8e6)
    assert got[("greenmodel_energy_joules_total", "estimated")] == pytest.approx(360_000)
    assert got[("greenmodel_emissions_grams_total", "2")] == pytest.approx(0.6 * 1.2 * 100)
    assert got[("greenmodel_emissions_grams_total", "3")] == pytest.approx(2 * 275e3 * (40 / 60) / 35040)
    assert got[("greenmodel_output_tokens_total", "")] == 18000
    assert got[("greenmodel_measured_gpu_power_watts", "")] == 3600
    assert got[("greenmodel_predicted_gpu_power_watts", "")] == 3400
    obs.forget_object("obs-ns", "acct")
    assert scrape() == {}
