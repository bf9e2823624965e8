"""Serving metrics from a REAL Prometheus (Debian binary) scraping the workload simulator."""

import time

import pytest

from greenmodel.settings import Settings
from greenmodel.signals.metrics import MetricsClient
from greenmodel.testing.ci import require
from greenmodel.testing.prometheus import PrometheusProcess, find_prometheus
from greenmodel.testing.workload import ServedModel, WorkloadSimulator

@pytest.fixture(scope="module")
def stack():
    require(find_prometheus(), "prometheus binary not installed (e2e/system-deps.sh)")
    sim = WorkloadSimulator(
        [
            ServedModel("team-a", "chat", "meta-llama/Llama-3.1-8B-Instruct", pods=2, speed=4.0),
            ServedModel("team-b", "coder", "Qwen/Qwen3-30B-A3B", pods=1, speed=4.0, trace="code",
                        gpu_product="NVIDIA-A100-SXM4-80GB", emit_newer_itl=False),
        ]
    ).start()
    prom = PrometheusProcess([f"127.0.0.1:{sim.port}"], scrape_interval="1s").start()
    # rate() over 10s needs at least two samples of 1s scrapes
    prom.wait_for_series('vllm:num_requests_running{namespace="team-b"}')
    time.sleep(4)
    yield sim, prom
    prom.close()
    sim.stop()


def settings_for(url, **prom):
    return Settings.model_validate(
        {
            "prometheus": {"url": url, "rateWindow": "10s", "refreshIntervalSeconds": 0.5, **prom},
            "network": {"allowInsecureHttpHosts": ["127.0.0.1"]},
        }
    )


def test_metrics_for_a_greenmodel(stack):
    sim, prom = stack
    m = MetricsClient(settings_for(prom.url)).collect("team-a", "chat")
    assert m.available and m.reason == "Available" and m.pods == 2, m
    # the trace's first minute has ~2-3 arrivals/s, replayed at 4x; completions lag arrivals by the
    # modelled request duration (seconds), so the 10 s completion rate is lower at start-up
    assert 0.5 < m.request_rate_per_second < 80, m.request_rate_per_second
    assert m.output_tokens_per_second > 50
    assert 40 <= m.ttft_p95_milliseconds < 5000
    assert m.itl_metric == "vllm:inter_token_latency_seconds"
    assert 15 <= m.inter_token_p95_milliseconds < 1000
    assert m.queue_length is not None and m.queue_length >= 0
    assert m.kv_cache_usage_ratio is not None and 0 <= m.kv_cache_usage_ratio <= 1
    assert 2 * 70 <= m.gpu_power_watts <= 2 * 700  # two H100 pods, idle..peak
    assert m.energy_source == "dcgm" and m.gpu_energy_joules > 0
    assert 0 < m.gpu_energy_joules_per_output_token < 50
    print(
        f"\nteam-a/chat: {m.request_rate_per_second:.1f} req/s, {m.output_tokens_per_second:.0f} tok/s, "
        f"p95 TTFT {m.ttft_p95_milliseconds:.0f} ms, p95 ITL {m.inter_token_p95_milliseconds:.0f} ms, "
        f"{m.gpu_power_watts:.0f} W, {m.gpu_energy_joules_per_output_token:.2f} J/token"
    )


def test_itl_falls_back_to_time_per_output_token(stack):
    _, prom = stack
    m = MetricsClient(settings_for(prom.url)).collect("team-b", "coder")
    assert m.available and m.pods == 1
    assert m.itl_metric == "vllm:time_per_output_token_seconds" and m.inter_token_p95_milliseconds is not None
    assert 60 <= m.gpu_power_watts <= 400  # one A100


def test_model_name_fallback_selector(stack):
    _, prom = stack
    s = settings_for(prom.url, vllmSelector='namespace="{namespace}",app_kubernetes_io_instance="wrong-{instance}"')
    m = MetricsClient(s).collect("team-b", "coder", model_name="Qwen/Qwen3-30B-A3B")
    assert m.available and m.pods == 1


def test_unknown_greenmodel_is_unknown_not_zero(stack):
    _, prom = stack
    m = MetricsClient(settings_for(prom.url)).collect("team-a", "nope")
    assert not m.available and m.reason == "NoServingSeries"
    assert m.request_rate_per_second is None and m.gpu_power_watts is None and m.queue_length is None


def test_label_values_are_escaped(stack):
    _, prom = stack
    m = MetricsClient(settings_for(prom.url)).collect('team-a"} or vector(1) or {x="', "chat")
    assert not m.available and m.reason == "NoServingSeries"


def test_prometheus_stopped_then_back(stack):
    sim, prom = stack
    client = MetricsClient(settings_for(prom.url))
    assert client.get("team-a", "chat").available
    prom.stop()
    try:
        time.sleep(0.6)  # past the 0.5 s cache
        t0 = time.monotonic()
        m = client.get("team-a", "chat")
        assert not m.available and m.reason == "PrometheusUnreachable"
        assert m.request_rate_per_second is None and m.gpu_energy_joules is None
        assert time.monotonic() - t0 < 2, "an unreachable Prometheus must fail fast (no retries)"
    finally:
        prom.start()
    prom.wait_for_series('vllm:num_requests_running{namespace="team-a"}')
    time.sleep(0.6)
    assert client.get("team-a", "chat").available


def test_not_configured_and_unsafe():
    m = MetricsClient(Settings()).collect("a", "b")
    assert not m.available and m.reason == "NotConfigured"
    s = Settings.model_validate({"prometheus": {"url": "https://localhost:9"}})
    m = MetricsClient(s).collect("a", "b")
    assert not m.available and m.reason == "UnsafeDestination"
