"""Pure parts of the signal adapters: address policy, Retry-After, status mapping, and the metrics
client's query logic against a fake PrometheusConnect (no I/O)."""

from datetime import datetime, timezone

import pytest
import requests

from greenmodel.settings import Settings
from greenmodel.signals.carbon.base import ProviderError, Reason
from greenmodel.signals.http import HttpResponse, SafeHttpClient, check_status, is_public_address, parse_retry_after
from greenmodel.signals.metrics import MetricsClient, escape_label_value


@pytest.mark.parametrize(
    "addr,public",
    [("8.8.8.8", True), ("2606:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
     ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
     ("::1", False), ("fe80::1", False), ("fd00::1", False), ("::ffff:127.0.0.1", False), ("0.0.0.0", False),
     ("224.0.0.1", False)],
)
def test_public_address_policy(addr, public):
    assert is_public_address(addr) is public


def test_retry_after_forms():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:30 GMT", now) == 90
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.parametrize(
    "status,headers,reason",
    [(500, {}, Reason.HTTP_ERROR), (404, {}, Reason.HTTP_ERROR), (401, {}, Reason.UNAUTHORIZED),
     (403, {}, Reason.UNAUTHORIZED), (429, {"Retry-After": "7"}, Reason.RATE_LIMITED),
     (302, {"Location": "http://evil/"}, Reason.REDIRECT_REFUSED)],
)
def test_status_mapping(status, headers, reason):
    with pytest.raises(ProviderError) as e:
        check_status(HttpResponse(status, headers, b"{}", "https://x"), "t")
    assert e.value.reason is reason
    if status == 429:
        assert e.value.retry_after == 7
    check_status(HttpResponse(200, {}, b"{}", "https://x"), "t")


def test_destination_policy_without_network():
    net = Settings().network
    with pytest.raises(ProviderError, match="https only"):
        SafeHttpClient(net, resolver=lambda h, p: ["8.8.8.8"]).check_destination("http://api.example.com/")
    SafeHttpClient(net, resolver=lambda h, p: ["8.8.8.8"]).check_destination("https://api.example.com/")
    with pytest.raises(ProviderError) as e:
        SafeHttpClient(net, resolver=lambda h, p: ["8.8.8.8", "10.0.0.5"]).check_destination("https://api.example.com/")
    assert e.value.reason is Reason.UNSAFE_DESTINATION  # any private answer is refused
    allowed = net.model_copy(update={"allow_private_hosts": ["prom.monitoring.svc"]})
    SafeHttpClient(allowed, resolver=lambda h, p: ["10.0.0.5"]).check_destination("https://prom.monitoring.svc:9090/")

    def boom(h, p):
        raise OSError("no such host")

    with pytest.raises(ProviderError) as e:
        SafeHttpClient(net, resolver=boom).check_destination("https://nowhere.example/")
    assert e.value.reason is Reason.CONNECTION


# ------------------------------------------------------------------ metrics client logic
class FakePC:
    def __init__(self, answers, fail=None):
        self.answers = answers  # substring -> value (str) or None for empty
        self.fail = fail
        self.queries = []

    def custom_query(self, q):
        self.queries.append(q)
        if self.fail:
            raise self.fail
        for key, val in self.answers.items():
            if key in q:
                return [] if val is None else [{"metric": {}, "value": [0, val]}]
        return []


def client(answers, fail=None, **prom):
    s = Settings.model_validate({"prometheus": {"url": "http://127.0.0.1:9090", "rateWindow": "1m", **prom},
                                 "network": {"allowInsecureHttpHosts": ["127.0.0.1"]}})
    pc = FakePC(answers, fail)
    return MetricsClient(s, connect=lambda url: pc), pc


BASE = {
    "count(vllm:num_requests_running": "2",
    "vllm:request_success_total": "3.5",
    "vllm:generation_tokens_total": "700",
    "time_to_first_token_seconds_bucket": "0.25",
    "count(vllm:inter_token_latency_seconds_bucket": None,
    "count(vllm:time_per_output_token_seconds_bucket": "40",
    "vllm:time_per_output_token_seconds_bucket": "0.03",
    "num_requests_waiting": "0",
    "sum(vllm:num_requests_running": "5",
    "kv_cache_usage_perc": "0.4",
    "DCGM_FI_DEV_POWER_USAGE": "650",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "39000000",
}


def test_metrics_values_and_itl_fallback():
    c, pc = client(BASE)
    m = c.collect("ns", "chat")
    assert m.available and m.pods == 2
    assert (m.request_rate_per_second, m.output_tokens_per_second, m.ttft_p95_milliseconds) == (3.5, 700, 250)
    assert m.itl_metric == "vllm:time_per_output_token_seconds" and m.inter_token_p95_milliseconds == pytest.approx(30)
    assert m.queue_length == 0.0  # a real zero from an existing series
    assert m.gpu_energy_joules == 39000 and m.energy_source == "dcgm"
    assert m.gpu_energy_joules_per_output_token == pytest.approx(39000 / (700 * 60))
    assert any('app_kubernetes_io_instance="chat"' in q for q in pc.queries)


def test_nan_quantile_is_unknown_and_kepler_fallback():
    answers = dict(BASE)
    answers["time_to_first_token_seconds_bucket"] = "NaN"
    answers["DCGM_FI_DEV_POWER_USAGE"] = None
    answers["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] = None
    answers["increase(kepler_pod_gpu_joules_total"] = "1200"
    answers["rate(kepler_pod_gpu_joules_total"] = "20"
    m = client(answers)[0].collect("ns", "chat")
    assert m.ttft_p95_milliseconds is None
    assert (m.energy_source, m.gpu_energy_joules, m.gpu_power_watts) == ("kepler", 1200, 20)


def test_unreachable_fails_fast_with_reason():
    c, pc = client(BASE, fail=requests.exceptions.ConnectionError("refused"))
    m = c.collect("ns", "chat")
    assert (m.available, m.reason) == (False, "PrometheusUnreachable") and len(pc.queries) == 1
    assert m.request_rate_per_second is None


def test_query_errors_reported():
    c, _ = client(BASE, fail=ValueError("HTTP 400 bad_data"))
    m = c.collect("ns", "chat")
    assert (m.available, m.reason) == (False, "QueryFailed") and "bad_data" in m.message


def test_cache_respects_refresh_interval():
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    s = Settings.model_validate({"prometheus": {"url": "http://127.0.0.1:9090", "refreshIntervalSeconds": 30},
                                 "network": {"allowInsecureHttpHosts": ["127.0.0.1"]}})
    pc = FakePC(BASE)
    c = MetricsClient(s, connect=lambda url: pc, clock=lambda: now[0])
    c.get("ns", "chat")
    n = len(pc.queries)
    c.get("ns", "chat")
    assert len(pc.queries) == n
    from datetime import timedelta

    now[0] += timedelta(seconds=30)
    c.get("ns", "chat")
    assert len(pc.queries) == 2 * n


def test_escape():
    assert escape_label_value('a"b\\c') == 'a\\"b\\\\c'
