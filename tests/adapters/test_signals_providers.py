"""WattTime, UK Carbon Intensity and Prometheus carbon providers against local servers."""

import base64
import time
from datetime import datetime, timezone

import pytest

from greenmodel.signals.carbon.base import ProviderError, Reason, ValidationLimits, validate
from greenmodel.signals.carbon.cache import ZoneCache
from greenmodel.signals.carbon.registry import build_providers
from greenmodel.signals.carbon.watttime import LBS_PER_MWH_TO_G_PER_KWH
from greenmodel.testing.prometheus import PrometheusProcess, find_prometheus
from greenmodel.testing.ci import require
from greenmodel.testing.replay import GridReplay
from greenmodel.testing.ukgrid import UKGridServer
from greenmodel.testing.watttime import WattTimeServer
from greenmodel.testing.workload import WorkloadSimulator

NOW = lambda: datetime.now(timezone.utc)  # noqa: E731


# ------------------------------------------------------------------ WattTime
@pytest.fixture
def wt(monkeypatch, make_local_settings):
    srv = WattTimeServer(GridReplay(start="2022-03-07T00:00"), username="alice", password="s3cret").start()
    monkeypatch.setenv("WT_USER", "alice")
    monkeypatch.setenv("WT_PASS", "s3cret")
    s = make_local_settings(
        {
            "watttime": {"type": "watttime", "endpoint": srv.url,
                         "credentials": {"username": {"env": "WT_USER"}, "password": {"env": "WT_PASS"}}},
            "static": {"type": "static", "gramsPerKilowattHour": {"GB": 234.3, "DE": 474.3, "FR": 89.1, "PL": 818.9}},
        },
        regions={"europe-west2": {"zone": "GB", "providers": ["watttime", "static"], "providerZones": {"watttime": "UK"}}},
    )
    yield srv, s
    srv.stop()


def test_watttime_login_latest_forecast(wt):
    srv, s = wt
    p = build_providers(s)["watttime"]
    r = p.latest("GB", "UK")
    direct = srv.replay.hour("GB", srv.replay.index()).direct  # 2022-03-07T00:00 GB
    assert r.value == pytest.approx(direct, abs=0.1)  # lbs/MWh on the wire, converted back to g/kWh
    assert (r.zone, r.provider_zone, r.kind, r.detail) == ("GB", "UK", "estimated", "co2_moer (marginal)")
    assert validate(r, expected_zone="GB", now=NOW(), limits=ValidationLimits()) is None
    fc = p.forecast("GB", "UK")
    assert len(fc) == 288 and all(x.kind == "forecast" for x in fc)  # 24 h of 5-minute points
    assert 0 <= p.signal_index("UK") <= 100
    assert p.logins == 1 and srv.count("/login") == 1  # the token is reused


def test_watttime_relogin_on_expired_token(wt):
    srv, s = wt
    p = build_providers(s)["watttime"]
    p.latest("GB", "UK")
    srv.expire_tokens()
    p.latest("GB", "UK")
    assert p.logins == 2 and srv.count("/v3/forecast") == 3  # one 401, one retry after login


def test_watttime_bad_credentials(wt, monkeypatch):
    _, s = wt
    monkeypatch.setenv("WT_PASS", "nope")
    with pytest.raises(ProviderError) as e:
        build_providers(s)["watttime"].latest("GB", "UK")
    assert e.value.reason is Reason.UNAUTHORIZED


@pytest.mark.parametrize(
    "mode,reason",
    [("wrong_zone", Reason.WRONG_ZONE), ("nan", Reason.NOT_A_NUMBER), ("stale", Reason.STALE),
     ("http429", Reason.RATE_LIMITED), ("malformed", Reason.MALFORMED)],
)
def test_watttime_faults_fall_back(wt, mode, reason):
    srv, s = wt
    cache = ZoneCache.from_settings(s)
    cache.refresh_if_due("GB")  # logs in first (login is not faulted: fault set after)
    srv.set_fault(mode, retry_after=30)
    cache2 = ZoneCache.from_settings(s, providers=cache._providers)
    cache2.refresh_if_due("GB")
    assert cache2.get("GB").source == "static"
    assert cache2.status("GB").last_problem.reason is reason


# ------------------------------------------------------------------ UK Carbon Intensity
@pytest.fixture
def uk(make_local_settings):
    srv = UKGridServer(GridReplay(["GB"], start="2022-03-07T00:00")).start()
    s = make_local_settings(
        {"ukgrid": {"type": "ukgrid", "endpoint": srv.url}},
        regions={"europe-west2": {"zone": "GB", "providers": ["ukgrid"], "providerZones": {"ukgrid": "13"}},
                 "uk-national": {"zone": "GB-national", "providers": ["ukgrid"], "providerZones": {"ukgrid": "national"}}},
    )
    yield srv, s
    srv.stop()


def test_ukgrid_national_and_regional(uk):
    srv, s = uk
    p = build_providers(s)["ukgrid"]
    direct = srv.replay.hour("GB", srv.replay.index()).direct
    n = p.latest("GB-national", "national")
    assert n.value == round(direct) and n.kind == "measured" and n.zone == "GB-national"
    r = p.latest("GB", "13")
    assert r.value == round(direct) and r.kind == "estimated" and r.provider_zone == "13"
    assert validate(r, expected_zone="GB", now=NOW(), limits=ValidationLimits()) is None
    assert len(p.forecast("GB", "13")) == 48 and len(p.forecast("GB-national", "national")) == 48
    assert srv.count("/regional/regionid/13") == 1


@pytest.mark.parametrize("mode,reason", [("wrong_zone", Reason.WRONG_ZONE), ("future", Reason.FROM_THE_FUTURE),
                                         ("negative", Reason.NEGATIVE), ("http500", Reason.HTTP_ERROR)])
def test_ukgrid_faults(uk, mode, reason):
    srv, s = uk
    srv.set_fault(mode)
    cache = ZoneCache.from_settings(s)
    cache.refresh_if_due("GB")
    assert cache.get("GB") is None  # no fallback configured: unknown, never zero
    assert cache.status("GB").condition()[:2] == (False, reason.value)


# ------------------------------------------------------------------ Prometheus as a carbon source
def test_prometheus_carbon_provider_and_dead_exporter(make_local_settings):
    require(find_prometheus(), "prometheus binary not installed (e2e/system-deps.sh)")
    replay = GridReplay(start="2022-03-07T00:00")
    sim = WorkloadSimulator([], grid=replay).start()
    prom = PrometheusProcess([f"127.0.0.1:{sim.port}"], scrape_interval="1s").start()
    try:
        prom.wait_for_series("grid_carbon_intensity_grams_per_kilowatt_hour")
        s = make_local_settings({"prom": {"type": "prometheus", "url": prom.url}})
        p = build_providers(s)["prom"]
        r = p.latest("PL", "PL")
        assert r.value == replay.value("PL") and r.kind == "measured"
        assert validate(r, expected_zone="PL", now=NOW(), limits=ValidationLimits()) is None
        assert abs((NOW() - r.timestamp).total_seconds()) < 5  # the scrape time, not evaluation time
        sim.stop()  # the exporter dies: never a fresh-looking copy of the last value
        time.sleep(3)
        try:
            r2 = p.latest("PL", "PL")  # (a sample inside the 5-min lookback, if not marked stale)
        except ProviderError as exc:  # Prometheus wrote staleness markers for the failed scrapes
            assert exc.reason is Reason.NO_DATA
        else:
            bad = validate(r2, expected_zone="PL", now=NOW(), limits=ValidationLimits(max_age_seconds=2))
            assert bad is not None and bad[0] is Reason.STALE
    finally:
        prom.close()
        try:
            sim.stop()
        except Exception:
            pass
