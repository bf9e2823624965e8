"""UK National Grid ESO / NESO Carbon Intensity API (https://api.carbonintensity.org.uk), public,
no credentials, half-hourly, Great Britain only.

Provider zone ``"national"`` (or ``"GB"``):
- ``GET /intensity`` -> ``{"data": [{"from": "2018-01-20T12:00Z", "to": "2018-01-20T12:30Z",
  "intensity": {"forecast": 266, "actual": 263, "index": "moderate"}}]}``;
  ``actual`` (measured) when present, else ``forecast`` (estimated).
- ``GET /intensity/{from}/fw24h`` -> the same shape, 48 half-hours ahead.

Provider zone = a region id (``"1"``..``"17"``, e.g. 13 London):
- ``GET /regional/regionid/{id}`` -> ``{"data": [{"regionid": 13, "dnoregion": "UKPN London",
  "shortname": "London", "data": [{"from": ..., "to": ..., "intensity": {"forecast": 187,
  "index": "moderate"}, "generationmix": [...]}]}]}``; regional values are forecast-only, so the
  reading is ``estimated``.
- ``GET /regional/intensity/{from}/fw24h/regionid/{id}`` -> ``{"data": {"regionid": 13, ...,
  "data": [...]}}`` (an object here, a list above: both are accepted).

Values are operational (generation) emissions, gCO2/kWh, comparable to Electricity Maps "direct",
not to its default lifecycle figures.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Sequence

from ..http import SafeHttpClient, check_status
from .base import IntensityReading, Kind, ProviderError, Reason, as_number, parse_timestamp, utcnow

NATIONAL = ("national", "GB")


class UKGridProvider:
    def __init__(self, name: str, endpoint: str, http: SafeHttpClient, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.name = name
        self.endpoint = endpoint.rstrip("/")
        self.http = http
        self._clock = clock

    def _get(self, path: str) -> Any:
        resp = self.http.get(f"{self.endpoint}{path}", headers={"Accept": "application/json"})
        check_status(resp, f"ukgrid {path.split('/')[1]}", self._clock())
        body = resp.json()
        if not isinstance(body, dict) or "data" not in body:
            raise ProviderError(Reason.MALFORMED, f"ukgrid {path}: no 'data'")
        return body["data"]

    def _period(self, item: Any, zone: str, answered_zone: str, kind: Kind | None) -> IntensityReading:
        if not isinstance(item, dict) or not isinstance(item.get("intensity"), dict):
            raise ProviderError(Reason.MALFORMED, "ukgrid: period lacks 'intensity'")
        intensity = item["intensity"]
        actual = intensity.get("actual")
        if kind is None:
            kind = "measured" if actual is not None else "estimated"
        raw = actual if (actual is not None and kind == "measured") else intensity.get("forecast")
        if raw is None:
            raise ProviderError(Reason.NO_DATA, "ukgrid: period has neither actual nor forecast")
        return IntensityReading(
            value=as_number(raw, "intensity"),
            zone=zone,
            source=self.name,
            timestamp=parse_timestamp(item.get("from")),
            kind=kind,
            provider_zone=answered_zone,
            fetched_at=self._clock(),
            detail=f"index {intensity.get('index', '?')}",
        )

    def _regional(self, data: Any, zone: str, provider_zone: str, kind: Kind | None) -> list[IntensityReading]:
        region = data[0] if isinstance(data, list) and data else data
        if not isinstance(region, dict) or not isinstance(region.get("data"), list):
            raise ProviderError(Reason.MALFORMED, "ukgrid regional: unexpected shape")
        rid = str(region.get("regionid"))
        our_zone = zone if rid == provider_zone else f"ukgrid-region-{rid}"
        if not region["data"]:
            raise ProviderError(Reason.NO_DATA, f"ukgrid: no periods for region {provider_zone}")
        return [self._period(p, our_zone, rid, kind or "estimated") for p in region["data"]]

    def latest(self, zone: str, provider_zone: str) -> IntensityReading:
        if provider_zone in NATIONAL:
            data = self._get("/intensity")
            if not isinstance(data, list) or not data:
                raise ProviderError(Reason.MALFORMED, "ukgrid /intensity: empty data")
            return self._period(data[0], zone, "national", None)
        if not provider_zone.isdigit():
            raise ProviderError(Reason.MISCONFIGURED, f"ukgrid zone must be 'national' or a region id, not {provider_zone!r}")
        return self._regional(self._get(f"/regional/regionid/{provider_zone}"), zone, provider_zone, None)[0]

    def forecast(self, zone: str, provider_zone: str) -> Sequence[IntensityReading]:
        start = self._clock().strftime("%Y-%m-%dT%H:%MZ")
        if provider_zone in NATIONAL:
            data = self._get(f"/intensity/{start}/fw24h")
            if not isinstance(data, list):
                raise ProviderError(Reason.MALFORMED, "ukgrid fw24h: data is not a list")
            return [self._period(p, zone, "national", "forecast") for p in data]
        return self._regional(self._get(f"/regional/intensity/{start}/fw24h/regionid/{provider_zone}"), zone, provider_zone, "forecast")
