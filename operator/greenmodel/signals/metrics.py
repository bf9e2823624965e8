"""Serving metrics of one GreenModel from Prometheus (prometheus-api-client), with vLLM, DCGM and
Kepler metric names. An empty or failed query is ``None`` ("unknown"), never 0.

Per GreenModel (selected by namespace plus the pods' ``app.kubernetes.io/instance`` label, as
mapped by the scrape config; falling back to vLLM's ``model_name`` label), over ``rateWindow``:

====================  ==========================================================================
request rate          ``sum(rate(vllm:request_success_total[w]))``
output tokens/s       ``sum(rate(vllm:generation_tokens_total[w]))``
p95 TTFT              ``histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[w])))``
p95 inter-token       same over ``vllm:inter_token_latency_seconds`` (newer vLLM), else
                      ``vllm:time_per_output_token_seconds``
queue length          ``sum(vllm:num_requests_waiting)``; running ``sum(vllm:num_requests_running)``
KV-cache usage        ``max(vllm:kv_cache_usage_perc)`` (0..1; older vLLM: ``vllm:gpu_cache_usage_perc``)
GPU power (W)         ``sum(DCGM_FI_DEV_POWER_USAGE)``, else ``sum(rate(kepler_pod_gpu_joules_total[w]))``
GPU energy (J in w)   ``sum(increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[w])) / 1000`` (mJ counter),
                      else ``sum(increase(kepler_pod_gpu_joules_total[w]))``
====================  ==========================================================================

``available`` is False (with a CamelCase ``reason`` for the ``MetricsAvailable`` condition) when
Prometheus is not configured or unreachable, when every query failed, or when there is no vLLM series
for this GreenModel yet. A zero request rate from existing series is a real zero; a p95 of NaN
(no requests in the window) is unknown.

Calls block: the reconciler runs ``MetricsClient.get`` through ``asyncio.to_thread``. Results are
cached per GreenModel for ``prometheus.refreshIntervalSeconds`` so timers on many objects do not
multiply the load on Prometheus.
"""

from __future__ import annotations

import math
import re
import threading
from datetime import datetime, timezone
from typing import Any, Callable

import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from greenmodel.api.state import ServingMetrics

from .carbon.base import ProviderError
from .http import SafeHttpClient, find_unsafe_peer, mount_peer_check


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def escape_label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _window_seconds(window: str) -> float:
    m = re.fullmatch(r"([0-9]+)([smh])", window)
    if not m:
        raise ValueError(f"bad rate window {window!r}")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


class _Unreachable(Exception):
    pass


class MetricsClient:
    def __init__(
        self,
        settings,  # greenmodel.settings.Settings
        *,
        connect: Callable[..., Any] | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.settings = settings
        self.prom = settings.prometheus
        self._clock = clock
        self._window = self.prom.rate_window
        self._window_s = _window_seconds(self._window)
        self._cache: dict[tuple[str, str, str | None], ServingMetrics] = {}
        self._lock = threading.Lock()
        self._pc = None
        self._safety = SafeHttpClient(settings.network)
        if self.prom.url:
            if connect is None:
                session = requests.Session()
                session.trust_env = settings.network.use_environment_proxies
                session.max_redirects = 0  # a redirect is an error, never followed
                if not settings.network.use_environment_proxies:
                    mount_peer_check(session, settings.network)  # the address reached is checked again
                connect = lambda url: PrometheusConnect(  # noqa: E731
                    url=url, disable_ssl=False, session=session, timeout=self.prom.query_timeout_seconds,
                    retry=Retry(total=0, raise_on_status=False),
                )
            self._pc = connect(self.prom.url)

    # ------------------------------------------------------------------ public
    def get(self, namespace: str, instance: str, model_name: str | None = None) -> ServingMetrics:
        """Cached ``collect`` (at most one collection per GreenModel per refresh interval)."""
        key = (namespace, instance, model_name)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and (now - hit.observed_at).total_seconds() < self.prom.refresh_interval_seconds:
            return hit
        result = self.collect(namespace, instance, model_name)
        with self._lock:
            self._cache[key] = result
        return result

    def forget(self, namespace: str, instance: str) -> None:
        with self._lock:
            for k in [k for k in self._cache if k[:2] == (namespace, instance)]:
                del self._cache[k]

    def collect(self, namespace: str, instance: str, model_name: str | None = None) -> ServingMetrics:
        now = self._clock()
        base = dict(observed_at=now, window_seconds=float(self._window_s))
        if self._pc is None:
            return ServingMetrics(False, "NotConfigured", "prometheus.url is not set in the operator config", **base)
        try:
            self._safety.check_destination(self.prom.url)
        except ProviderError as exc:
            return ServingMetrics(False, "UnsafeDestination", exc.message, **base)
        subst = {
            "namespace": escape_label_value(namespace),
            "instance": escape_label_value(instance),
            "model": escape_label_value(model_name or ""),
        }
        errors: dict[str, str] = {}
        try:
            vsel = self.prom.vllm_selector.format(**subst)
            pods = self._scalar(f"count(vllm:num_requests_running{{{vsel}}})", "pods", errors)
            if pods is None and model_name:
                vsel = 'namespace="{namespace}",model_name="{model}"'.format(**subst)
                pods = self._scalar(f"count(vllm:num_requests_running{{{vsel}}})", "pods", errors)
            if pods is None:
                if errors:
                    return ServingMetrics(False, "QueryFailed", f"Prometheus query failed: {next(iter(errors.values()))}", errors=errors, **base)
                return ServingMetrics(
                    False, "NoServingSeries",
                    f"no vLLM series for {namespace}/{instance} in Prometheus yet", errors=errors, **base,
                )
            w = self._window
            q = lambda expr, name: self._scalar(expr, name, errors)  # noqa: E731
            out: dict[str, Any] = {"pods": int(pods)}
            out["request_rate_per_second"] = q(f"sum(rate(vllm:request_success_total{{{vsel}}}[{w}]))", "request_rate")
            out["output_tokens_per_second"] = q(f"sum(rate(vllm:generation_tokens_total{{{vsel}}}[{w}]))", "output_tokens")
            out["ttft_p95_milliseconds"] = _ms(q(self._p95("vllm:time_to_first_token_seconds", vsel), "ttft_p95"))
            itl = None
            for metric in ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"):
                present = q(f"count({metric}_bucket{{{vsel}}})", f"has:{metric}")
                if present is not None:
                    itl = q(self._p95(metric, vsel), "itl_p95")
                    out["itl_metric"] = metric
                    break
            out["inter_token_p95_milliseconds"] = _ms(itl)
            out["queue_length"] = q(f"sum(vllm:num_requests_waiting{{{vsel}}})", "queue")
            out["running_requests"] = q(f"sum(vllm:num_requests_running{{{vsel}}})", "running")
            kv = q(f"max(vllm:kv_cache_usage_perc{{{vsel}}})", "kv_cache")
            if kv is None:
                kv = q(f"max(vllm:gpu_cache_usage_perc{{{vsel}}})", "kv_cache_old")
            out["kv_cache_usage_ratio"] = kv
            dsel = self.prom.dcgm_selector.format(**subst)
            power = q(f"sum(DCGM_FI_DEV_POWER_USAGE{{{dsel}}})", "gpu_power")
            energy_mj = q(f"sum(increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{dsel}}}[{w}]))", "gpu_energy")
            source = "dcgm" if (power is not None or energy_mj is not None) else None
            energy = energy_mj / 1000.0 if energy_mj is not None else None
            if energy is None:
                ksel = self.prom.kepler_selector.format(**subst)
                kj = q(f"sum(increase(kepler_pod_gpu_joules_total{{{ksel}}}[{w}]))", "kepler_energy")
                if kj is not None:
                    energy, source = kj, "kepler"
                    if power is None:
                        power = q(f"sum(rate(kepler_pod_gpu_joules_total{{{ksel}}}[{w}]))", "kepler_power")
            out["gpu_power_watts"] = power
            out["gpu_energy_joules"] = energy
            out["energy_source"] = source
            tps = out["output_tokens_per_second"]
            if energy is not None and tps is not None and tps > 0:
                out["gpu_energy_joules_per_output_token"] = energy / (tps * self._window_s)
        except _Unreachable as exc:
            return ServingMetrics(False, "PrometheusUnreachable", str(exc), errors=errors, **base)
        msg = f"{int(pods)} pod(s) reporting"
        if errors:
            msg += "; some queries failed: " + ", ".join(sorted(errors))
        return ServingMetrics(True, "Available", msg, errors=errors, **base, **out)

    # ------------------------------------------------------------------ helpers
    def _p95(self, metric: str, sel: str) -> str:
        return f"histogram_quantile(0.95, sum by (le) (rate({metric}_bucket{{{sel}}}[{self._window}])))"

    def _scalar(self, query: str, name: str, errors: dict[str, str]) -> float | None:
        """One instant query reduced to a float; None when empty, NaN/Inf or failed."""
        try:
            result = self._pc.custom_query(query)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            unsafe = find_unsafe_peer(exc)
            if unsafe is not None:
                raise _Unreachable(f"Prometheus at {self.prom.url} refused: {unsafe}") from None
            raise _Unreachable(f"Prometheus at {self.prom.url} unreachable: {type(exc).__name__}") from None
        except requests.exceptions.TooManyRedirects:
            raise _Unreachable(f"Prometheus at {self.prom.url} redirected; redirects are refused") from None
        except Exception as exc:  # PrometheusApiClientException (HTTP status), bad JSON, ...
            errors[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
            return None
        if not result:
            return None
        try:
            raw = result[0]["value"][1]
            v = float(raw)
        except (KeyError, IndexError, TypeError, ValueError):
            errors[name] = "unexpected result shape"
            return None
        if math.isnan(v) or math.isinf(v):
            return None
        return v
