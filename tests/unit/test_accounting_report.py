"""`greenmodel report` row building and output (pure part, no cluster)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest

from greenmodel.api.v1alpha1 import Emissions
from greenmodel.cli import report


def gm(ns, name, em, **status):
    st = dict(status)
    if em is not None:
        st["emissions"] = em
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"model": {"family": "f"}}, "status": st}


# The wire form of api.v1alpha1.Emissions, as the operator writes it
EM = Emissions(energy_joules=100 * 3.6e6, energy_source="Mixed", scope2_grams=6000.0, scope3_grams=1000.0,
               output_tokens=2_000_000_000, sci_grams_per_thousand_tokens=0.0035,
               since=datetime(2026, 11, 1, tzinfo=timezone.utc),
               updated=datetime(2026, 11, 28, 12, tzinfo=timezone.utc)).to_k8s()
STATUS = {"region": "europe-west9", "gpuProduct": "NVIDIA-L4",
          "intensity": {"gramsPerKilowattHour": 50, "source": "electricitymaps", "zone": "FR"}}
CATALOGS = {"default": {"spec": {"gpus": [{"product": "NVIDIA-L4", "embodiedKilograms": 275, "lifetimeYears": 4}]}}}


def test_rows_carry_figures_and_inputs_and_skip_objects_without_accounting():
    rows = report.rows([gm("b", "y", EM, **STATUS), gm("a", "x", EM, **STATUS), gm("a", "new", None)], None, CATALOGS)
    assert [(r["namespace"], r["name"]) for r in rows] == [("a", "x"), ("b", "y")]
    r = rows[0]
    assert r["energyKilowattHours"] == 100.0
    assert r["totalGrams"] == 7000.0
    # per million output tokens: Scope 2 alone, and Scope 2 + embodied (as status.predicted names them)
    assert r["scope2GramsPerMillionTokens"] == 3.0 and r["gramsPerMillionTokens"] == 3.5
    assert r["intensitySources"] == "electricitymaps/FR"
    assert r["regions"] == "europe-west9"
    assert r["embodiedKgCO2ePerGPU"] == 275 and r["lifetimeHours"] == 4 * 8760.0
    assert r["energySource"] == "Mixed"
    assert r["hours"] == 27 * 24 + 12
    assert r["pue"] is None  # not recorded in status: left empty, never guessed


def test_since_filters_stale_and_sums_daily_buckets():
    em = dict(EM, daily=[
        {"date": "2026-11-26", "energyKilowattHours": 5, "scope2Grams": 300, "scope3Grams": 50, "outputTokens": 1e8},
        {"date": "2026-11-27", "energyKilowattHours": 4, "scope2Grams": 200, "scope3Grams": 50, "outputTokens": 1e8},
    ])
    since = datetime(2026, 11, 27, tzinfo=timezone.utc)
    old = dict(EM, updated="2026-10-01T00:00:00Z")
    rows = report.rows([gm("a", "x", em), gm("a", "old", old)], since)
    assert len(rows) == 1
    r = rows[0]
    assert r["scope2Grams"] == 200 and r["embodiedGrams"] == 50 and r["totalGrams"] == 250
    assert r["scope2GramsPerMillionTokens"] == 2.0 and r["gramsPerMillionTokens"] == 2.5
    assert r["sciGramsPerThousandTokens"] == 0.0025
    assert r["coverage"] == "UTC days from 2026-11-27"


def test_csv_and_json_output():
    rows = report.rows([gm("a", "x", EM, **STATUS)])
    buf = io.StringIO()
    report.write(rows, "csv", buf)
    parsed = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert parsed[0]["scope2Grams"] == "6000.0" and list(parsed[0])[:2] == ["namespace", "name"]
    assert parsed[0]["pue"] == ""
    buf = io.StringIO()
    report.write(rows, "json", buf)
    assert json.loads(buf.getvalue())["greenModels"][0]["name"] == "x"


def test_cli_parses_since():
    import argparse

    p = argparse.ArgumentParser()
    report.register(p.add_subparsers())
    a = p.parse_args(["report", "--since", "2026-11-27", "-o", "json", "-n", "ns"])
    assert a.since == datetime(2026, 11, 27, tzinfo=timezone.utc) and a.output == "json" and a.namespace == "ns"


def _operator_emissions():
    """Status as the operator writes it: 40 days of accounting, 35 buckets kept, measured then estimated."""
    from datetime import timedelta

    from greenmodel.planning import accounting as acc

    em = None
    t0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
    for i in range(40 * 4):  # 6-hour intervals
        start = t0 + timedelta(hours=6 * i)
        kw = dict(start=start, end=start + timedelta(hours=6), region="europe-west9", gpus_reserved=2,
                  embodied_kg_per_gpu=275, lifetime_years=4, pue=1.1, intensity_g_per_kwh=50 + i % 7,
                  intensity_source="electricitymaps", output_tokens=1e7, gpu_product="NVIDIA-L4",
                  output_tokens_source="Measured")
        if i % 2:
            iv = acc.pass_interval(**kw, measured_energy_joules=6 * 3.6e6 * 0.1)
        else:
            iv = acc.pass_interval(**kw, estimated_power_watts=120)
        em = acc.advance_status(em, iv)
    return em.to_k8s()


def test_report_of_operator_status_splits_energy_and_cites_inputs():
    em = _operator_emissions()
    [r] = report.rows([gm("a", "x", em, **STATUS)])
    assert r["energySource"] == "Mixed"
    assert r["measuredEnergyKilowattHours"] == pytest.approx(80 * 0.6)
    assert r["estimatedEnergyKilowattHours"] == pytest.approx(80 * 0.72)
    assert r["intensitySources"] == "electricitymaps" and r["pue"] == 1.1 and r["gpus"] == 2
    assert r["embodiedKgCO2ePerGPU"] == 275 and r["lifetimeYears"] == 4 and r["outputTokensSource"] == "Measured"
    assert r["sciGramsPerThousandTokens"] == (r["scope2Grams"] + r["embodiedGrams"]) / (r["outputTokens"] / 1e3)


def test_since_before_the_oldest_bucket_says_so(capsys):
    em = _operator_emissions()
    assert len(em["daily"]) == 35 and em["daily"][0]["date"] == "2026-10-06"
    since = datetime(2026, 10, 2, tzinfo=timezone.utc)
    [r] = report.rows([gm("a", "x", em, **STATUS)], since)
    assert "earlier than the oldest daily bucket kept (2026-10-06" in r["coverage"]
    assert r["since"].startswith("2026-10-06")
    assert r["outputTokens"] == 35 * 4 * 1e7  # the kept days only
    # a DATE inside the kept range: exact day totals
    [r] = report.rows([gm("a", "x", em, **STATUS)], datetime(2026, 11, 9, tzinfo=timezone.utc))
    assert r["outputTokens"] == 1 * 4 * 1e7 and r["coverage"] == "UTC days from 2026-11-09"
    assert r["measuredEnergyKilowattHours"] + r["estimatedEnergyKilowattHours"] == pytest.approx(r["energyKilowattHours"])
    # the CLI warns on stderr too
    import argparse
    from unittest import mock

    with mock.patch.object(report, "_list_objects", return_value=([gm("a", "x", em, **STATUS)], {})):
        assert report.run(argparse.Namespace(namespace=None, kubeconfig=None, since=since, output="json")) == 0
    out = capsys.readouterr()
    assert "earlier than the oldest daily bucket" in out.err
    assert json.loads(out.out)["greenModels"][0]["coverage"].startswith("--since 2026-10-02")
