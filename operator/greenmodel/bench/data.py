"""Loaders for the benchmark's input files, and stretching of a one-hour trace over days.

Formats (see ../shared/data/README.md):

* Electricity Maps hourly export: ``Datetime (UTC), Country, Zone Name, Zone Id,
  Carbon Intensity gCO₂eq/kWh (direct), Carbon Intensity gCO₂eq/kWh (LCA), ...,
  Data Estimated, ...``. One file per zone; the ``Zone Id`` names the region; intensity is the
  *direct* (operational, location-based) column, the one Scope 2 uses.
* Azure LLM inference trace: ``TIMESTAMP, ContextTokens, GeneratedTokens``.
* Hourly load shape: ``,cpu_load`` (index, normalised load 0..1), one row per hour of a year.

Every loader accepts a path or an open text file, so unit tests parse strings without I/O.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Sequence

import numpy as np

HOUR = timedelta(hours=1)

_DIRECT_PREFIX = "carbon intensity gco"  # "Carbon Intensity gCO₂eq/kWh (direct)"


class DataError(ValueError):
    """A benchmark input file is malformed; the message names the file and the row."""


def _open(src: str | os.PathLike | IO[str]) -> tuple[IO[str], str, bool]:
    if isinstance(src, (str, os.PathLike)):
        return open(src, newline="", encoding="utf-8-sig"), str(src), True
    return src, getattr(src, "name", "<stream>"), False


@dataclass(frozen=True)
class IntensitySeries:
    """Hourly grid intensity of one zone."""

    zone: str  # Zone Id, used as the candidate region's name
    zone_name: str
    start: datetime  # UTC, first hour
    values: np.ndarray  # gCO2e/kWh (direct), one per hour
    estimated: np.ndarray  # bool per hour: the value is Electricity Maps' estimate
    source: str  # e.g. "electricitymaps-export:entsoe.eu"

    @property
    def hours(self) -> int:
        return len(self.values)

    def time(self, i: int) -> datetime:
        return self.start + i * HOUR


def _parse_utc(text: str, where: str) -> datetime:
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"{where}: cannot parse datetime {text!r}") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def load_intensity(src: str | os.PathLike | IO[str]) -> IntensitySeries:
    """Parse one Electricity Maps hourly export. Hours must be contiguous; gaps are an error.

    A missing direct value in an otherwise contiguous file is filled with the previous hour's
    value (forward fill) and counted as estimated; a file that starts with a missing value is an
    error, since there is nothing honest to fill it with.
    """
    fh, name, close = _open(src)
    try:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{name}: empty file") from None
        cols = [h.strip() for h in header]
        low = [c.lower() for c in cols]

        def col(pred, label):
            for i, c in enumerate(low):
                if pred(c):
                    return i
            raise DataError(f"{name}: no {label} column in header {cols}")

        i_dt = col(lambda c: c.startswith("datetime"), "'Datetime (UTC)'")
        i_zone = col(lambda c: c == "zone id", "'Zone Id'")
        i_zname = next((i for i, c in enumerate(low) if c == "zone name"), None)
        i_direct = col(lambda c: c.startswith(_DIRECT_PREFIX) and "(direct)" in c, "'Carbon Intensity ... (direct)'")
        i_est = next((i for i, c in enumerate(low) if c == "data estimated"), None)
        i_src = next((i for i, c in enumerate(low) if c == "data source"), None)

        times: list[datetime] = []
        values: list[float] = []
        est: list[bool] = []
        zone = None
        zname = ""
        sources: dict[str, int] = {}
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{name}:{lineno}"
            if len(row) <= max(i_dt, i_zone, i_direct):
                raise DataError(f"{where}: expected at least {max(i_dt, i_zone, i_direct) + 1} columns, got {len(row)}")
            z = row[i_zone].strip()
            if zone is None:
                zone = z
                zname = row[i_zname].strip() if i_zname is not None else z
            elif z != zone:
                raise DataError(f"{where}: Zone Id {z!r} differs from {zone!r}; one zone per file")
            t = _parse_utc(row[i_dt], where)
            if times and t != times[-1] + HOUR:
                raise DataError(f"{where}: expected hour {(times[-1] + HOUR).isoformat()}, got {t.isoformat()} (gap or duplicate)")
            raw = row[i_direct].strip()
            flagged = i_est is not None and len(row) > i_est and row[i_est].strip().lower() == "true"
            if raw == "":
                if not values:
                    raise DataError(f"{where}: first hour has no direct intensity")
                v = values[-1]
                flagged = True
            else:
                try:
                    v = float(raw)
                except ValueError:
                    raise DataError(f"{where}: direct intensity {raw!r} is not a number") from None
                if not math.isfinite(v) or v < 0 or v > 3000:
                    raise DataError(f"{where}: direct intensity {v} outside 0..3000 gCO2e/kWh")
            if i_src is not None and len(row) > i_src and row[i_src].strip():
                s = row[i_src].strip()
                sources[s] = sources.get(s, 0) + 1
            times.append(t)
            values.append(v)
            est.append(flagged)
        if not times:
            raise DataError(f"{name}: no data rows")
        main_source = max(sources, key=sources.get) if sources else "unknown"
        return IntensitySeries(
            zone=zone or "",
            zone_name=zname,
            start=times[0],
            values=np.asarray(values, dtype=float),
            estimated=np.asarray(est, dtype=bool),
            source=f"electricitymaps-export:{main_source}",
        )
    finally:
        if close:
            fh.close()


def align(series: Sequence[IntensitySeries]) -> tuple[datetime, int]:
    """The common hourly window of several zones: (start, hours). Errors if zones repeat or don't overlap."""
    if not series:
        raise DataError("at least one intensity file is needed")
    zones = [s.zone for s in series]
    dup = {z for z in zones if zones.count(z) > 1}
    if dup:
        raise DataError(f"zone(s) {sorted(dup)} given more than once")
    start = max(s.start for s in series)
    end = min(s.start + s.hours * HOUR for s in series)
    hours = int((end - start) / HOUR)
    if hours <= 0:
        raise DataError("the intensity files do not overlap in time")
    return start, hours


def window(s: IntensitySeries, start: datetime, hours: int) -> np.ndarray:
    off = int((start - s.start) / HOUR)
    if off < 0 or off + hours > s.hours:
        raise DataError(f"{s.zone}: window {start.isoformat()} +{hours}h outside the file")
    return s.values[off : off + hours]


@dataclass(frozen=True)
class Trace:
    """A request trace: arrival offsets (s from the first request) and token counts."""

    offsets_s: np.ndarray
    context_tokens: np.ndarray
    generated_tokens: np.ndarray
    start: datetime

    @property
    def requests(self) -> int:
        return len(self.offsets_s)

    @property
    def duration_s(self) -> float:
        # Arrivals span [first, last]; the trace is a sample of a process, so add one mean gap.
        if self.requests < 2:
            return 3600.0
        span = float(self.offsets_s[-1] - self.offsets_s[0])
        return span + span / (self.requests - 1)

    @property
    def output_tokens(self) -> int:
        return int(self.generated_tokens.sum())

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.duration_s

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    def minute_profile(self, window_s: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
        """Per ``window_s`` bin: (output-token rate / mean rate, share of the requests)."""
        bins = max(1, int(math.ceil(self.duration_s / window_s)))
        idx = np.minimum((self.offsets_s / window_s).astype(int), bins - 1)
        tok = np.bincount(idx, weights=self.generated_tokens, minlength=bins)
        req = np.bincount(idx, minlength=bins).astype(float)
        mean = tok.sum() / bins
        mult = tok / mean if mean > 0 else np.ones(bins)
        return mult, req / req.sum()

    def peak_factor(self, window_s: float = 60.0) -> float:
        """Peak output-token rate over ``window_s`` windows divided by the mean rate (>= 1)."""
        if self.requests < 2:
            return 1.0
        bins = max(1, int(math.ceil(self.duration_s / window_s)))
        idx = np.minimum((self.offsets_s / window_s).astype(int), bins - 1)
        per_bin = np.bincount(idx, weights=self.generated_tokens, minlength=bins)
        mean = per_bin.sum() / bins
        return float(per_bin.max() / mean) if mean > 0 else 1.0


def load_trace(src: str | os.PathLike | IO[str]) -> Trace:
    fh, name, close = _open(src)
    try:
        reader = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{name}: empty file") from None
        try:
            i_t, i_c, i_g = header.index("timestamp"), header.index("contexttokens"), header.index("generatedtokens")
        except ValueError:
            raise DataError(f"{name}: expected columns TIMESTAMP,ContextTokens,GeneratedTokens, got {header}") from None
        ts: list[datetime] = []
        ctx: list[int] = []
        gen: list[int] = []
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{name}:{lineno}"
            try:
                raw_t = row[i_t].strip()
                # Azure timestamps carry 7 fractional digits; datetime takes at most 6.
                if "." in raw_t:
                    head, frac = raw_t.split(".", 1)
                    raw_t = f"{head}.{frac[:6]}"
                t = datetime.fromisoformat(raw_t)
                c, g = int(row[i_c]), int(row[i_g])
            except (ValueError, IndexError):
                raise DataError(f"{where}: cannot parse row {row!r}") from None
            if c < 0 or g < 0:
                raise DataError(f"{where}: negative token count")
            ts.append(t)
            ctx.append(c)
            gen.append(g)
        if not ts:
            raise DataError(f"{name}: no requests")
        order = np.argsort(np.array([t.timestamp() for t in ts]), kind="stable")
        t0 = ts[int(order[0])]
        offsets = np.array([(ts[i] - t0).total_seconds() for i in order], dtype=float)
        return Trace(
            offsets_s=offsets,
            context_tokens=np.asarray(ctx, dtype=float)[order],
            generated_tokens=np.asarray(gen, dtype=float)[order],
            start=t0.replace(tzinfo=timezone.utc) if t0.tzinfo is None else t0,
        )
    finally:
        if close:
            fh.close()


def load_load_shape(src: str | os.PathLike | IO[str]) -> np.ndarray:
    """The hourly normalised load (``cpu_load`` column), one value per hour."""
    fh, name, close = _open(src)
    try:
        reader = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise DataError(f"{name}: empty file") from None
        if "cpu_load" not in header:
            raise DataError(f"{name}: no cpu_load column in header {header}")
        i = header.index("cpu_load")
        vals = []
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                v = float(row[i])
            except (ValueError, IndexError):
                raise DataError(f"{name}:{lineno}: cpu_load {row!r} is not a number") from None
            if not math.isfinite(v) or v < 0:
                raise DataError(f"{name}:{lineno}: cpu_load {v} must be finite and >= 0")
            vals.append(v)
        if not vals:
            raise DataError(f"{name}: no rows")
        arr = np.asarray(vals, dtype=float)
        if arr.mean() <= 0:
            raise DataError(f"{name}: load shape is all zero")
        return arr
    finally:
        if close:
            fh.close()


def default_load_shape_path(trace_path: str | os.PathLike) -> Path | None:
    """``hourly-load-shape-*.csv`` next to the trace, if there is exactly one such file."""
    found = sorted(Path(trace_path).resolve().parent.glob("hourly-load-shape-*.csv"))
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class HourlyLoad:
    """The workload per simulated hour after stretching."""

    start: datetime
    factor: np.ndarray  # load multiplier vs the trace hour
    output_tokens_per_s: np.ndarray
    requests_per_s: np.ndarray
    mean_context_tokens: float
    mean_output_tokens: float
    peak_factor: float  # within-hour peak minute / mean, from the trace
    minute_multiplier: np.ndarray  # per minute of the trace hour: rate / mean rate
    minute_request_share: np.ndarray  # per minute: share of the hour's requests
    description: str

    @property
    def hours(self) -> int:
        return len(self.factor)

    def output_tokens(self) -> np.ndarray:
        return self.output_tokens_per_s * 3600.0


def stretch(trace: Trace, shape: np.ndarray, start: datetime, hours: int, *, shape_start: datetime | None = None) -> HourlyLoad:
    """Stretch a one-hour trace over ``hours`` with an hourly load shape.

    Hour ``h`` runs the trace's mix (mean context and output tokens per request, within-hour
    burstiness) at ``trace rate x shape[k] / mean(shape)``, where ``k`` is the shape index of that
    hour: the hour of the year counted from ``shape_start`` (default: 1 January 00:00 UTC of the
    start's year), wrapping around the shape's length. So the trace hour counts as an average hour
    and the year-average load equals the trace's load.
    """
    if hours <= 0:
        raise DataError("hours must be > 0")
    base = shape_start or datetime(start.year, 1, 1, tzinfo=timezone.utc)
    k0 = int((start - base) / HOUR)
    idx = (k0 + np.arange(hours)) % len(shape)
    factor = shape[idx] / shape.mean()
    otps = trace.output_tokens_per_s * factor
    rps = trace.requests_per_s * factor
    desc = (
        f"trace of {trace.requests} requests over {trace.duration_s / 60:.1f} min "
        f"({trace.output_tokens_per_s:.0f} output tok/s, {trace.requests_per_s:.2f} req/s, "
        f"mean {trace.context_tokens.mean():.0f} in / {trace.generated_tokens.mean():.0f} out tokens) "
        f"stretched over {hours} h from {start.isoformat()} with the hourly load shape "
        f"(rate x load/mean load; load/mean {factor.min():.2f}..{factor.max():.2f})"
    )
    return HourlyLoad(
        start=start,
        factor=factor,
        output_tokens_per_s=otps,
        requests_per_s=rps,
        mean_context_tokens=float(trace.context_tokens.mean()),
        mean_output_tokens=float(trace.generated_tokens.mean()),
        peak_factor=trace.peak_factor(),
        minute_multiplier=trace.minute_profile()[0],
        minute_request_share=trace.minute_profile()[1],
        description=desc,
    )


def parse_text(text: str) -> IO[str]:
    """Helper for tests and callers holding file contents in memory."""
    return io.StringIO(text)
