"""Emissions accounting maths (planning/accounting.py): formulas, validation, and a replay with
exactly known ground truth whose totals must match within 1%."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenmodel.planning import accounting as acc

T0 = datetime(2022, 6, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)


def test_scope2_is_energy_times_pue_times_intensity():
    # 2 kWh of GPU energy, PUE 1.2, 250 g/kWh -> 600 g
    assert acc.scope2_grams(2.0, 1.2, 250.0) == pytest.approx(600.0)


def test_embodied_share_formula():
    # p4d.24xlarge (CCF): 4676.79 kgCO2e per server, 8 GPUs; 2 GPUs for 10 h of a 4-year life
    lifetime = 4 * 365 * 24
    got = acc.embodied_grams(4676.79, 10, lifetime, 2, 8)
    assert got == pytest.approx(4676.79 * 1000 * 10 / lifetime * 2 / 8)
    assert got == pytest.approx(333.73, rel=1e-3)


def test_sci_per_thousand_tokens():
    # (E x I) = 600 g, M = 100 g, R = 2,000,000 tokens = 2000 units -> 0.35 g per 1k tokens
    assert acc.sci_per_thousand_tokens(600, 100, 2_000_000) == pytest.approx(0.35)
    assert acc.sci_per_thousand_tokens(600, 100, 0) is None  # unknown, not zero or infinity


def test_grams_per_million_tokens_unknown_without_tokens():
    assert acc.grams_per_million_tokens(5.0, 0) is None
    assert acc.grams_per_million_tokens(5.0, 2e6) == pytest.approx(2.5)


@pytest.mark.parametrize(
    "call",
    [
        lambda: acc.scope2_grams(-1, 1.2, 100),
        lambda: acc.scope2_grams(1, 0.9, 100),  # PUE below 1 is impossible
        lambda: acc.scope2_grams(1, 1.2, math.nan),
        lambda: acc.embodied_grams(100, 1, 0, 1, 8),
        lambda: acc.embodied_grams(100, 1, 10, -1, 8),
        lambda: acc.energy_kwh(math.inf, 1),
    ],
)
def test_rejects_impossible_inputs(call):
    with pytest.raises(ValueError):
        call()


def test_energy_label():
    assert acc.energy_label([]) == "None"
    assert acc.energy_label(["Measured", "Measured"]) == "Measured"
    assert acc.energy_label(["Estimated"]) == "Estimated"
    assert acc.energy_label(["Measured", "Estimated"]) == "Mixed"


def _iv(i, **kw):
    base = dict(
        start=T0 + i * H,
        end=T0 + (i + 1) * H,
        region="FR",
        energy_kwh=1.0,
        energy_source="Estimated",
        pue=1.1,
        intensity_g_per_kwh=50.0,
        intensity_source="static",
        gpus_reserved=2,
        embodied_kgco2e=4676.79,
        gpus_per_server=8,
        lifetime_hours=35040,
        output_tokens=1e6,
    )
    base.update(kw)
    return acc.make_interval(**base)


def test_accumulator_rejects_overlap_and_records_inputs():
    a = acc.EmissionsAccumulator(keep_intervals=2)
    a.add(_iv(0))
    a.add(_iv(1, energy_source="Measured", intensity_source="electricitymaps", pue=1.2))
    a.add(_iv(2))
    with pytest.raises(ValueError, match="overlaps"):
        a.add(_iv(1))
    assert len(a.intervals) == 2
    rep = a.report()
    assert rep["inputs"]["intensity_sources"] == ["electricitymaps", "static"]
    assert rep["inputs"]["pue"] == [1.1, 1.2]
    assert rep["totals"]["energy_label"] == "Mixed"
    assert rep["totals"]["hours"] == pytest.approx(3)
    assert rep["totals"]["gpu_hours"] == pytest.approx(6)


def test_replay_with_known_ground_truth_within_one_percent():
    """A week of 10-minute reconcile intervals with a load and intensity that vary in a pattern
    whose integrals are known in closed form; the accumulator's totals must match within 1%.

    Ground truth, derived by hand:
      power P(t) = 700 W + 300 W * s(t), s(t) = 1 on the first half of each hour, 0 on the second
        -> mean power 850 W -> 168 h x 0.85 kW = 142.8 kWh IT energy
      intensity: 100 g/kWh on even hours, 300 g/kWh on odd hours; energy is the same each hour
        (0.85 kWh), so Scope 2 = 142.8 kWh x PUE 1.25 x mean(100, 300) = 35,700 g
      embodied: 4676.79 kg x 168 h / 35,040 h x 2/8 = 5,605.6 g (to 0.1 g)
      tokens: 1,000 tok/s on the first half of each hour, 500 tok/s on the second
        -> 750 tok/s mean x 168 x 3600 s = 453,600,000 tokens
      SCI = (35,700 + 5,605.6) g / 453,600 thousand tokens = 0.091062 g per 1k tokens
    """
    acc_ = acc.EmissionsAccumulator()
    step = timedelta(minutes=10)
    t = T0
    end = T0 + timedelta(hours=168)
    while t < end:
        minute = (t - T0).total_seconds() / 60 % 60
        hour = int((t - T0).total_seconds() // 3600)
        busy = minute < 30
        power = 700 + (300 if busy else 0)
        tokens = (1000 if busy else 500) * step.total_seconds()
        acc_.add(
            acc.make_interval(
                start=t,
                end=t + step,
                region="DE",
                energy_kwh=acc.energy_kwh(power, step.total_seconds()),
                energy_source="Measured" if hour % 3 else "Estimated",
                pue=1.25,
                intensity_g_per_kwh=100.0 if hour % 2 == 0 else 300.0,
                intensity_source="electricitymaps",
                gpus_reserved=2,
                embodied_kgco2e=4676.79,
                gpus_per_server=8,
                lifetime_hours=35040,
                output_tokens=tokens,
            )
        )
        t += step
    tot = acc_.totals
    assert tot.energy_kwh == pytest.approx(142.8, rel=0.01)
    assert tot.facility_energy_kwh == pytest.approx(142.8 * 1.25, rel=0.01)
    assert tot.scope2_g == pytest.approx(35_700, rel=0.01)
    assert tot.embodied_g == pytest.approx(5_605.6, rel=0.01)
    assert tot.output_tokens == pytest.approx(453_600_000, rel=0.01)
    assert tot.sci_g_per_thousand_tokens == pytest.approx(0.091062, rel=0.01)
    assert tot.total_g_per_million_tokens == pytest.approx(91.062, rel=0.01)
    assert tot.energy_label == "Mixed"
    assert tot.hours == pytest.approx(168)


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(
        st.tuples(st.floats(0, 50), st.floats(1.0, 2.0), st.floats(0, 1000), st.integers(0, 8)),
        min_size=1,
        max_size=30,
    )
)
def test_totals_are_sums_of_intervals(parts):
    """Integrating piecewise equals summing each piece's formula (additivity)."""
    a = acc.EmissionsAccumulator()
    expect_s2 = expect_emb = 0.0
    for i, (e, pue, inten, gpus) in enumerate(parts):
        a.add(_iv(i, energy_kwh=e, pue=pue, intensity_g_per_kwh=inten, gpus_reserved=gpus))
        expect_s2 += e * pue * inten
        expect_emb += 4676.79e3 * (1 / 35040) * gpus / 8
    assert a.totals.scope2_g == pytest.approx(expect_s2, rel=1e-9, abs=1e-9)
    assert a.totals.embodied_g == pytest.approx(expect_emb, rel=1e-9, abs=1e-9)


def test_advance_status_accumulates_labels_and_ignores_repeated_passes():
    s = None
    for i in range(24):
        s = acc.advance_status(s, _iv(i, energy_source="Measured" if i >= 12 else "Estimated"))
    assert s.energy_source.value == "Mixed"
    assert s.energy_joules == pytest.approx(24 * 3.6e6)
    assert s.scope2_grams == pytest.approx(24 * 1.0 * 1.1 * 50.0)
    assert s.scope3_grams == pytest.approx(24 * 4676.79e3 / 35040 * 2 / 8)
    assert s.sci_grams_per_thousand_tokens == pytest.approx((s.scope2_grams + s.scope3_grams) / (24e6 / 1e3))
    assert s.since == T0 and s.updated == T0 + 24 * H
    # kopf repeats the last pass: nothing is counted twice
    assert acc.advance_status(s, _iv(23)) == s
    with pytest.raises(ValueError, match="overlaps"):
        acc.advance_status(s, _half_overlap())
    # the status round-trips through the wire form
    from greenmodel.api.v1alpha1 import Emissions
    assert Emissions.model_validate(s.to_k8s()) == s


def _half_overlap():
    return acc.make_interval(start=T0 + 23.5 * H, end=T0 + 25 * H, region="FR", energy_kwh=1, energy_source="Measured",
                             pue=1.1, intensity_g_per_kwh=50, intensity_source="static", gpus_reserved=2,
                             embodied_kgco2e=4676.79, gpus_per_server=8, lifetime_hours=35040, output_tokens=1e6)


def test_pass_interval_prefers_measured_energy_and_never_invents_zero():
    kw = dict(start=T0, end=T0 + timedelta(minutes=30), region="europe-west9", gpus_reserved=4,
              embodied_kg_per_gpu=275, lifetime_years=4, pue=1.2, intensity_g_per_kwh=60,
              intensity_source="electricitymaps", output_tokens=1e6)
    est = acc.pass_interval(**kw, estimated_power_watts=2000)
    assert est.energy_source == "Estimated" and est.energy_kwh == pytest.approx(1.0)
    meas = acc.pass_interval(**kw, estimated_power_watts=2000, measured_energy_joules=1.8e6)
    assert meas.energy_source == "Measured" and meas.energy_kwh == pytest.approx(0.5)
    assert meas.scope2_g == pytest.approx(0.5 * 1.2 * 60)
    # 4 GPUs x 275 kg x 0.5 h / (4 x 8760 h)
    assert meas.embodied_g == pytest.approx(4 * 275e3 * 0.5 / 35040)
    with pytest.raises(ValueError, match="neither"):
        acc.pass_interval(**kw)
