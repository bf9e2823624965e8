"""The planner learns a variant's real capacity at the SLO from serving metrics (observed p95 ITL vs
the catalog model's at the observed load), and sizes with it."""

from __future__ import annotations

import math
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from greenmodel.planning import CurrentPlacement, ServingMetrics, plan
from greenmodel.planning.planner import LEARN_BOUNDS, LEARN_MIN_UTILIZATION, learn_latency_factor, pair_model

from test_plan import H100, NOW, catalog, obs, region, spec, variant

CAT = catalog(variant("v"))
SPEC = spec(load={"outputTokensPerSecond": 4000.0}, latency={"interTokenP95Milliseconds": 40})


def _current(replicas: int) -> CurrentPlacement:
    return CurrentPlacement("v", "r", H100, replicas, NOW - timedelta(hours=1))


def _model_itl(replicas: int, tps: float) -> float:
    prof = CAT.variants[0].profiles[0]
    return pair_model(SPEC, prof, CAT.gpus[0].idle_watts).evaluate(SPEC, replicas, tps).itl_p95_ms


def _observed(replicas: int, tps: float, itl_ms: float, learned=None, age_s: float = 0.0):
    m = ServingMetrics(observed_at=NOW - timedelta(seconds=age_s), output_tokens_per_second=tps,
                       inter_token_p95_milliseconds=itl_ms)
    o = obs({"r": region(100.0)}, current=_current(replicas), metrics=m)
    if learned:
        o = type(o)(regions=o.regions, current=o.current, metrics=o.metrics, learned=learned)
    return o


def test_slower_than_the_catalog_raises_replicas_and_says_why():
    base = plan(SPEC, CAT, obs({"r": region(100.0)}, current=_current(2)), NOW)
    n = base.chosen.replicas
    itl = 2.0 * _model_itl(n, 4000.0)
    learned = {}
    for _ in range(6):  # the factor moves half way (geometrically) towards the observation each pass
        p = plan(SPEC, CAT, _observed(n, 4000.0, itl, learned), NOW)
        learned = p.learned
    assert 1.9 < learned[("v", H100)] <= 2.0
    assert p.chosen.replicas > n
    assert "learned from serving metrics" in p.message and "latency factor" in p.message
    assert p.chosen.itl_p95_ms <= 40


def test_observation_equal_to_the_model_changes_nothing():
    base = plan(SPEC, CAT, obs({"r": region(100.0)}, current=_current(2)), NOW)
    n = base.chosen.replicas
    p = plan(SPEC, CAT, _observed(n, 4000.0, _model_itl(n, 4000.0)), NOW)
    assert math.isclose(p.learned[("v", H100)], 1.0, rel_tol=1e-9)
    assert p.chosen.replicas == n and math.isclose(p.chosen.power_watts, base.chosen.power_watts, rel_tol=1e-9)


def test_faster_than_the_catalog_never_needs_more_replicas():
    base = plan(SPEC, CAT, obs({"r": region(100.0)}, current=_current(2)), NOW)
    n = base.chosen.replicas
    p = plan(SPEC, CAT, _observed(n, 4000.0, 0.5 * _model_itl(n, 4000.0)), NOW)
    assert p.learned[("v", H100)] < 1.0
    assert p.chosen.replicas <= n


def test_nothing_is_learned_when_lightly_loaded_stale_or_without_latency():
    o_light = _observed(50, 10.0, 500.0)  # 10 tok/s on 50 replicas: far below the learning threshold
    learned, note = learn_latency_factor(SPEC, CAT, o_light, NOW)
    assert learned == {} and f"< {LEARN_MIN_UTILIZATION:.0%}" in note
    stale = _observed(2, 4000.0, 500.0, age_s=SPEC.missing_data.max_hold_seconds + 1)
    assert learn_latency_factor(SPEC, CAT, stale, NOW) == ({}, "")
    no_itl = obs({"r": region(100.0)}, current=_current(2),
                 metrics=ServingMetrics(observed_at=NOW, output_tokens_per_second=4000.0))
    assert learn_latency_factor(SPEC, CAT, no_itl, NOW) == ({}, "")
    # a learned factor is kept (not forgotten) when nothing new is learned
    kept = _observed(50, 10.0, 500.0, learned={("v", H100): 1.5})
    assert learn_latency_factor(SPEC, CAT, kept, NOW)[0] == {("v", H100): 1.5}


@settings(max_examples=60, deadline=None)
@given(ratio=st.floats(0.01, 100.0), passes=st.integers(1, 8))
def test_factor_stays_within_bounds_and_moves_towards_the_observation(ratio, passes):
    n = plan(SPEC, CAT, obs({"r": region(100.0)}, current=_current(2)), NOW).chosen.replicas
    itl = ratio * _model_itl(n, 4000.0)
    learned = {}
    prev = 1.0
    for _ in range(passes):
        learned, _ = learn_latency_factor(SPEC, CAT, _observed(n, 4000.0, itl, learned), NOW)
        f = learned[("v", H100)]
        assert LEARN_BOUNDS[0] - 1e-12 <= f <= LEARN_BOUNDS[1] + 1e-12
        target = min(max(ratio, LEARN_BOUNDS[0]), LEARN_BOUNDS[1])
        assert abs(math.log(f / target)) <= abs(math.log(prev / target)) + 1e-12
        prev = f
