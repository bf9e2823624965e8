"""`greenmodel bench` judges its policies by the ground truth: the JSON carries a groundTruth block saying what was
measured, derived and sampled, and each policy's ground-truth figures (the CLI as a user runs it)."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "operator" / "greenmodel"


def _gunzip(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.decompress(src.read_bytes()))
    return dst


def _em_export(zone: str, dst: Path, hours: int = 48) -> Path:
    """The first hours of the packaged (real) 2022 series of ``zone``, written as an Electricity Maps export."""
    with gzip.open(PKG / "data" / "grid" / f"electricitymaps-2022-{zone}.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))[:hours]
    with open(dst, "w", newline="") as g:
        w = csv.writer(g)
        w.writerow(["Datetime (UTC)", "Country", "Zone Name", "Zone Id", "Carbon Intensity gCO₂eq/kWh (direct)",
                    "Carbon Intensity gCO₂eq/kWh (LCA)", "Low Carbon Percentage", "Renewable Percentage",
                    "Data Source", "Data Estimated", "Data Estimation Method"])
        for r in rows:
            w.writerow([r["datetime_utc"].replace("T", " ").removesuffix("Z"), zone, zone, zone, r["direct_g_per_kwh"],
                        r["lifecycle_g_per_kwh"], "", "", "electricitymaps.com", r["estimated"], ""])
    return dst


def test_bench_json_has_ground_truth_figures_per_policy(tmp_path):
    fr = _em_export("FR", tmp_path / "FR.csv")
    pl = _em_export("PL", tmp_path / "PL.csv")
    trace = _gunzip(PKG / "testing" / "data" / "azure-llm-2023-conversation-10min.csv.gz", tmp_path / "conv.csv")
    shape = tmp_path / "shape.csv"
    shape.write_text(",cpu_load\n" + "".join(f"{h},{0.3 + 0.4 * (h % 24 >= 8)}\n" for h in range(48)))
    p = subprocess.run([sys.executable, "-m", "greenmodel", "bench", "--intensity", str(pl), str(fr), "--trace",
                        str(trace), "--load-shape", str(shape), "--days", "1", "--truth-hours", "4",
                        "--truth-sample-seconds", "20", "-o", "json"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    gt = out["groundTruth"]
    assert gt["sampled"]["hoursJudged"] == 4 and gt["sampled"]["hoursOfPeriod"] == 24
    assert "ML.ENERGY" in gt["measured"] and "Vidur" in gt["measured"]
    assert gt["derived"]["measuredDecodeCurves"] or gt["derived"]["decodeCurves"]
    for name in ("static", "best-fixed", "best-fixed-autoscaled", "carbon-cap", "region-follow", "model-choice",
                 "greenmodel", "relaxed-oracle", "oracle"):
        g = out["policies"][name]["groundTruth"]
        assert g["gramsPerMillionTokens"] > 0
        assert 0.0 <= g["sloAttainment"] <= 1.0 and 0.0 <= g["requestsWithinSlo"] <= 1.0
        assert g["switches"] == out["policies"][name]["switches"]
    # chosen by the ground truth to meet the SLO in the hours it judges
    assert out["policies"]["relaxed-oracle"]["groundTruth"]["sloAttainment"] == 1.0
    assert out["policies"]["best-fixed"]["groundTruth"]["sloAttainment"] == 1.0
    # the limit: nothing chosen from the same candidates emits less
    lim = out["policies"]["relaxed-oracle"]["groundTruth"]["gramsPerMillionTokens"]
    for name in ("best-fixed", "best-fixed-autoscaled", "region-follow", "model-choice"):
        assert out["policies"][name]["groundTruth"]["gramsPerMillionTokens"] >= lim * 0.98, name
    # PL is far dirtier than FR: the static baseline (first region, PL) emits more per token than greenmodel (FR)
    assert out["policies"]["static"]["groundTruth"]["gramsPerMillionTokens"] > \
        out["policies"]["greenmodel"]["groundTruth"]["gramsPerMillionTokens"]
    hourly = out["policies"]["greenmodel"]["groundTruth"]["hourly"]
    assert len(hourly["hours"]) == 4 == len(hourly["p95ItlMilliseconds"])
    png = tmp_path / "bench.png"
    table = subprocess.run([sys.executable, "-m", "greenmodel", "bench", "--intensity", str(pl), str(fr), "--trace",
                            str(trace), "--load-shape", str(shape), "--days", "1", "--truth-hours", "2",
                            "--truth-sample-seconds", "10", "--plot", str(png)],
                           capture_output=True, text=True, timeout=600)
    assert table.returncode == 0, table.stderr
    assert "Ground truth" in table.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_without_the_bench_extra_says_what_to_install(monkeypatch, capsys):
    import argparse
    import importlib.util

    from greenmodel.cli import bench

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "matplotlib" else real(m, *a))
    assert bench.run(argparse.Namespace(plot="out.png")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["greenmodel bench: needs matplotlib: pip install 'greenmodel-operator[bench]'"]
