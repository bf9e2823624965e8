"""ZoneCache and reading validation, with scripted providers and an injected clock (no I/O)."""

import math
import random
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from greenmodel.signals.carbon.base import (
    IntensityReading,
    ProviderError,
    Reason,
    ValidationLimits,
    parse_timestamp,
    validate,
)
from greenmodel.signals.carbon.cache import ZoneCache, ZoneChain
from greenmodel.signals.carbon.static import StaticCarbonProvider

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += timedelta(seconds=seconds)


class Scripted:
    """A provider whose answers are a function of the clock; counts its calls."""

    def __init__(self, name, clock, behaviour):
        self.name = name
        self.clock = clock
        self.behaviour = behaviour  # callable(zone, provider_zone) -> reading | raises
        self.calls = 0
        self.forecast_calls = 0
        self.lock = threading.Lock()

    def latest(self, zone, provider_zone):
        with self.lock:
            self.calls += 1
        return self.behaviour(zone, provider_zone)

    def forecast(self, zone, provider_zone):
        self.forecast_calls += 1
        raise ProviderError(Reason.NOT_SUPPORTED, "none")


def reading(clock, zone="GB", value=200.0, age=600, source="live", kind="measured"):
    return IntensityReading(value=value, zone=zone, source=source, timestamp=clock() - timedelta(seconds=age), kind=kind)


def make(providers, chain, clock, **kw):
    links = tuple((p, p_zone) for p, p_zone in chain)
    return ZoneCache(
        {"GB": ZoneChain("GB", links)},
        {p.name: p for p in providers},
        refresh_interval_seconds=300,
        max_backoff_seconds=3600,
        limits=ValidationLimits(max_age_seconds=7200, max_future_skew_seconds=300, max_value=2000),
        clock=clock,
        rng=random.Random(1),
        **kw,
    )


# ---------------------------------------------------------------- validation
LIM = ValidationLimits(max_age_seconds=7200, max_future_skew_seconds=300, max_value=2000)


@pytest.mark.parametrize(
    "value,zone,age,reason",
    [
        (float("nan"), "GB", 0, Reason.NOT_A_NUMBER),
        (float("inf"), "GB", 0, Reason.NOT_A_NUMBER),
        (-1.0, "GB", 0, Reason.NEGATIVE),
        (2000.5, "GB", 0, Reason.IMPLAUSIBLY_HIGH),
        (200.0, "DE", 0, Reason.WRONG_ZONE),
        (200.0, "GB", 7201, Reason.STALE),
        (200.0, "GB", -301, Reason.FROM_THE_FUTURE),
    ],
)
def test_validation_rejects_with_typed_reason(value, zone, age, reason):
    clock = Clock()
    r = reading(clock, zone=zone, value=value, age=age)
    bad = validate(r, expected_zone="GB", now=clock(), limits=LIM)
    assert bad is not None and bad[0] is reason
    assert "\n" not in bad[1]


@pytest.mark.parametrize("value,age", [(0.0, 0), (2000.0, 7200), (35.0, -300), (900, 3600)])
def test_validation_accepts_boundaries(value, age):
    clock = Clock()
    assert validate(reading(clock, value=value, age=age), expected_zone="GB", now=clock(), limits=LIM) is None


def test_forecast_points_may_be_in_the_future():
    clock = Clock()
    r = reading(clock, age=-86400, kind="forecast")
    assert validate(r, expected_zone="GB", now=clock(), limits=LIM) is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2019-05-21T00:00:00.000Z", datetime(2019, 5, 21, tzinfo=timezone.utc)),
        ("2018-01-20T12:00Z", datetime(2018, 1, 20, 12, tzinfo=timezone.utc)),
        ("2022-07-15T00:05:00+00:00", datetime(2022, 7, 15, 0, 5, tzinfo=timezone.utc)),
        ("2022-07-15T02:05:00+02:00", datetime(2022, 7, 15, 0, 5, tzinfo=timezone.utc)),
    ],
)
def test_parse_timestamp_variants(text, expected):
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["2022-07-15T00:05:00", "yesterday", None, 5])
def test_parse_timestamp_rejects(text):
    with pytest.raises(ProviderError) as e:
        parse_timestamp(text)
    assert e.value.reason is Reason.MALFORMED


# ---------------------------------------------------------------- cache behaviour
def test_get_is_none_before_first_refresh_and_value_after():
    clock = Clock()
    p = Scripted("live", clock, lambda z, pz: reading(clock))
    c = make([p], [("live", "GB")], clock)
    assert c.get("GB") is None
    assert c.status("GB").condition()[:2] == (False, "NoData")
    c.refresh_due()
    r = c.get("GB")
    assert r is not None and r.value == 200.0 and r.source == "live" and r.fetched_at == clock()
    ok, reason, msg = c.status("GB").condition()
    assert ok and reason == "Live" and "200 gCO2eq/kWh" in msg


def test_provider_called_once_per_interval():
    clock = Clock()
    p = Scripted("live", clock, lambda z, pz: reading(clock))
    c = make([p], [("live", "GB")], clock)
    for _ in range(30):  # 30 ticks of 20 s = 600 s = two intervals
        c.refresh_due()
        c.refresh_if_due("GB")
        clock.advance(20)
    assert p.calls == 2


def test_reading_expires_to_none_not_zero():
    clock = Clock()
    state = {"fail": False}

    def behave(z, pz):
        if state["fail"]:
            raise ProviderError(Reason.HTTP_ERROR, "HTTP 500")
        return reading(clock, age=600)

    p = Scripted("live", clock, behave)
    c = make([p], [("live", "GB")], clock)
    c.refresh_due()
    state["fail"] = True
    clock.advance(7200 - 600)  # reading now exactly max age old
    c.refresh_due()
    assert c.get("GB") is not None
    clock.advance(1)
    assert c.get("GB") is None
    ok, reason, msg = c.status("GB").condition()
    assert not ok and reason == "ProviderHTTPError" and "HTTP 500" in msg


def test_exponential_backoff_with_jitter_then_recovery():
    clock = Clock()
    state = {"fail": True}

    def behave(z, pz):
        if state["fail"]:
            raise ProviderError(Reason.TIMEOUT, "timed out")
        return reading(clock, age=0)

    p = Scripted("live", clock, behave)
    c = make([p], [("live", "GB")], clock)
    call_times = []
    for _ in range(int(4 * 3600 / 10)):
        before = p.calls
        c.refresh_due()
        if p.calls > before:
            call_times.append((clock() - T0).total_seconds())
        clock.advance(10)
    gaps = [b - a for a, b in zip(call_times, call_times[1:])]
    # 300 * 2**(n-1) * [1, 1.2), capped at 3600 * 1.2; 10 s tick granularity
    for n, gap in enumerate(gaps, start=1):
        lo = min(3600, 300 * 2 ** (n - 1))
        assert lo <= gap <= lo * 1.2 + 10, (n, gap)
    assert gaps[:4] == sorted(gaps[:4])
    assert c.status("GB").primary_failures == len(call_times)
    # recovery is automatic at the next allowed call
    state["fail"] = False
    for _ in range(int(1.3 * 3600 / 10)):
        c.refresh_due()
        clock.advance(10)
    assert c.get("GB") is not None and c.status("GB").primary_failures == 0


def test_retry_after_is_honoured():
    clock = Clock()
    state = {"n": 0}

    def behave(z, pz):
        state["n"] += 1
        if state["n"] == 1:
            raise ProviderError(Reason.RATE_LIMITED, "HTTP 429", retry_after=1800)
        return reading(clock, age=0)

    p = Scripted("live", clock, behave)
    c = make([p], [("live", "GB")], clock)
    c.refresh_due()
    assert p.calls == 1
    clock.advance(1790)
    c.refresh_due()
    assert p.calls == 1, "called again before Retry-After elapsed"
    clock.advance(20)
    c.refresh_due()
    assert p.calls == 2 and c.get("GB") is not None


def test_a_429_on_the_forecast_call_pauses_every_call_to_that_provider_for_the_zone():
    clock = Clock()

    class ForecastLimited(Scripted):
        def forecast(self, zone, provider_zone):
            self.forecast_calls += 1
            if self.forecast_calls == 1:
                raise ProviderError(Reason.RATE_LIMITED, "forecast: HTTP 429", retry_after=1800)
            return [reading(self.clock, age=-3600)]

    p = ForecastLimited("live", clock, lambda z, pz: reading(clock, age=0))
    c = make([p], [("live", "GB")], clock, forecast_refresh_interval_seconds=300)
    c.refresh_due()
    assert (p.calls, p.forecast_calls) == (1, 1)  # latest ok, then the forecast is rate limited
    for _ in range(5):  # refresh intervals (300 s) pass; Retry-After (1800 s) has not
        clock.advance(300)
        c.refresh_due()
        assert (p.calls, p.forecast_calls) == (1, 1), "a call to the provider before Retry-After elapsed"
    assert c.get("GB") is not None  # the last good reading is still served within its max age
    clock.advance(301)
    c.refresh_due()
    assert p.calls == 2 and p.forecast_calls == 2
    assert c.forecast("GB")


def test_fallback_chain_and_preference_for_better_ranked_reading():
    clock = Clock()
    state = {"fail": False}

    def behave(z, pz):
        if state["fail"]:
            raise ProviderError(Reason.HTTP_ERROR, "HTTP 500")
        return reading(clock, age=600, value=150)

    live = Scripted("live", clock, behave)
    static = StaticCarbonProvider("static", {"GB": 234.3}, clock=clock)
    c = make([live, static], [("live", "GB"), ("static", "GB")], clock)
    c.refresh_due()
    assert c.get("GB").source == "live"
    state["fail"] = True
    clock.advance(300)
    c.refresh_due()
    # the hour-old live value is still valid: keep it rather than use the annual mean
    assert c.get("GB").source == "live" and c.get("GB").value == 150
    clock.advance(7200)
    c.refresh_due()
    r = c.get("GB")
    assert r is not None and r.source == "static" and r.value == 234.3 and r.kind == "static"
    st = c.status("GB")
    ok, reason, msg = st.condition()
    # only the annual mean is left: not live data, so not "available"; the last live reading stays known
    assert not ok and reason == "StaticFallback" and "live" in msg and st.using_fallback and st.static_only
    assert st.live_reading is not None and st.live_reading.source == "live" and st.live_reading.value == 150
    state["fail"] = False
    for _ in range(2 * 3600 // 60):
        clock.advance(60)
        c.refresh_due()
    assert c.get("GB").source == "live"


def test_a_chain_of_only_static_is_the_admins_choice_not_a_fallback():
    clock = Clock()
    c = make([StaticCarbonProvider("static", {"GB": 234.3}, clock=clock)], [("static", "GB")], clock)
    c.refresh_due()
    st = c.status("GB")
    ok, reason, msg = st.condition()
    assert ok and reason == "StaticConfigured" and "234 gCO2eq/kWh" in msg
    assert st.static_only and not st.using_fallback and st.live_reading is None


def test_a_second_live_provider_is_a_fallback_provider_not_static():
    clock = Clock()
    state = {"fail": False}

    def primary(z, pz):
        if state["fail"]:
            raise ProviderError(Reason.HTTP_ERROR, "HTTP 500")
        return reading(clock, age=600, value=150)

    second = Scripted("second", clock, lambda z, pz: reading(clock, age=60, value=180, source="second"))
    c = make([Scripted("live", clock, primary), second], [("live", "GB"), ("second", "GB")], clock)
    c.refresh_due()
    state["fail"] = True
    clock.advance(7200)
    c.refresh_due()
    st = c.status("GB")
    ok, reason, _ = st.condition()
    assert ok and reason == "FallbackProvider" and not st.static_only
    assert st.live_reading.value == 180


@pytest.mark.parametrize(
    "bad,reason",
    [
        (dict(value=float("nan")), Reason.NOT_A_NUMBER),
        (dict(value=-5), Reason.NEGATIVE),
        (dict(value=5000), Reason.IMPLAUSIBLY_HIGH),
        (dict(zone="DE"), Reason.WRONG_ZONE),
        (dict(age=86400), Reason.STALE),
        (dict(age=-86400), Reason.FROM_THE_FUTURE),
    ],
)
def test_rejected_readings_are_reported_and_fallback_used(bad, reason):
    clock = Clock()
    seen = []
    live = Scripted("live", clock, lambda z, pz: reading(clock, **bad))
    static = StaticCarbonProvider("static", {"GB": 234.3}, clock=clock)
    c = make([live, static], [("live", "GB"), ("static", "GB")], clock, listener=seen.append)
    c.refresh_due()
    assert c.get("GB").source == "static"
    rejected = [o for o in seen if o.kind == "rejected"]
    assert [(o.provider, o.reason) for o in rejected] == [("live", reason)]
    assert c.counters[("GB", "live", "latest", "rejected", reason.value)] == 1
    assert c.status("GB").last_problem.reason is reason


def test_provider_exception_is_contained():
    clock = Clock()

    def boom(z, pz):
        raise KeyError("carbonIntensity")

    c = make([Scripted("live", clock, boom)], [("live", "GB")], clock)
    c.refresh_due()
    assert c.get("GB") is None
    assert c.status("GB").last_problem.reason is Reason.MALFORMED


def test_concurrent_readers_coalesce_into_one_call():
    clock = Clock()

    def slow(z, pz):
        time.sleep(0.05)
        return reading(clock, age=0)

    p = Scripted("live", clock, slow)
    c = make([p], [("live", "GB")], clock)
    results = []
    threads = [threading.Thread(target=lambda: results.append(c.refresh_if_due("GB"))) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.calls == 1
    assert len(results) == 200 and all(r is not None and r.value == 200 for r in results)


def test_background_thread_refreshes_and_stops():
    p = Scripted("live", None, None)
    real = lambda: datetime.now(timezone.utc)  # noqa: E731
    p.behaviour = lambda z, pz: IntensityReading(100, "GB", "live", real(), "measured")
    c = ZoneCache({"GB": ZoneChain("GB", (("live", "GB"),))}, {"live": p}, refresh_interval_seconds=0.2)
    c.start()
    try:
        deadline = time.time() + 5
        while c.get("GB") is None and time.time() < deadline:
            time.sleep(0.01)
        assert c.get("GB") is not None
        time.sleep(0.7)
    finally:
        c.stop()
    calls = p.calls
    assert 2 <= calls <= 6  # ~0.2 s interval over ~0.7 s, 1 s max wake-up
    time.sleep(0.3)
    assert p.calls == calls  # stopped


def test_forecast_validated_and_filtered():
    clock = Clock()

    class F(Scripted):
        def forecast(self, zone, pz):
            pts = [reading(clock, age=-3600 * h, value=100 + h, kind="forecast") for h in range(1, 4)]
            pts.append(reading(clock, age=-3600 * 5, value=math.nan, kind="forecast"))
            return pts

    p = F("live", clock, lambda z, pz: reading(clock))
    c = make([p], [("live", "GB")], clock)
    c.refresh_due()
    fc = c.forecast("GB")
    assert [r.value for r in fc] == [101, 102, 103] and all(r.kind == "forecast" for r in fc)
    clock.advance(2 * 3600 + 1)
    assert [r.value for r in c.forecast("GB")] == [102, 103]  # past hours drop out
