"""A local server speaking the Electricity Maps v3 API, replaying the recorded 2022 series.

Endpoints (``auth-token`` header required when a token is set; ``zone`` query parameter;
optional ``emissionFactorType=direct|lifecycle``, default lifecycle):
- ``GET /v3/carbon-intensity/latest``   the current replayed hour;
- ``GET /v3/carbon-intensity/forecast`` the current hour and the next 24 (taken from the record:
  a perfect forecast, which is fine for testing plumbing, not forecast skill);
- ``GET /v3/carbon-intensity/history``  the last 24 hours.

    python -m greenmodel.testing.electricitymaps --speed 0.5 --start 2022-03-07T00:00 --token demo-token
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from .fakeserver import (
    serve_until_interrupted,
    TIME_FAULTS,
    VALUE_FAULTS,
    Answer,
    Fault,
    FakeProviderServer,
    iso_ms,
    shape_value,
    shift_time_seconds,
)
from .replay import GridReplay

PATHS = ("/v3/carbon-intensity/latest", "/v3/carbon-intensity/forecast", "/v3/carbon-intensity/history")


class ElectricityMapsServer(FakeProviderServer):
    name = "electricitymaps"

    def __init__(self, replay: GridReplay | None = None, *, token: str | None = "test-token", **kw) -> None:
        super().__init__(replay, **kw)
        self.token = token

    def _point(self, zone: str, index: int, fault: Fault, eft: str, *, full: bool) -> dict:
        h = self.replay.hour(zone, index)
        value = h.direct if eft == "direct" else h.lifecycle
        if fault.mode in VALUE_FAULTS:
            value = shape_value(value, fault)
        when = self.replay.wall_time_of(index)
        if fault.mode in TIME_FAULTS:
            when = when + timedelta(seconds=shift_time_seconds(fault))
        point = {"carbonIntensity": value, "datetime": iso_ms(when)}
        if full:
            now = iso_ms(self.replay.wall_time_of(self.replay.index()))
            point = {
                "zone": zone,
                **point,
                "updatedAt": now,
                "createdAt": now,
                "emissionFactorType": eft,
                "isEstimated": h.estimated,
                "estimationMethod": "TIME_SLICER_AVERAGE" if h.estimated else None,
            }
        return point

    def route(self, method, path, query, headers, fault):
        if method != "GET" or path not in PATHS:
            raise Answer(404, {"error": f"Not found: {path}"})
        if self.token is not None and headers.get("auth-token") != self.token:
            raise Answer(401, {"error": "Invalid or missing auth-token header"})
        zone = query.get("zone")
        if not zone:
            raise Answer(400, {"error": "Missing zone or lat/lon parameter"})
        if zone not in self.replay.series:
            raise Answer(404, {"error": f"Zone '{zone}' does not exist or is not available"})
        eft = query.get("emissionFactorType", "lifecycle")
        if eft not in ("lifecycle", "direct"):
            raise Answer(400, {"error": f"Invalid emissionFactorType {eft}"})
        if fault.mode == "wrong_zone":
            others = [z for z in self.replay.series if z != zone]
            zone = others[0] if others else "XX"
            if zone == "XX":
                body = self._point(query["zone"], self.replay.index(), fault, eft, full=True)
                body["zone"] = "XX"
                return 200, body
        i = self.replay.index()
        if path.endswith("/latest"):
            return 200, self._point(zone, i, fault, eft, full=True)
        if path.endswith("/forecast"):
            pts = [self._point(zone, j, fault, eft, full=False) for j in range(i, i + 25)]
            return 200, {"zone": zone, "forecast": pts, "updatedAt": iso_ms(self.replay.wall_time_of(i))}
        pts = [self._point(zone, j, fault, eft, full=True) for j in range(i - 23, i + 1)]
        return 200, {"zone": zone, "history": pts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m greenmodel.testing.electricitymaps", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--zones", default="GB,DE,FR,PL")
    p.add_argument("--start", default="2022-01-01T00:00", help="2022 hour to start the replay at")
    p.add_argument("--speed", type=float, default=1 / 3600, help="grid hours per wall second (1/3600 = real time)")
    p.add_argument("--token", default="test-token", help="required auth-token ('' for none)")
    a = p.parse_args(argv)
    replay = GridReplay(a.zones.split(","), start=a.start, hours_per_second=a.speed)
    srv = ElectricityMapsServer(replay, token=a.token or None, port=a.port).start()
    return serve_until_interrupted(srv)


if __name__ == "__main__":
    sys.exit(main())
