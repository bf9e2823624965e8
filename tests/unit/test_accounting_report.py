"""`greenmodel report` row building and output (pure part, no cluster)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

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
    assert r["gramsPerMillionTokens"] == 3.0
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
    assert r["gramsPerMillionTokens"] == 2.0
    assert r["sciGramsPerThousandTokens"] == 0.0025


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
