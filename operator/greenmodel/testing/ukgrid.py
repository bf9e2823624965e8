"""A local server speaking the UK Carbon Intensity API (api.carbonintensity.org.uk), replaying the
recorded 2022 GB series (direct/operational intensity, which is what that API reports).

- ``GET /intensity`` -> the current half-hour ``{from, to, intensity: {forecast, actual, index}}``;
- ``GET /intensity/{from}/fw24h`` -> 48 half-hours from ``from`` (``actual`` null);
- ``GET /regional/regionid/{id}`` -> ``{"data": [{"regionid", "dnoregion", "shortname", "data": [...]}]}``;
- ``GET /regional/intensity/{from}/fw24h/regionid/{id}`` -> ``{"data": {"regionid", ..., "data": [...]}}``.

Our record has no regional split, so every region serves the national value (stated, not hidden).
The index bands are approximate (NESO's published bands change by year).

    python -m greenmodel.testing.ukgrid --speed 0.5
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from datetime import datetime, timedelta, timezone

from .fakeserver import TIME_FAULTS, VALUE_FAULTS, Answer, FakeProviderServer, shape_value, shift_time_seconds, serve_until_interrupted
from .replay import GridReplay

REGIONS = {
    1: ("SSE North Scotland", "North Scotland"), 2: ("SP Distribution", "South Scotland"),
    3: ("Electricity North West", "North West England"), 4: ("NPG North East", "North East England"),
    5: ("NPG Yorkshire", "Yorkshire"), 6: ("SP Manweb", "North Wales & Merseyside"),
    7: ("WPD South Wales", "South Wales"), 8: ("WPD West Midlands", "West Midlands"),
    9: ("WPD East Midlands", "East Midlands"), 10: ("UKPN East", "East England"),
    11: ("WPD South West", "South West England"), 12: ("SSE South", "South England"),
    13: ("UKPN London", "London"), 14: ("UKPN South East", "South East England"),
    15: ("England", "England"), 16: ("Scotland", "Scotland"), 17: ("Wales", "Wales"),
}


def index_band(v: float) -> str:
    if not math.isfinite(v):
        return "moderate"
    for limit, name in ((40, "very low"), (120, "low"), (200, "moderate"), (290, "high")):
        if v < limit:
            return name
    return "very high"


def _fmt(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


class UKGridServer(FakeProviderServer):
    name = "ukgrid"

    def __init__(self, replay: GridReplay | None = None, **kw) -> None:
        super().__init__(replay or GridReplay(["GB"]), **kw)

    def zone_of(self, path, query):
        m = re.search(r"regionid/(\d+)$", path)
        return m.group(1) if m else "national"

    def _half_hours(self):
        sph = self.replay.seconds_per_hour()
        i = self.replay.index()
        into = 0.0 if math.isinf(sph) else (datetime.now(timezone.utc) - self.replay.wall_time_of(i)).total_seconds()
        return i * 2 + (1 if not math.isinf(sph) and into >= sph / 2 else 0)

    def _period(self, k: int, fault, *, actual: bool) -> dict:
        hour, half = divmod(k, 2)
        sph = self.replay.seconds_per_hour()
        start = self.replay.wall_time_of(hour) + timedelta(seconds=0 if math.isinf(sph) else half * sph / 2)
        end = start + timedelta(seconds=1800 if math.isinf(sph) else sph / 2)
        value = self.replay.hour("GB", hour).direct
        if fault.mode in VALUE_FAULTS:
            value = shape_value(value, fault)
        if fault.mode in TIME_FAULTS:
            shift = timedelta(seconds=shift_time_seconds(fault))
            start, end = start + shift, end + shift
        v = round(value) if math.isfinite(value) else value
        return {"from": _fmt(start), "to": _fmt(end),
                "intensity": {"forecast": v, "actual": v if actual else None, "index": index_band(value)}}

    def route(self, method, path, query, headers, fault):
        if method != "GET":
            raise Answer(405, {"error": {"code": "405", "message": "Method not allowed"}})
        k = self._half_hours()
        if path == "/intensity":
            return 200, {"data": [self._period(k, fault, actual=True)]}
        m = re.fullmatch(r"/intensity/([^/]+)/fw24h", path)
        if m:
            return 200, {"data": [{**p} for p in (self._period(j, fault, actual=False) for j in range(k, k + 48))]}
        m = re.fullmatch(r"/regional/regionid/(\d+)", path) or re.fullmatch(r"/regional/intensity/[^/]+/fw24h/regionid/(\d+)", path)
        if m:
            rid = int(m.group(1))
            if rid not in REGIONS:
                raise Answer(400, {"error": {"code": "400 Bad Request", "message": "Please enter a valid region id"}})
            answered = (rid % 17) + 1 if fault.mode == "wrong_zone" else rid
            fw = "fw24h" in path
            periods = [self._period(j, fault, actual=False) for j in (range(k, k + 48) if fw else [k])]
            for p in periods:
                p["generationmix"] = []
            region = {"regionid": answered, "dnoregion": REGIONS[answered][0], "shortname": REGIONS[answered][1], "data": periods}
            return 200, {"data": region if fw else [region]}
        raise Answer(400, {"error": {"code": "400 Bad Request", "message": "Invalid route"}})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m greenmodel.testing.ukgrid")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--start", default="2022-01-01T00:00")
    p.add_argument("--speed", type=float, default=1 / 3600)
    a = p.parse_args(argv)
    srv = UKGridServer(GridReplay(["GB"], start=a.start, hours_per_second=a.speed), port=a.port).start()
    return serve_until_interrupted(srv)


if __name__ == "__main__":
    sys.exit(main())
