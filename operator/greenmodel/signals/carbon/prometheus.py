"""Carbon intensity from a Prometheus that already has it (an exporter of grid data, a recording rule).

The configured PromQL (``{zone}`` replaced by the provider zone, escaped) must return one sample in
gCO2eq/kWh. Prometheus' instant query stamps results with the *evaluation* time and looks back up to
5 minutes, so we ask for ``timestamp(<query>)`` as well to learn when the sample was really scraped:
a dead exporter then shows up as a stale reading, not as a fresh copy of the last value.

HTTP API: ``GET /api/v1/query?query=...`` -> ``{"status": "success", "data": {"resultType": "vector",
"result": [{"metric": {...}, "value": [<unix seconds>, "<value>"]}]}}``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from ..http import SafeHttpClient, check_status
from .base import IntensityReading, ProviderError, Reason, as_number, utcnow


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


class PrometheusIntensityProvider:
    def __init__(self, name: str, url: str, query: str, http: SafeHttpClient, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.query = query
        self.http = http
        self._clock = clock

    def _vector(self, expr: str) -> list[dict[str, Any]]:
        resp = self.http.get(f"{self.url}/api/v1/query", params={"query": expr})
        check_status(resp, "prometheus /api/v1/query", self._clock())
        body = resp.json()
        if not isinstance(body, dict) or body.get("status") != "success":
            raise ProviderError(Reason.MALFORMED, f"prometheus: status {body.get('status') if isinstance(body, dict) else '?'}")
        data = body.get("data") or {}
        if data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            raise ProviderError(Reason.MALFORMED, "prometheus: query must return an instant vector")
        return data["result"]

    def latest(self, zone: str, provider_zone: str) -> IntensityReading:
        expr = self.query.replace("{zone}", _escape(provider_zone))
        result = self._vector(expr)
        if not result:
            raise ProviderError(Reason.NO_DATA, f"prometheus: no sample for zone {provider_zone}")
        if len(result) > 1:
            raise ProviderError(Reason.MALFORMED, f"prometheus: {len(result)} series for zone {provider_zone}; the query must select one")
        sample = result[0]
        try:
            value = as_number(float(sample["value"][1]), "value")
        except (KeyError, IndexError, TypeError, ValueError):
            raise ProviderError(Reason.MALFORMED, "prometheus: bad sample") from None
        labels = sample.get("metric") or {}
        answered = labels.get("zone", provider_zone)
        ts_result = self._vector(f"timestamp({expr})")
        try:
            scraped = float(ts_result[0]["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise ProviderError(Reason.MALFORMED, "prometheus: no timestamp for the sample") from None
        return IntensityReading(
            value=value,
            zone=zone if answered == provider_zone else answered,
            source=self.name,
            timestamp=datetime.fromtimestamp(scraped, timezone.utc),
            kind="measured",
            provider_zone=answered,
            fetched_at=self._clock(),
            detail="prometheus",
        )

    def forecast(self, zone: str, provider_zone: str) -> Sequence[IntensityReading]:
        raise ProviderError(Reason.NOT_SUPPORTED, "the prometheus provider has no forecast")
