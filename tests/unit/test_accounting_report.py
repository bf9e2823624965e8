"""`greenmodel report` row building and output (pure part, no cluster)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

from greenmodel.cli import report


def gm(ns, name, em):
    return {"metadata": {"namespace": ns, "name": name}, "status": {"emissions": em} if em is not None else {}}


EM = {
    "since": "2026-11-01T00:00:00Z",
    "lastUpdated": "2026-11-28T12:00:00Z",
    "hours": 660,
    "energyKilowattHours": 100.0,
    "facilityEnergyKilowattHours": 120.0,
    "energySource": "Mixed",
    "scope2Grams": 6000.0,
    "embodiedGrams": 1000.0,
    "outputTokens": 2_000_000_000,
    "gramsPerMillionTokens": 3.0,
    "sciGramsPerThousandTokens": 0.0035,
    "inputs": {"intensitySources": ["electricitymaps", "static"], "regions": ["europe-west9"], "pue": [1.2],
               "embodiedKgCO2e": [4676.79], "gpusPerServer": [8], "lifetimeHours": [35040]},
}


def test_rows_carry_figures_and_inputs_and_skip_objects_without_accounting():
    rows = report.rows([gm("b", "y", EM), gm("a", "x", EM), gm("a", "new", None)])
    assert [(r["namespace"], r["name"]) for r in rows] == [("a", "x"), ("b", "y")]
    r = rows[0]
    assert r["totalGrams"] == 7000.0
    assert r["intensitySources"] == "electricitymaps;static"
    assert r["energySource"] == "Mixed"
    assert r["lifetimeHours"] == "35040"


def test_since_filters_stale_and_sums_daily_buckets():
    em = dict(EM, daily=[
        {"date": "2026-11-26", "energyKilowattHours": 5, "scope2Grams": 300, "embodiedGrams": 50, "outputTokens": 1e8},
        {"date": "2026-11-27", "energyKilowattHours": 4, "scope2Grams": 200, "embodiedGrams": 50, "outputTokens": 1e8},
    ])
    since = datetime(2026, 11, 27, tzinfo=timezone.utc)
    rows = report.rows([gm("a", "x", em), gm("a", "old", dict(EM, lastUpdated="2026-10-01T00:00:00Z"))], since)
    assert len(rows) == 1
    r = rows[0]
    assert r["scope2Grams"] == 200 and r["embodiedGrams"] == 50 and r["totalGrams"] == 250
    assert r["gramsPerMillionTokens"] == 2.0
    assert r["sciGramsPerThousandTokens"] == 0.0025


def test_csv_and_json_output():
    rows = report.rows([gm("a", "x", EM)])
    buf = io.StringIO()
    report.write(rows, "csv", buf)
    parsed = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert parsed[0]["scope2Grams"] == "6000.0" and list(parsed[0])[:2] == ["namespace", "name"]
    buf = io.StringIO()
    report.write(rows, "json", buf)
    assert json.loads(buf.getvalue())["greenModels"][0]["name"] == "x"
