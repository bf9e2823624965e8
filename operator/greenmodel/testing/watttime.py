"""A local server speaking the WattTime v3 API, replaying the recorded 2022 series.

- ``GET /login`` (HTTP Basic) -> ``{"token": ...}``; tokens expire after ``token_ttl`` seconds.
- ``GET /v3/forecast?region=&signal_type=co2_moer[&horizon_hours=0..72]`` -> 5-minute points from
  the current period, ``units: lbs_co2_per_mwh``.
- ``GET /v3/historical?region=&signal_type=co2_moer&start=&end=`` -> 5-minute points in [start, end].
- ``GET /v3/signal-index?region=&signal_type=co2_moer`` -> percentile of the current value within the
  next 24 hours.

The values are the record's *direct* (combustion) average intensity converted to lbs/MWh: we have no
marginal-emissions record for these zones, so this tests the wire format and plumbing, not MOER
semantics. Regions: ``UK``->GB, ``DE``, ``FR``, ``PL`` (configurable).

    python -m greenmodel.testing.watttime --user u --password p
"""

from __future__ import annotations

import argparse
import base64
import math
import secrets
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from .fakeserver import TIME_FAULTS, VALUE_FAULTS, Answer, FakeProviderServer, shape_value, shift_time_seconds, serve_until_interrupted
from .replay import GridReplay

LBS_PER_G_PER_KWH = 1 / 0.45359237
DEFAULT_REGIONS = {"UK": "GB", "DE": "DE", "FR": "FR", "PL": "PL"}


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="seconds")


class WattTimeServer(FakeProviderServer):
    name = "watttime"

    def __init__(self, replay: GridReplay | None = None, *, username: str = "user", password: str = "pass",
                 regions: dict[str, str] | None = None, token_ttl: float = 1800.0, **kw) -> None:
        super().__init__(replay, **kw)
        self.username, self.password = username, password
        self.regions = dict(regions or DEFAULT_REGIONS)
        self.token_ttl = token_ttl
        self._tokens: dict[str, float] = {}
        self._tlock = threading.Lock()

    def zone_of(self, path, query):
        return self.regions.get(query.get("region", ""), query.get("region"))

    def expire_tokens(self) -> None:
        with self._tlock:
            self._tokens.clear()

    def _slot(self, k: int) -> tuple[float, datetime]:
        """Value (g/kWh direct) and wall time of 5-minute period k (12 per grid hour)."""
        hour, part = divmod(k, 12)
        start = self.replay.wall_time_of(hour)
        sph = self.replay.seconds_per_hour()
        when = start + timedelta(seconds=0 if math.isinf(sph) else part * sph / 12)
        return hour, when

    def _current_slot(self) -> int:
        i = self.replay.index()
        sph = self.replay.seconds_per_hour()
        if math.isinf(sph):
            return i * 12
        into = (datetime.now(timezone.utc) - self.replay.wall_time_of(i)).total_seconds()
        return i * 12 + max(0, min(11, int(into / (sph / 12))))

    def _points(self, zone: str, slots, fault) -> list[dict]:
        out = []
        for k in slots:
            hour, when = self._slot(k)
            value = self.replay.hour(zone, hour).direct * LBS_PER_G_PER_KWH
            if fault.mode in VALUE_FAULTS:
                value = shape_value(value, fault)
            if fault.mode in TIME_FAULTS:
                when += timedelta(seconds=shift_time_seconds(fault))
            out.append({"point_time": _iso(when), "value": round(value, 1) if math.isfinite(value) else value})
        return out

    def _meta(self, region: str, units: str) -> dict:
        return {
            "data_point_period_seconds": 300,
            "region": region,
            "signal_type": "co2_moer",
            "units": units,
            "warnings": [],
            "model": {"date": "2022-10-01"},
            "generated_at_period_seconds": 300,
            "generated_at": _iso(datetime.now(timezone.utc)),
        }

    def route(self, method, path, query, headers, fault):
        if method != "GET":
            raise Answer(405, {"error": "method not allowed"})
        if path == "/login":
            auth = headers.get("Authorization", "")
            try:
                user, _, pw = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
            except ValueError:
                user, pw = "", ""
            if not auth.startswith("Basic ") or (user, pw) != (self.username, self.password):
                raise Answer(403, {"error": "failed to log in, double check your credentials"})
            token = secrets.token_urlsafe(24)
            with self._tlock:
                self._tokens[token] = time.time() + self.token_ttl
            return 200, {"token": token}
        if path not in ("/v3/forecast", "/v3/historical", "/v3/signal-index"):
            raise Answer(404, {"error": "Not Found"})
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        with self._tlock:
            valid = self._tokens.get(token, 0) > time.time()
        if not valid:
            raise Answer(401, {"error": "Unauthorized"})
        region = query.get("region")
        if query.get("signal_type") != "co2_moer":
            raise Answer(400, {"error": "signal_type must be co2_moer"})
        if region not in self.regions:
            raise Answer(400, {"error": f"Unknown region {region}"})
        zone = self.regions[region]
        answered = region
        if fault.mode == "wrong_zone":
            answered = next((r for r in self.regions if r != region), "CAISO_NORTH")
        k = self._current_slot()
        if path == "/v3/forecast":
            try:
                horizon = int(query.get("horizon_hours", 24))
            except ValueError:
                raise Answer(400, {"error": "horizon_hours must be an integer"}) from None
            if not 0 <= horizon <= 72:
                raise Answer(400, {"error": "horizon_hours must be within 0..72"})
            n = max(1, horizon * 12)
            return 200, {"data": self._points(zone, range(k, k + n), fault), "meta": self._meta(answered, "lbs_co2_per_mwh")}
        if path == "/v3/historical":
            pts = self._points(zone, range(k - 12 * 24, k + 1), fault)
            start, end = query.get("start"), query.get("end")
            if start and end:
                pts = [p for p in pts if start <= p["point_time"] <= end]
            return 200, {"data": pts, "meta": self._meta(answered, "lbs_co2_per_mwh")}
        window = [self.replay.hour(zone, self._slot(j)[0]).direct for j in range(k, k + 288)]
        cur = window[0]
        pct = 100.0 * sum(1 for v in window if v < cur) / len(window)
        if fault.mode in VALUE_FAULTS:
            pct = shape_value(pct, fault)
        return 200, {"data": [{"point_time": _iso(self._slot(k)[1]), "value": pct}], "meta": self._meta(answered, "percentile")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m greenmodel.testing.watttime")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--start", default="2022-01-01T00:00")
    p.add_argument("--speed", type=float, default=1 / 3600, help="grid hours per wall second")
    p.add_argument("--user", default="user")
    p.add_argument("--password", default="pass")
    a = p.parse_args(argv)
    srv = WattTimeServer(GridReplay(start=a.start, hours_per_second=a.speed), username=a.user, password=a.password, port=a.port).start()
    return serve_until_interrupted(srv)


if __name__ == "__main__":
    sys.exit(main())
