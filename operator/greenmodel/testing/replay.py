"""Replay the recorded 2022 hourly grid intensity (Electricity Maps, ODbL) at any speed.

Grid hour ``i`` of the record is "now" from wall time ``t0 + (i - start_index) / hours_per_second``
onwards. Readings are stamped with the *wall* time at which their grid hour began, so a consumer
that checks freshness (as the operator does) sees live-looking data, while the values follow the
real record. ``hours_per_second = 1/3600`` is real time; the demo uses 0.5 (one grid hour every 2 s).
The record wraps around at the end of 2022.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Callable, Iterable

RECORD_START = datetime(2022, 1, 1, tzinfo=timezone.utc)
HOURS = 8760


@dataclass(frozen=True)
class GridHour:
    zone: str
    hour: datetime  # start of the hour in 2022 (UTC)
    lifecycle: float  # gCO2eq/kWh, LCA (Electricity Maps API default)
    direct: float  # gCO2eq/kWh, combustion only
    estimated: bool


def load_series(zone: str) -> list[GridHour]:
    """The packaged 2022 hourly series for one zone (GB, DE, FR or PL)."""
    name = f"electricitymaps-2022-{zone}.csv.gz"
    ref = resources.files("greenmodel").joinpath("data", "grid", name)
    try:
        raw = ref.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"no recorded series for zone {zone!r} (have GB, DE, FR, PL)") from None
    text = gzip.decompress(raw).decode("utf-8")
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        out.append(
            GridHour(
                zone=row["zone"],
                hour=datetime.fromisoformat(row["datetime_utc"].replace("Z", "+00:00")),
                lifecycle=float(row["lifecycle_g_per_kwh"]),
                direct=float(row["direct_g_per_kwh"]),
                estimated=row["estimated"] == "1",
            )
        )
    if len(out) != HOURS:
        raise ValueError(f"series for {zone} has {len(out)} hours, expected {HOURS}")
    return out


def parse_start(start: str | datetime | None) -> int:
    """Index of the 2022 hour to start from ("2022-03-07T00:00", a datetime, or None for Jan 1)."""
    if start is None:
        return 0
    if isinstance(start, str):
        s = start.strip().replace("Z", "+00:00")
        dt = datetime.fromisoformat(s)
    else:
        dt = start
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    idx = int((dt - RECORD_START).total_seconds() // 3600)
    if not 0 <= idx < HOURS:
        raise ValueError(f"start {start} is outside 2022")
    return idx


class GridReplay:
    def __init__(
        self,
        zones: Iterable[str] = ("GB", "DE", "FR", "PL"),
        *,
        start: str | datetime | None = None,
        hours_per_second: float = 1 / 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if hours_per_second < 0:
            raise ValueError("hours_per_second must be >= 0")
        self.series = {z: load_series(z) for z in zones}
        self.start_index = parse_start(start)
        self.hours_per_second = hours_per_second
        self._clock = clock
        self._lock = threading.Lock()
        self.t0 = clock()

    def set_speed(self, hours_per_second: float) -> None:
        """Change speed without jumping: the current grid hour stays current."""
        with self._lock:
            idx = self._index_unlocked(self._clock())
            self.start_index = idx
            self.t0 = self._clock()
            self.hours_per_second = hours_per_second

    def jump_to(self, start: str | datetime) -> None:
        with self._lock:
            self.start_index = parse_start(start)
            self.t0 = self._clock()

    def _index_unlocked(self, now: float) -> int:
        return self.start_index + int(math.floor((now - self.t0) * self.hours_per_second))

    def index(self, now: float | None = None) -> int:
        """Absolute (unwrapped) index of the current grid hour."""
        with self._lock:
            return self._index_unlocked(self._clock() if now is None else now)

    def wall_time_of(self, index: int) -> datetime:
        """Wall-clock time at which grid hour ``index`` began (or will begin)."""
        with self._lock:
            if self.hours_per_second == 0:
                return datetime.fromtimestamp(self.t0, timezone.utc)
            secs = self.t0 + (index - self.start_index) / self.hours_per_second
        return datetime.fromtimestamp(secs, timezone.utc)

    def hour(self, zone: str, index: int) -> GridHour:
        return self.series[zone][index % HOURS]

    def grid_time(self, now: float | None = None) -> datetime:
        """The 2022 hour being replayed now."""
        return RECORD_START + timedelta(hours=self.index(now) % HOURS)

    def value(self, zone: str, index: int | None = None, emission_factor_type: str = "lifecycle") -> float:
        h = self.hour(zone, self.index() if index is None else index)
        return h.direct if emission_factor_type == "direct" else h.lifecycle

    def seconds_per_hour(self) -> float:
        return math.inf if self.hours_per_second == 0 else 1.0 / self.hours_per_second
