"""Emissions accounting: pure maths shared by the operator and the benchmark.

No I/O, no clock: every function takes its inputs explicitly, so the same code reports a
GreenModel's life in the operator and a year of replay in ``greenmodel bench``.

Definitions (see ../shared/data/README.md and the Green Software Foundation SCI spec,
ISO/IEC 21031:2024):

* Scope 2, location-based: ``energy_kwh x PUE x grid intensity (gCO2e/kWh)`` at the hour the
  energy was used. ``energy_kwh`` is the IT energy (GPU energy as DCGM/Kepler measure it, or the
  planner's estimate); PUE lifts it to facility energy.
* Scope 3, embodied share: ``embodied kgCO2e x (hours used / lifetime hours) x (reserved / total)``
  where ``reserved / total`` is the share of one server's resources (GPUs) the workload reserved
  (above 1 when it reserves GPUs on several servers).
* SCI: ``((E x I) + M) / R``. E x I is the operational term (here E is facility energy, i.e. the IT
  energy times PUE, so E x I equals the Scope 2 figure), M the embodied share, R the functional
  unit: one thousand output tokens.

The :class:`EmissionsAccumulator` integrates intervals (for example one reconcile period, or one
simulated hour) and keeps the inputs of every figure so a report can show how it was computed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Literal

from greenmodel.api.v1alpha1 import MAX_DAILY_BUCKETS, DailyEmissions, Emissions, EmissionsInputs, EnergySourceKind

EnergySource = Literal["Measured", "Estimated"]
EnergyLabel = Literal["Measured", "Estimated", "Mixed", "None"]

SECONDS_PER_HOUR = 3600.0
HOURS_PER_YEAR = 8760.0
JOULES_PER_KWH = 3.6e6
TOKENS_PER_SCI_UNIT = 1000.0  # R: one thousand output tokens


def _check_finite_nonneg(name: str, value: float) -> float:
    if value is None or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def joules_to_kwh(joules: float) -> float:
    return _check_finite_nonneg("joules", joules) / JOULES_PER_KWH


def energy_kwh(power_watts: float, seconds: float) -> float:
    """Energy of a constant power draw over ``seconds``."""
    return _check_finite_nonneg("power_watts", power_watts) * _check_finite_nonneg("seconds", seconds) / JOULES_PER_KWH


def scope2_grams(energy_kwh: float, pue: float, intensity_g_per_kwh: float) -> float:
    """Location-based Scope 2 emissions in gCO2e: IT energy x PUE x grid intensity at that hour."""
    _check_finite_nonneg("energy_kwh", energy_kwh)
    if pue is None or not math.isfinite(pue) or pue < 1.0:
        raise ValueError(f"pue must be >= 1.0, got {pue!r}")
    _check_finite_nonneg("intensity_g_per_kwh", intensity_g_per_kwh)
    return energy_kwh * pue * intensity_g_per_kwh


def embodied_grams(
    embodied_kgco2e: float, hours: float, lifetime_hours: float, reserved: float, total: float
) -> float:
    """Scope 3 embodied share in gCO2e: kgCO2e x hours/lifetime x reserved/total x 1000."""
    _check_finite_nonneg("embodied_kgco2e", embodied_kgco2e)
    _check_finite_nonneg("hours", hours)
    _check_finite_nonneg("reserved", reserved)
    if not lifetime_hours or not math.isfinite(lifetime_hours) or lifetime_hours <= 0:
        raise ValueError(f"lifetime_hours must be > 0, got {lifetime_hours!r}")
    if not total or not math.isfinite(total) or total <= 0:
        raise ValueError(f"total resources must be > 0, got {total!r}")
    return embodied_kgco2e * 1000.0 * (hours / lifetime_hours) * (reserved / total)


def sci_per_thousand_tokens(operational_g: float, embodied_g: float, output_tokens: float) -> float | None:
    """SCI = ((E x I) + M) / R with R = 1000 output tokens; None when no tokens were produced."""
    _check_finite_nonneg("operational_g", operational_g)
    _check_finite_nonneg("embodied_g", embodied_g)
    _check_finite_nonneg("output_tokens", output_tokens)
    if output_tokens == 0:
        return None
    return (operational_g + embodied_g) / (output_tokens / TOKENS_PER_SCI_UNIT)


def grams_per_million_tokens(grams: float, output_tokens: float) -> float | None:
    """gCO2e per million output tokens; None when no tokens were produced (unknown, not zero)."""
    _check_finite_nonneg("grams", grams)
    _check_finite_nonneg("output_tokens", output_tokens)
    if output_tokens == 0:
        return None
    return grams / (output_tokens / 1e6)


def energy_label(sources: Iterable[str]) -> EnergyLabel:
    """How the energy total was obtained: all measured, all estimated, a mix, or nothing yet."""
    seen = set(sources)
    if not seen:
        return "None"
    if seen == {"Measured"}:
        return "Measured"
    if seen == {"Estimated"}:
        return "Estimated"
    return "Mixed"


@dataclass(frozen=True)
class Interval:
    """One integration step with every input that went into its figures."""

    start: datetime
    end: datetime
    region: str
    energy_kwh: float  # IT energy (GPU), before PUE
    energy_source: EnergySource
    pue: float
    intensity_g_per_kwh: float
    intensity_source: str
    gpus_reserved: float
    embodied_kgco2e: float  # embodied carbon of the whole server the GPUs sit in
    gpus_per_server: float  # "total" resources of that server
    lifetime_hours: float
    output_tokens: float
    # derived
    scope2_g: float = 0.0
    embodied_g: float = 0.0
    # descriptive (reported as inputs; no effect on the figures)
    gpu_product: str | None = None
    output_tokens_source: str | None = None  # Measured | Planned

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / SECONDS_PER_HOUR


def make_interval(
    *,
    start: datetime,
    end: datetime,
    region: str,
    energy_kwh: float,
    energy_source: EnergySource,
    pue: float,
    intensity_g_per_kwh: float,
    intensity_source: str,
    gpus_reserved: float,
    embodied_kgco2e: float,
    gpus_per_server: float,
    lifetime_hours: float,
    output_tokens: float,
    gpu_product: str | None = None,
    output_tokens_source: str | None = None,
) -> Interval:
    if end <= start:
        raise ValueError(f"interval end {end} must be after start {start}")
    if energy_source not in ("Measured", "Estimated"):
        raise ValueError(f"energy_source must be Measured or Estimated, got {energy_source!r}")
    hours = (end - start).total_seconds() / SECONDS_PER_HOUR
    s2 = scope2_grams(energy_kwh, pue, intensity_g_per_kwh)
    emb = embodied_grams(embodied_kgco2e, hours, lifetime_hours, gpus_reserved, gpus_per_server)
    _check_finite_nonneg("output_tokens", output_tokens)
    return Interval(
        start=start,
        end=end,
        region=region,
        energy_kwh=float(energy_kwh),
        energy_source=energy_source,
        pue=float(pue),
        intensity_g_per_kwh=float(intensity_g_per_kwh),
        intensity_source=intensity_source,
        gpus_reserved=float(gpus_reserved),
        embodied_kgco2e=float(embodied_kgco2e),
        gpus_per_server=float(gpus_per_server),
        lifetime_hours=float(lifetime_hours),
        output_tokens=float(output_tokens),
        scope2_g=s2,
        embodied_g=emb,
        gpu_product=gpu_product,
        output_tokens_source=output_tokens_source,
    )


@dataclass
class Totals:
    """Running totals: what status carries (compact) and what a restart resumes from."""

    energy_kwh: float = 0.0  # IT energy
    facility_energy_kwh: float = 0.0  # IT energy x PUE
    measured_energy_kwh: float = 0.0
    estimated_energy_kwh: float = 0.0
    scope2_g: float = 0.0
    embodied_g: float = 0.0
    output_tokens: float = 0.0
    gpu_hours: float = 0.0
    hours: float = 0.0
    first: datetime | None = None
    last: datetime | None = None

    @property
    def total_g(self) -> float:
        return self.scope2_g + self.embodied_g

    @property
    def energy_label(self) -> EnergyLabel:
        sources = []
        if self.measured_energy_kwh > 0:
            sources.append("Measured")
        if self.estimated_energy_kwh > 0:
            sources.append("Estimated")
        return energy_label(sources)

    @property
    def sci_g_per_thousand_tokens(self) -> float | None:
        return sci_per_thousand_tokens(self.scope2_g, self.embodied_g, self.output_tokens)

    @property
    def scope2_g_per_million_tokens(self) -> float | None:
        return grams_per_million_tokens(self.scope2_g, self.output_tokens)

    @property
    def total_g_per_million_tokens(self) -> float | None:
        return grams_per_million_tokens(self.total_g, self.output_tokens)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["first"] = self.first.isoformat() if self.first else None
        d["last"] = self.last.isoformat() if self.last else None
        d["total_g"] = self.total_g
        d["energy_label"] = self.energy_label
        d["sci_g_per_thousand_tokens"] = self.sci_g_per_thousand_tokens
        d["scope2_g_per_million_tokens"] = self.scope2_g_per_million_tokens
        d["total_g_per_million_tokens"] = self.total_g_per_million_tokens
        return d


@dataclass
class EmissionsAccumulator:
    """Integrates intervals into running totals, keeping each interval's inputs.

    ``keep_intervals`` bounds how many recent intervals are kept verbatim (the operator keeps a
    few for explanation; the benchmark keeps none and relies on totals). Totals always include
    every interval added. ``inputs`` records the distinct inputs seen (intensity sources, PUE,
    embodied factor, lifetime), which is what a sustainability report must cite.
    """

    totals: Totals = field(default_factory=Totals)
    keep_intervals: int = 0
    intervals: list[Interval] = field(default_factory=list)
    inputs: dict[str, set] = field(
        default_factory=lambda: {
            "intensity_sources": set(),
            "regions": set(),
            "pue": set(),
            "embodied_kgco2e": set(),
            "gpus_per_server": set(),
            "lifetime_hours": set(),
        }
    )

    def add(self, interval: Interval) -> Interval:
        t = self.totals
        if t.last is not None and interval.start < t.last:
            raise ValueError(
                f"interval starting {interval.start.isoformat()} overlaps the last one ending {t.last.isoformat()}"
            )
        t.energy_kwh += interval.energy_kwh
        t.facility_energy_kwh += interval.energy_kwh * interval.pue
        if interval.energy_source == "Measured":
            t.measured_energy_kwh += interval.energy_kwh
        else:
            t.estimated_energy_kwh += interval.energy_kwh
        t.scope2_g += interval.scope2_g
        t.embodied_g += interval.embodied_g
        t.output_tokens += interval.output_tokens
        t.gpu_hours += interval.gpus_reserved * interval.hours
        t.hours += interval.hours
        if t.first is None:
            t.first = interval.start
        t.last = interval.end
        self.inputs["intensity_sources"].add(interval.intensity_source)
        self.inputs["regions"].add(interval.region)
        self.inputs["pue"].add(interval.pue)
        self.inputs["embodied_kgco2e"].add(interval.embodied_kgco2e)
        self.inputs["gpus_per_server"].add(interval.gpus_per_server)
        self.inputs["lifetime_hours"].add(interval.lifetime_hours)
        if self.keep_intervals:
            self.intervals.append(interval)
            del self.intervals[: -self.keep_intervals]
        return interval

    def add_many(self, intervals: Iterable[Interval]) -> None:
        for it in intervals:
            self.add(it)

    def inputs_dict(self) -> dict[str, list]:
        return {k: sorted(v, key=str) for k, v in self.inputs.items()}

    def report(self) -> dict[str, Any]:
        return {"totals": self.totals.to_dict(), "inputs": self.inputs_dict()}


# ------------------------------------------------------------------------------------------------
# The operator's running totals live in GreenModel status.emissions (api.v1alpha1.Emissions): each
# reconcile pass folds the interval since the last pass into them. Pure: the caller supplies the
# interval (energy measured from DCGM/Kepler counters or estimated from the plan, intensity at the
# hour it was used) and writes the returned object to status.
# ------------------------------------------------------------------------------------------------


def day_shares(start: datetime, end: datetime) -> list[tuple[str, float]]:
    """The UTC days ``start..end`` covers, each with its share of the interval's duration (sum 1)."""
    if end <= start:
        raise ValueError(f"interval end {end} must be after start {start}")
    total = (end - start).total_seconds()
    out: list[tuple[str, float]] = []
    t = start.astimezone(timezone.utc)
    end_utc = end.astimezone(timezone.utc)
    while t < end_utc:
        midnight = datetime(t.year, t.month, t.day, tzinfo=timezone.utc) + timedelta(days=1)
        piece_end = min(midnight, end_utc)
        out.append((t.date().isoformat(), (piece_end - t).total_seconds() / total))
        t = piece_end
    return out


def add_to_daily(daily: list, interval: Interval, max_days: int) -> list:
    """``daily`` (api.v1alpha1.DailyEmissions, oldest first) + ``interval`` split by UTC day by
    time share; at most ``max_days`` buckets kept, the oldest dropped."""
    buckets = {d.date: d.model_copy() for d in daily}
    joules = interval.energy_kwh * JOULES_PER_KWH
    measured = joules if interval.energy_source == "Measured" else 0.0
    for day, share in day_shares(interval.start, interval.end):
        b = buckets.get(day) or DailyEmissions(date=day)
        b.energy_joules += joules * share
        b.measured_energy_joules += measured * share
        b.scope2_grams += interval.scope2_g * share
        b.scope3_grams += interval.embodied_g * share
        b.output_tokens += interval.output_tokens * share
        buckets[day] = b
    return [buckets[d] for d in sorted(buckets)][-max_days:]


def advance_status(prev, interval: Interval, *, max_days: int | None = None):
    """New ``status.emissions`` (api.v1alpha1.Emissions) = ``prev`` + ``interval``.

    ``prev`` may be None (first pass). An interval that ends at or before ``prev.updated`` was
    already counted (kopf may repeat a pass) and is ignored: the totals are returned unchanged, so a
    repeated pass never double-counts. The energy label becomes Mixed once measured and estimated
    intervals have both been counted. The measured/estimated split, the inputs of this interval and
    the UTC-day buckets (at most ``max_days``, default ``MAX_DAILY_BUCKETS``) advance with it.
    """
    if prev is not None and prev.updated is not None and interval.end <= prev.updated:
        return prev
    if prev is not None and prev.updated is not None and interval.start < prev.updated:
        raise ValueError(
            f"interval {interval.start.isoformat()}..{interval.end.isoformat()} overlaps the totals "
            f"already counted up to {prev.updated.isoformat()}"
        )
    src = EnergySourceKind(interval.energy_source)
    if prev is None or (prev.energy_joules == 0 and prev.scope2_grams == 0):
        label = src
    else:
        label = prev.energy_source if prev.energy_source == src else EnergySourceKind.MIXED
    joules = interval.energy_kwh * JOULES_PER_KWH
    measured = prev.measured_energy_joules if prev else 0.0
    estimated = prev.estimated_energy_joules if prev else 0.0
    if prev is not None and prev.energy_joules > 0 and measured + estimated == 0:
        # Totals written before the split existed: attribute them by their label (Mixed: unknown
        # split, counted as estimated, the conservative side).
        if prev.energy_source == EnergySourceKind.MEASURED:
            measured = prev.energy_joules
        else:
            estimated = prev.energy_joules
    if src == EnergySourceKind.MEASURED:
        measured += joules
    else:
        estimated += joules
    scope2 = (prev.scope2_grams if prev else 0.0) + interval.scope2_g
    scope3 = (prev.scope3_grams if prev else 0.0) + interval.embodied_g
    tokens = (prev.output_tokens if prev else 0.0) + interval.output_tokens
    per_server = interval.gpus_per_server or 1.0
    inputs = EmissionsInputs(
        region=interval.region[:63] or None,
        gpu_product=(interval.gpu_product or "")[:63] or None,
        gpus=interval.gpus_reserved,
        pue=interval.pue,
        grams_per_kilowatt_hour=interval.intensity_g_per_kwh,
        intensity_source=interval.intensity_source[:63] or None,
        embodied_kilograms_per_gpu=interval.embodied_kgco2e / per_server,
        lifetime_years=interval.lifetime_hours / HOURS_PER_YEAR,
        energy_source=src,
        output_tokens_source=interval.output_tokens_source,
    )
    daily = add_to_daily(prev.daily if prev else [], interval,
                         MAX_DAILY_BUCKETS if max_days is None else max_days)
    return Emissions(
        energy_joules=(prev.energy_joules if prev else 0.0) + joules,
        measured_energy_joules=measured,
        estimated_energy_joules=estimated,
        energy_source=label,
        scope2_grams=scope2,
        scope3_grams=scope3,
        output_tokens=tokens,
        sci_grams_per_thousand_tokens=sci_per_thousand_tokens(scope2, scope3, tokens),
        since=(prev.since if prev and prev.since else interval.start),
        updated=interval.end,
        inputs=inputs,
        daily=daily,
    )


def measured_energy_joules(
    seconds: float,
    *,
    window_energy_joules: float | None,
    window_seconds: float | None,
    power_watts: float | None,
) -> tuple[float | None, str | None]:
    """GPU energy of an interval of ``seconds`` from what Prometheus measured, and its basis.

    * ``"counter"``: the energy counter's increase over the rate window (DCGM
      ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` or Kepler ``kepler_pod_gpu_joules_total``) as a mean
      power, times ``seconds``. It integrates between scrapes, so it is the best joules source.
    * ``"power"``: the measured power gauge times ``seconds``, when the counter is unknown, or when
      its mean power is below half the power gauge: Prometheus' ``increase()`` then covers only part
      of the window (series younger than the window: pods just started), which would undercount.
    * ``(None, None)``: nothing measured; the caller estimates (never 0 for unknown).
    """
    _check_finite_nonneg("seconds", seconds)
    counter_w = None
    if window_energy_joules is not None and window_seconds:
        if not math.isfinite(window_energy_joules) or window_energy_joules < 0:
            window_energy_joules = None  # a reset mid-window or garbage: not a measurement
        else:
            counter_w = window_energy_joules / window_seconds
    if power_watts is not None and (not math.isfinite(power_watts) or power_watts < 0):
        power_watts = None
    if counter_w is not None and (power_watts is None or counter_w >= 0.5 * power_watts):
        return counter_w * seconds, "counter"
    if power_watts is not None:
        return power_watts * seconds, "power"
    return None, None


def pass_interval(
    *,
    start: datetime,
    end: datetime,
    region: str,
    gpus_reserved: int,
    embodied_kg_per_gpu: float,
    lifetime_years: float,
    pue: float,
    intensity_g_per_kwh: float,
    intensity_source: str,
    output_tokens: float,
    estimated_power_watts: float | None = None,
    measured_energy_joules: float | None = None,
    gpu_product: str | None = None,
    output_tokens_source: str | None = None,
) -> Interval:
    """The interval one reconcile pass accounts for, from what the reconciler has at hand.

    Energy: the measured joules over the interval (DCGM ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` or
    Kepler ``kepler_pod_gpu_joules_total`` increase) when known, labelled Measured; else the planner's
    predicted IT power x duration, labelled Estimated. Unknown energy with no estimate is an error (never
    silently 0). Embodied: the catalog's kgCO2e per GPU (server share included) and lifetime, so one
    GPU is the resource unit (``total`` = 1, ``reserved`` = GPUs).
    """
    seconds = (end - start).total_seconds()
    if measured_energy_joules is not None:
        kwh, source = joules_to_kwh(measured_energy_joules), "Measured"
    elif estimated_power_watts is not None:
        kwh, source = energy_kwh(estimated_power_watts, seconds), "Estimated"
    else:
        raise ValueError("neither measured energy nor an estimated power is known for this interval")
    return make_interval(
        start=start,
        end=end,
        region=region,
        energy_kwh=kwh,
        energy_source=source,
        pue=pue,
        intensity_g_per_kwh=intensity_g_per_kwh,
        intensity_source=intensity_source,
        gpus_reserved=gpus_reserved,
        embodied_kgco2e=embodied_kg_per_gpu,
        gpus_per_server=1,
        lifetime_hours=lifetime_years * HOURS_PER_YEAR,
        output_tokens=output_tokens,
        gpu_product=gpu_product,
        output_tokens_source=output_tokens_source,
    )
