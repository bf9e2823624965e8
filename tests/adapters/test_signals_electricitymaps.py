"""Electricity Maps provider and ZoneCache against the local v3 server (real wire format)."""

import threading
import time
from datetime import datetime, timezone

import pytest

from greenmodel.signals.carbon.base import ProviderError, Reason, ValidationLimits, validate
from greenmodel.signals.carbon.cache import ZoneCache
from greenmodel.signals.carbon.registry import build_providers
from greenmodel.signals.http import SafeHttpClient


@pytest.fixture
def em_settings(em_server, monkeypatch, make_local_settings):
    monkeypatch.setenv("EM_TOKEN", "t0ken")
    return make_local_settings(
        {
            "electricitymaps": {"type": "electricitymaps", "endpoint": em_server.url, "credentials": {"env": "EM_TOKEN"}},
            "static": {"type": "static", "gramsPerKilowattHour": {"GB": 234.3, "DE": 474.3, "FR": 89.1, "PL": 818.9}},
        }
    )


def provider(settings):
    return build_providers(settings)["electricitymaps"]


def test_latest_forecast_history_match_the_record(em_server, em_settings):
    p = provider(em_settings)
    r = p.latest("GB", "GB")
    i = em_server.replay.index()
    assert r.value == em_server.replay.hour("GB", i).lifecycle == 236.26  # 2022-03-07T00:00 GB, LCA
    assert (r.zone, r.source, r.kind, r.unit, r.detail) == ("GB", "electricitymaps", "measured", "gCO2eq/kWh", "lifecycle")
    now = datetime.now(timezone.utc)
    assert validate(r, expected_zone="GB", now=now, limits=ValidationLimits()) is None
    fc = p.forecast("PL", "PL")
    assert len(fc) == 25 and all(x.kind == "forecast" and x.zone == "PL" for x in fc)
    assert [x.value for x in fc[:3]] == [em_server.replay.hour("PL", j).lifecycle for j in range(i, i + 3)]
    hist = p.history("FR", "FR")
    assert len(hist) == 24 and hist[-1].value == em_server.replay.hour("FR", i).lifecycle
    assert em_server.count("/v3/carbon-intensity/latest", "GB") == 1


def test_direct_emission_factor(em_server, em_settings):
    s = em_settings.model_copy(deep=True)
    prov = build_providers(s)["electricitymaps"]
    prov.emission_factor_type = "direct"
    assert prov.latest("GB", "GB").value == em_server.replay.hour("GB", em_server.replay.index()).direct


@pytest.mark.parametrize(
    "mode,reason",
    [
        ("http500", Reason.HTTP_ERROR),
        ("http429", Reason.RATE_LIMITED),
        ("malformed", Reason.MALFORMED),
        ("redirect", Reason.REDIRECT_REFUSED),
        ("oversize", Reason.TOO_LARGE),
        ("timeout", Reason.TIMEOUT),
    ],
)
def test_transport_faults_are_typed(em_server, em_settings, mode, reason):
    em_server.set_fault(mode, retry_after=120, delay=2.5)
    with pytest.raises(ProviderError) as e:
        provider(em_settings).latest("GB", "GB")
    assert e.value.reason is reason, e.value
    if mode == "http429":
        assert e.value.retry_after == 120


@pytest.mark.parametrize(
    "mode,reason",
    [
        ("nan", Reason.NOT_A_NUMBER),
        ("negative", Reason.NEGATIVE),
        ("huge", Reason.IMPLAUSIBLY_HIGH),
        ("wrong_zone", Reason.WRONG_ZONE),
        ("stale", Reason.STALE),
        ("future", Reason.FROM_THE_FUTURE),
    ],
)
def test_lying_answers_are_rejected_and_static_used(em_server, em_settings, mode, reason):
    em_server.set_fault(mode)
    seen = []
    cache = ZoneCache.from_settings(em_settings, listener=seen.append)
    cache.refresh_if_due("GB")
    r = cache.get("GB")
    assert r is not None and r.source == "static" and r.value == 234.3
    rej = [o for o in seen if o.provider == "electricitymaps" and o.call == "latest"]
    assert [(o.kind, o.reason) for o in rej] == [("rejected", reason)]
    ok, cond_reason, msg = cache.status("GB").condition()
    # only the static annual mean is left: not live data
    assert not ok and cond_reason == "StaticFallback" and reason.value in msg


def test_bad_and_missing_credentials(em_server, em_settings, monkeypatch):
    monkeypatch.setenv("EM_TOKEN", "wrong")
    with pytest.raises(ProviderError) as e:
        provider(em_settings).latest("GB", "GB")
    assert e.value.reason is Reason.UNAUTHORIZED
    monkeypatch.delenv("EM_TOKEN")
    with pytest.raises(ProviderError) as e:
        provider(em_settings).latest("GB", "GB")
    assert e.value.reason is Reason.MISCONFIGURED and "EM_TOKEN" in str(e.value)


def test_unknown_zone_is_http_error(em_settings):
    with pytest.raises(ProviderError) as e:
        provider(em_settings).latest("XX", "XX")
    assert e.value.reason is Reason.HTTP_ERROR and "404" in e.value.message


def test_plain_http_and_private_destinations_refused_without_allow_list(em_server, em_settings):
    strict = em_settings.network.model_copy(update={"allow_insecure_http_hosts": []})
    with pytest.raises(ProviderError) as e:
        SafeHttpClient(strict).get(em_server.url + "/v3/carbon-intensity/latest", params={"zone": "GB"})
    assert e.value.reason is Reason.UNSAFE_DESTINATION
    # https to a name resolving to loopback: refused before any connection is made
    with pytest.raises(ProviderError) as e:
        SafeHttpClient(strict).get(f"https://localhost:{em_server.port}/v3/carbon-intensity/latest")
    assert e.value.reason is Reason.UNSAFE_DESTINATION and "127.0.0.1" in e.value.message
    # a metadata-service style address, by injected resolver (no real DNS)
    client = SafeHttpClient(strict, resolver=lambda h, p: ["169.254.169.254"])
    with pytest.raises(ProviderError) as e:
        client.get("https://api.electricitymap.org/v3/carbon-intensity/latest")
    assert e.value.reason is Reason.UNSAFE_DESTINATION
    assert em_server.count() == 0


def test_200_readers_cost_one_call_per_zone_per_interval(em_server, em_settings):
    s = em_settings.model_copy(
        update={"carbon": em_settings.carbon.model_copy(update={"refresh_interval_seconds": 0.5, "forecast_refresh_interval_seconds": 60})}
    )
    cache = ZoneCache.from_settings(s)
    zones = ["GB", "DE", "FR", "PL"]
    stop = threading.Event()
    reads = [0]
    misses = [0]

    def reader(k):  # 200 GreenModels, 50 per region, each reconciling in a loop
        zone = zones[k % 4]
        while not stop.is_set():
            cache.refresh_if_due(zone)  # what a reconcile does via asyncio.to_thread
            if cache.get(zone) is None:
                misses[0] += 1
            reads[0] += 1
            time.sleep(0.01)

    t0 = time.monotonic()
    cache.start()
    threads = [threading.Thread(target=reader, args=(k,)) for k in range(200)]
    for t in threads:
        t.start()
    time.sleep(2.2)
    stop.set()
    for t in threads:
        t.join()
    cache.stop()
    elapsed = time.monotonic() - t0
    bound = int(elapsed / 0.5) + 1
    for z in zones:
        n = em_server.count("/v3/carbon-intensity/latest", z)
        assert 1 <= n <= bound, (z, n, bound)
        assert em_server.count("/v3/carbon-intensity/forecast", z) == 1
    assert reads[0] > 1000  # the readers really ran (about 42,000 on an idle 2-core machine)
    print(f"{reads[0]} reads by 200 readers in {elapsed:.1f}s -> "
          f"{[em_server.count('/v3/carbon-intensity/latest', z) for z in zones]} latest calls per zone (bound {bound})")


def _poll(pred, timeout: float) -> bool:
    """Wait for pred() on a loaded 2-core machine: polls instead of fixed sleeps."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_retry_after_honoured_end_to_end(em_server, em_settings):
    s = em_settings.model_copy(update={"carbon": em_settings.carbon.model_copy(update={"refresh_interval_seconds": 0.1})})
    # Only GB, and its first two requests: whichever of latest/forecast the refresher asks first, the first
    # `latest` is answered 429 (a zone-less fault could be consumed by another zone under load).
    em_server.set_fault("http429", retry_after=1, count=2, zone="GB")
    cache = ZoneCache.from_settings(s)
    latest = lambda: em_server.count("/v3/carbon-intensity/latest", "GB")  # noqa: E731
    cache.start()
    try:
        assert _poll(lambda: latest() == 1 and cache.get("GB") is not None, 10)
        first = time.monotonic()
        assert cache.get("GB").source == "static"  # fallback meanwhile
        # No second call inside the Retry-After second, although the refresh interval is 0.1 s.
        assert not _poll(lambda: latest() >= 2, 0.7)
        assert _poll(lambda: latest() >= 2 and cache.get("GB").source == "electricitymaps", 10)
        assert time.monotonic() - first >= 0.7
    finally:
        cache.stop()


def test_outage_longer_than_max_age_then_recovery(em_server, em_settings):
    em_server.replay.set_speed(5.0)  # a grid hour every 0.2 s, so live readings are at most ~0.2 s old
    carbon = em_settings.carbon.model_copy(update={"refresh_interval_seconds": 0.1, "max_backoff_seconds": 0.3})
    s = em_settings.model_copy(update={"carbon": carbon})
    cache = ZoneCache.from_settings(s, limits=ValidationLimits(max_age_seconds=1.0))
    cache.refresh_if_due("DE")
    assert cache.get("DE").source == "electricitymaps"
    em_server.set_fault("http500")
    cache.start()
    try:
        time.sleep(1.6)  # longer than the 1 s max data age
        r = cache.get("DE")
        assert r is not None and r.source == "static"  # never unknown while a fallback works
        st = cache.status("DE")
        assert st.condition()[:2] == (False, "StaticFallback") and st.last_problem.reason is Reason.HTTP_ERROR
        em_server.clear_fault()
        time.sleep(1.0)  # backoff is capped at 0.3 s * 1.2
        assert cache.get("DE").source == "electricitymaps"
        assert cache.status("DE").primary_failures == 0
    finally:
        cache.stop()
