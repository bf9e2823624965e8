"""Property-based tests (hypothesis) of the planner's promises."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from greenmodel.planning import CurrentPlacement, plan
from greenmodel.planning.capacity import TARGET_UTILIZATION
from test_plan import NOW, catalog, default_catalog, obs, profile, region, spec, variant  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEFAULT = default_catalog()
REGIONS = ["europe-west2", "europe-west3", "europe-west9", "europe-central2"]

intensities = st.floats(min_value=0.0, max_value=1200.0, allow_nan=False)
loads = st.floats(min_value=0.0, max_value=60000.0, allow_nan=False)
policies = st.sampled_from(["CarbonFirst", "Balanced", "LatencyFirst"])


def _spec(family="general-chat", **kw):
    base = dict(model={"family": family}, maxReplicas=50,
                latency={"ttftP95Milliseconds": 2000, "interTokenP95Milliseconds": 100})
    base.update(kw)
    return spec(**base)


@SETTINGS
@given(st.lists(intensities, min_size=4, max_size=4), st.integers(0, 3), st.floats(0.0, 1.0), loads,
       st.sampled_from(["CarbonFirst", "Balanced"]))
def test_lower_intensity_never_makes_a_region_less_attractive(gs, idx, factor, load, policy):
    s = _spec(load={"outputTokensPerSecond": load}, policy=policy)
    before = plan(s, DEFAULT, obs({r: region(g) for r, g in zip(REGIONS, gs)}), NOW)
    lowered = list(gs)
    lowered[idx] = gs[idx] * factor
    after = plan(s, DEFAULT, obs({r: region(g) for r, g in zip(REGIONS, lowered)}), NOW)
    assert before.feasible == after.feasible
    if not before.feasible:
        return
    target = REGIONS[idx]
    if before.chosen.region == target:
        assert after.chosen.region == target
    # The best candidate in the region never scores worse.
    def best_in(p):
        cands = [c for c in (p.chosen, *p.alternatives) if c.region == target]
        return min((c.score for c in cands), default=None)
    b, a = best_in(before), best_in(after)
    if b is not None and a is not None:
        assert a <= b + 1e-9


@SETTINGS
@given(st.floats(0.0, 100.0), loads, policies, st.lists(intensities, min_size=4, max_size=4))
def test_no_plan_ever_breaks_the_quality_floor(floor, load, policy, gs):
    s = _spec(quality={"benchmark": "MMLU", "minScore": floor}, load={"outputTokensPerSecond": load},
              policy=policy)
    p = plan(s, DEFAULT, obs({r: region(g) for r, g in zip(REGIONS, gs)}), NOW)
    scores = {v.name: v.quality["MMLU"] for v in DEFAULT.variants}
    for c in (p.chosen, *p.alternatives):
        if c is not None:
            assert scores[c.variant] >= floor
    if not any(v.family == "general-chat" and v.quality["MMLU"] >= floor for v in DEFAULT.variants):
        assert not p.feasible and p.failed_constraints[0].field == "spec.quality.minScore"


@SETTINGS
@given(loads, st.integers(1, 30), st.integers(200, 5000), st.integers(20, 150), policies,
       st.integers(1, 4000), st.integers(1, 2000))
def test_replicas_meet_the_modelled_slo_or_the_plan_says_why(load, max_replicas, ttft, itl, policy, out_tok, in_tok):
    s = _spec(load={"outputTokensPerSecond": load, "averageOutputTokens": out_tok, "averageInputTokens": in_tok},
              maxReplicas=max_replicas, policy=policy,
              latency={"ttftP95Milliseconds": ttft, "interTokenP95Milliseconds": itl})
    p = plan(s, DEFAULT, obs({r: region(200.0) for r in REGIONS}), NOW)
    if p.feasible:
        c = p.chosen
        assert c.slo_met
        assert 1 <= c.replicas <= max_replicas
        assert c.ttft_p95_ms <= ttft and c.itl_p95_ms <= itl
        assert c.utilization <= TARGET_UTILIZATION + 1e-9
    else:
        assert p.failed_constraints, p
        assert all(f.field.startswith("spec") and f.message for f in p.failed_constraints)
        if p.chosen is not None:  # best effort: clamped to the bound and marked
            assert p.chosen.replicas <= max_replicas and not p.chosen.slo_met


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.3), st.sampled_from([5.0, 10.0, 25.0]),
       st.sampled_from([600, 1800, 3600]))
def test_hysteresis_never_flaps_on_a_noisy_intensity_series(seed, noise, min_pct, dwell):
    """Drive plan() through 48 hours of 5-minute steps with noisy intensities around similar means,
    applying each decision as the operator would. Every switch must be justified at its time: the
    current placement had been held for minDwellSeconds and the new one scored at least
    minImprovementPercent better; and there is never an A -> B -> A round trip within the dwell."""
    rng = random.Random(seed)
    means = {"gb": 200.0, "de": 210.0, "fr": 190.0}
    cat = catalog(variant("a"))
    s = spec(hysteresis={"minImprovementPercent": min_pct, "minDwellSeconds": dwell})
    current = None
    switches = []
    t = NOW
    for step in range(48 * 12):
        gs = {r: max(0.0, m * (1 + rng.uniform(-noise, noise))) for r, m in means.items()}
        p = plan(s, cat, obs({r: region(g, ts=t) for r, g in gs.items()}, current=current), t)
        assert p.feasible
        c = p.chosen
        if current is None or (c.variant, c.region, c.gpu_product) != (current.variant, current.region,
                                                                         current.gpu_product):
            if current is not None:
                held = (t - current.since).total_seconds()
                assert held >= dwell
                old = next(x for x in p.alternatives if x.region == current.region)
                assert 100 * (old.score - c.score) / old.score >= min_pct - 1e-9
                switches.append((t, current.region, c.region))
            current = CurrentPlacement(c.variant, c.region, c.gpu_product, c.replicas, t)
        t += timedelta(minutes=5)
    for (t1, a, b), (t2, b2, a2) in zip(switches, switches[1:]):
        if a2 == a:
            assert (t2 - t1).total_seconds() >= dwell
    # With noise below the threshold the placement never changes after the first choice.
    if noise * 2 * 100 < min_pct - (max(means.values()) / min(means.values()) - 1) * 100:
        assert not switches


@SETTINGS
@given(st.floats(1.0, 2000.0), st.floats(0.0, 100000.0))
def test_more_load_never_needs_fewer_replicas(load, extra):
    cat = catalog(variant("a", profiles=[profile()]))
    a = plan(spec(load={"outputTokensPerSecond": load}, maxReplicas=1000), cat, obs({"r": region(100)}), NOW)
    b = plan(spec(load={"outputTokensPerSecond": load + extra}, maxReplicas=1000), cat, obs({"r": region(100)}), NOW)
    assume(a.feasible and b.feasible)
    assert b.chosen.replicas >= a.chosen.replicas
