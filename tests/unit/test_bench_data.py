"""Benchmark input loaders and trace stretching (bench/data.py), on in-memory files."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
import pytest

from greenmodel.bench import data

HEADER = (
    "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
    "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,Data Source,"
    "Data Estimated,Data Estimation Method\n"
)


def _lca(v):
    try:
        return float(v) + 20
    except ValueError:
        return ""


def em(rows, zone="FR"):
    body = "".join(
        f"2022-01-01 {h:02d}:00:00,France,France,{zone},{v},{_lca(v)},90,30,rte,{est},\n"
        for h, v, est in rows
    )
    return io.StringIO(HEADER + body)


def test_intensity_uses_direct_column_and_zone_id():
    s = data.load_intensity(em([(0, "25.5", "false"), (1, "30", "true"), (2, "", "false")]))
    assert s.zone == "FR"
    assert s.start == datetime(2022, 1, 1, tzinfo=timezone.utc)
    # direct, not LCA (which is +20 here); the empty hour is forward-filled and flagged estimated
    assert s.values.tolist() == [25.5, 30.0, 30.0]
    assert s.estimated.tolist() == [False, True, True]
    assert s.source == "electricitymaps-export:rte"


@pytest.mark.parametrize(
    "rows,msg",
    [
        ([(0, "25", "false"), (2, "30", "false")], "gap or duplicate"),
        ([(0, "25", "false"), (0, "30", "false")], "gap or duplicate"),
        ([(0, "", "false")], "first hour"),
        ([(0, "-4", "false")], "outside"),
        ([(0, "abc", "false")], "not a number"),
    ],
)
def test_intensity_errors_name_the_row(rows, msg):
    with pytest.raises(data.DataError, match=msg):
        data.load_intensity(em(rows))


def test_intensity_rejects_missing_column():
    with pytest.raises(data.DataError, match="direct"):
        data.load_intensity(io.StringIO("Datetime (UTC),Zone Id,foo\n2022-01-01 00:00:00,FR,1\n"))


def test_align_common_window_and_duplicate_zones():
    a = data.load_intensity(em([(h, "10", "false") for h in range(0, 5)], zone="FR"))
    b = data.load_intensity(em([(h, "20", "false") for h in range(2, 8)], zone="DE"))
    start, hours = data.align([a, b])
    assert start.hour == 2 and hours == 3
    assert data.window(b, start, hours).tolist() == [20.0, 20.0, 20.0]
    with pytest.raises(data.DataError, match="more than once"):
        data.align([a, a])


TRACE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:00:00.0000000,100,10
2023-11-16 18:00:30.1234567,200,30
2023-11-16 18:01:00.0000000,300,20
2023-11-16 18:59:00.0000000,400,40
"""


def test_trace_rates_and_peak():
    tr = data.load_trace(io.StringIO(TRACE))
    assert tr.requests == 4
    # span 3540 s + one mean gap (1180 s)
    assert tr.duration_s == pytest.approx(4720)
    assert tr.output_tokens == 100
    assert tr.output_tokens_per_s == pytest.approx(100 / 4720)
    assert tr.offsets_s[1] == pytest.approx(30.123456)
    assert tr.peak_factor() > 1


def test_trace_rejects_bad_rows():
    with pytest.raises(data.DataError, match=":3"):
        data.load_trace(io.StringIO("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,1,1\nx,1,1\n"))
    with pytest.raises(data.DataError, match="expected columns"):
        data.load_trace(io.StringIO("a,b\n1,2\n"))


def test_stretch_scales_by_load_over_mean_and_wraps():
    tr = data.load_trace(io.StringIO(TRACE))
    shape = data.load_load_shape(io.StringIO(",cpu_load\n0,0.5\n1,1.0\n2,1.5\n"))
    start = datetime(2022, 1, 1, 1, tzinfo=timezone.utc)  # shape index 1
    load = data.stretch(tr, shape, start, 4)
    assert load.factor.tolist() == pytest.approx([1.0, 1.5, 0.5, 1.0])  # wraps after index 2
    assert load.output_tokens_per_s == pytest.approx(tr.output_tokens_per_s * np.array([1.0, 1.5, 0.5, 1.0]))
    assert load.mean_output_tokens == pytest.approx(25)
    assert "stretched over 4 h" in load.description
