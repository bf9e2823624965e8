"""WattTime API v3 (https://api.watttime.org): marginal operating emissions rate (``co2_moer``).

- ``GET /login`` with HTTP Basic auth -> ``{"token": "<JWT>"}``, valid 30 minutes (we renew after
  25, and once more on a 401).
- ``GET /v3/forecast?region=<R>&signal_type=co2_moer[&horizon_hours=<h>]`` with
  ``Authorization: Bearer <token>`` ->
  ``{"data": [{"point_time": "2022-07-15T00:00:00+00:00", "value": 870.0}, ...],
  "meta": {"region": "CAISO_NORTH", "signal_type": "co2_moer", "units": "lbs_co2_per_mwh",
  "data_point_period_seconds": 300, "generated_at": "...", "model": {"date": "..."}, "warnings": []}}``.
  The first point is the current 5-minute period: we use ``horizon_hours=0`` for the latest value
  and 24 for the forecast.
- ``GET /v3/signal-index?region=<R>&signal_type=co2_moer`` -> the current value as a percentile
  (``meta.units == "percentile"``): exposed by ``signal_index`` for display, never used as grams.

Units: lbs/MWh x 0.45359237 = kg/MWh = g/kWh. Note MOER is *marginal*, not the average intensity
Electricity Maps reports: mixing providers in one chain mixes the two meanings (docs/signals.md).
Rate limit (WattTime docs): 3,000 requests per rolling 5 minutes, /login 100 per 5 minutes.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from ..http import SafeHttpClient, check_status
from .base import IntensityReading, Kind, ProviderError, Reason, as_number, parse_timestamp, utcnow

LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
TOKEN_LIFETIME = timedelta(minutes=25)  # WattTime tokens are valid for 30 minutes


class WattTimeProvider:
    def __init__(
        self,
        name: str,
        endpoint: str,
        http: SafeHttpClient,
        *,
        username: Callable[[], str] | None,
        password: Callable[[], str] | None,
        signal_type: str = "co2_moer",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.name = name
        self.endpoint = endpoint.rstrip("/")
        self.http = http
        self._username = username
        self._password = password
        self.signal_type = signal_type
        self._clock = clock
        self._token: str | None = None
        self._token_until: datetime | None = None
        self._lock = threading.Lock()
        self.logins = 0

    # ------------------------------------------------------------------ auth
    def _login(self) -> str:
        if self._username is None or self._password is None:
            raise ProviderError(Reason.MISCONFIGURED, "watttime: no credentials configured")
        resp = self.http.get(f"{self.endpoint}/login", auth=(self._username(), self._password()))
        check_status(resp, "watttime /login", self._clock())
        body = resp.json()
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderError(Reason.UNAUTHORIZED, "watttime /login returned no token")
        self.logins += 1
        self._token = token
        self._token_until = self._clock() + TOKEN_LIFETIME
        return token

    def _token_now(self, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or self._token_until is None or self._clock() >= self._token_until:
                return self._login()
            return self._token

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        for attempt in (0, 1):
            token = self._token_now(renew=attempt == 1)
            resp = self.http.get(f"{self.endpoint}{path}", params=params, headers={"Authorization": f"Bearer {token}"})
            if resp.status == 401 and attempt == 0:
                continue  # token expired early: log in again once
            check_status(resp, f"watttime {path}", self._clock())
            body = resp.json()
            if not isinstance(body, dict):
                raise ProviderError(Reason.MALFORMED, f"watttime {path}: top level is not an object")
            return body
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ parsing
    def _points(self, body: dict, zone: str, provider_zone: str, kind: Kind) -> list[IntensityReading]:
        meta = body.get("meta")
        data = body.get("data")
        if not isinstance(meta, dict) or not isinstance(data, list):
            raise ProviderError(Reason.MALFORMED, "watttime: answer lacks 'meta' or 'data'")
        units = meta.get("units")
        if units == "lbs_co2_per_mwh":
            factor = LBS_PER_MWH_TO_G_PER_KWH
        elif units in ("kg_co2_per_mwh", "g_co2_per_kwh"):
            factor = 1.0
        else:
            raise ProviderError(Reason.MALFORMED, f"watttime: unexpected units {units!r}")
        region = meta.get("region")
        if not isinstance(region, str):
            raise ProviderError(Reason.MALFORMED, "watttime: meta.region missing")
        if not data:
            raise ProviderError(Reason.NO_DATA, f"watttime: no data points for {provider_zone}")
        out = []
        for p in data:
            if not isinstance(p, dict):
                raise ProviderError(Reason.MALFORMED, "watttime: data point is not an object")
            out.append(
                IntensityReading(
                    value=as_number(p.get("value"), "value") * factor,
                    zone=zone if region == provider_zone else region,
                    source=self.name,
                    timestamp=parse_timestamp(p.get("point_time")),
                    kind=kind,
                    provider_zone=region,
                    fetched_at=self._clock(),
                    detail=f"{meta.get('signal_type', self.signal_type)} (marginal)",
                )
            )
        return out

    # ------------------------------------------------------------------ provider API
    def latest(self, zone: str, provider_zone: str) -> IntensityReading:
        body = self._get("/v3/forecast", {"region": provider_zone, "signal_type": self.signal_type, "horizon_hours": 0})
        return self._points(body, zone, provider_zone, "estimated")[0]

    def forecast(self, zone: str, provider_zone: str) -> Sequence[IntensityReading]:
        body = self._get("/v3/forecast", {"region": provider_zone, "signal_type": self.signal_type, "horizon_hours": 24})
        return self._points(body, zone, provider_zone, "forecast")

    def signal_index(self, provider_zone: str) -> float:
        """Current MOER as a percentile (0-100) of WattTime's reference window."""
        body = self._get("/v3/signal-index", {"region": provider_zone, "signal_type": self.signal_type})
        data = body.get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            raise ProviderError(Reason.MALFORMED, "watttime signal-index: no data")
        if (body.get("meta") or {}).get("units") != "percentile":
            raise ProviderError(Reason.MALFORMED, "watttime signal-index: units are not percentile")
        return as_number(data[0].get("value"), "value")
