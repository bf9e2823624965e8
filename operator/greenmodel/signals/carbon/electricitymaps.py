"""Electricity Maps API v3 (https://api.electricitymap.org).

Requests (header ``auth-token: <token>``, query ``zone=<zone key>``):
- ``GET /v3/carbon-intensity/latest?zone=DE`` ->
  ``{"zone": "DE", "carbonIntensity": 302, "datetime": "2019-05-21T00:00:00.000Z",
  "updatedAt": "...", "createdAt": "...", "emissionFactorType": "lifecycle",
  "isEstimated": true, "estimationMethod": "TIME_SLICER_AVERAGE"}``
- ``GET /v3/carbon-intensity/forecast?zone=DE`` ->
  ``{"zone": "DE", "forecast": [{"carbonIntensity": 320, "datetime": "..."}, ...], "updatedAt": "..."}``
- ``GET /v3/carbon-intensity/history?zone=DE`` -> ``{"zone": "DE", "history": [<latest-shaped>, ...]}``
  (the last 24 hours).

``emissionFactorType`` is ``lifecycle`` unless configured ``direct``. ``datetime`` is the start of
the hour the value describes. ``isEstimated`` true -> kind "estimated", else "measured".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Sequence

from ..http import SafeHttpClient, check_status
from .base import IntensityReading, Kind, ProviderError, Reason, as_number, parse_timestamp, utcnow


class ElectricityMapsProvider:
    def __init__(
        self,
        name: str,
        endpoint: str,
        http: SafeHttpClient,
        *,
        token: Callable[[], str] | None,
        emission_factor_type: str = "lifecycle",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.name = name
        self.endpoint = endpoint.rstrip("/")
        self.http = http
        self._token = token
        self.emission_factor_type = emission_factor_type
        self._clock = clock

    def _get(self, path: str, provider_zone: str) -> Any:
        if self._token is None:
            raise ProviderError(Reason.MISCONFIGURED, "electricitymaps: no credentials configured")
        params = {"zone": provider_zone}
        if self.emission_factor_type != "lifecycle":
            params["emissionFactorType"] = self.emission_factor_type
        resp = self.http.get(
            f"{self.endpoint}{path}", params=params, headers={"auth-token": self._token(), "Accept": "application/json"}
        )
        check_status(resp, f"electricitymaps {path}", self._clock())
        body = resp.json()
        if not isinstance(body, dict):
            raise ProviderError(Reason.MALFORMED, f"electricitymaps {path}: top level is not an object")
        return body

    def _reading(self, item: Any, zone: str, provider_zone: str, kind: Kind | None, default_zone: str | None) -> IntensityReading:
        if not isinstance(item, dict):
            raise ProviderError(Reason.MALFORMED, "electricitymaps: data point is not an object")
        answered_zone = item.get("zone", default_zone)
        if not isinstance(answered_zone, str):
            raise ProviderError(Reason.MALFORMED, "electricitymaps: answer has no zone")
        if "carbonIntensity" not in item or item["carbonIntensity"] is None:
            raise ProviderError(Reason.NO_DATA, f"electricitymaps: no carbonIntensity for {provider_zone}")
        value = as_number(item["carbonIntensity"], "carbonIntensity")
        ts = parse_timestamp(item.get("datetime"))
        if kind is None:
            kind = "estimated" if item.get("isEstimated") else "measured"
        return IntensityReading(
            value=value,
            # report a zone mismatch as our zone key only when the provider agreed on the area
            zone=zone if answered_zone == provider_zone else answered_zone,
            source=self.name,
            timestamp=ts,
            kind=kind,
            provider_zone=answered_zone,
            fetched_at=self._clock(),
            detail=str(item.get("emissionFactorType", self.emission_factor_type)),
        )

    def latest(self, zone: str, provider_zone: str) -> IntensityReading:
        body = self._get("/v3/carbon-intensity/latest", provider_zone)
        return self._reading(body, zone, provider_zone, None, None)

    def forecast(self, zone: str, provider_zone: str) -> Sequence[IntensityReading]:
        body = self._get("/v3/carbon-intensity/forecast", provider_zone)
        points = body.get("forecast")
        if not isinstance(points, list):
            raise ProviderError(Reason.MALFORMED, "electricitymaps forecast: no 'forecast' list")
        top_zone = body.get("zone")
        return [self._reading(p, zone, provider_zone, "forecast", top_zone) for p in points]

    def history(self, zone: str, provider_zone: str) -> Sequence[IntensityReading]:
        body = self._get("/v3/carbon-intensity/history", provider_zone)
        points = body.get("history")
        if not isinstance(points, list):
            raise ProviderError(Reason.MALFORMED, "electricitymaps history: no 'history' list")
        top_zone = body.get("zone")
        return [self._reading(p, zone, provider_zone, None, top_zone) for p in points]
