"""Per-policy results of a replay and the figures the benchmark reports.

A policy's run is a column store of what happened each simulated hour (where it ran, on what,
how much power, was the SLO met, ...). :func:`summarise` turns it into the reported metrics by
feeding every hour through the same :class:`~greenmodel.planning.accounting.EmissionsAccumulator`
the operator uses, so the benchmark and the operator's status cannot disagree on the maths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from greenmodel.planning import accounting

HOUR = timedelta(hours=1)


@dataclass
class PolicyRun:
    """What one policy did, hour by hour (parallel lists, one entry per simulated hour)."""

    name: str
    description: str
    region: list[str] = field(default_factory=list)
    variant: list[str] = field(default_factory=list)
    gpu_product: list[str] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    gpus: list[int] = field(default_factory=list)  # GPUs reserved (replicas x GPUs per replica)
    it_energy_kwh: list[float] = field(default_factory=list)  # GPU energy of the hour incl. switch overlap
    pue: list[float] = field(default_factory=list)
    intensity: list[float] = field(default_factory=list)  # gCO2e/kWh of the region that hour
    output_tokens: list[float] = field(default_factory=list)  # tokens of the workload that hour
    requests: list[float] = field(default_factory=list)
    slo_met: list[bool] = field(default_factory=list)
    p95_ttft_ms: list[float] = field(default_factory=list)
    p95_itl_ms: list[float] = field(default_factory=list)
    quality: list[float] = field(default_factory=list)
    embodied_kgco2e: list[float] = field(default_factory=list)  # per server
    gpus_per_server: list[float] = field(default_factory=list)
    lifetime_hours: list[float] = field(default_factory=list)
    switched: list[bool] = field(default_factory=list)
    max_load: list[float] = field(default_factory=list)  # highest load (tok/s) the placement serves within the SLO
    decide_seconds: float = 0.0  # wall time spent deciding (planner calls)

    def append(self, **kw: Any) -> None:
        for k, v in kw.items():
            getattr(self, k).append(v)

    @property
    def hours(self) -> int:
        return len(self.region)


def _accumulate(run: PolicyRun, start: datetime, intensity_source: str) -> accounting.EmissionsAccumulator:
    acc = accounting.EmissionsAccumulator()
    for h in range(run.hours):
        acc.add(
            accounting.make_interval(
                start=start + h * HOUR,
                end=start + (h + 1) * HOUR,
                region=run.region[h],
                energy_kwh=run.it_energy_kwh[h],
                energy_source="Estimated",
                pue=run.pue[h],
                intensity_g_per_kwh=run.intensity[h],
                intensity_source=intensity_source,
                gpus_reserved=run.gpus[h],
                embodied_kgco2e=run.embodied_kgco2e[h],
                gpus_per_server=run.gpus_per_server[h],
                lifetime_hours=run.lifetime_hours[h],
                output_tokens=run.output_tokens[h],
            )
        )
    return acc


def hourly_grams(run: PolicyRun, with_embodied: bool = True) -> np.ndarray:
    """gCO2e emitted each hour (Scope 2, plus embodied share if asked)."""
    e = np.asarray(run.it_energy_kwh) * np.asarray(run.pue) * np.asarray(run.intensity)
    if with_embodied:
        gps = np.asarray(run.gpus_per_server, float)
        e = e + np.asarray(run.embodied_kgco2e) * 1000.0 / np.asarray(run.lifetime_hours) * np.asarray(run.gpus) / gps
    return e


def summarise(run: PolicyRun, start: datetime, quality_floor: float | None, intensity_source: str) -> dict[str, Any]:
    acc = _accumulate(run, start, intensity_source)
    t = acc.totals
    req = np.asarray(run.requests, dtype=float)
    met = np.asarray(run.slo_met, dtype=bool)
    regions, counts = np.unique(np.asarray(run.region), return_counts=True)
    variants, vcounts = np.unique(np.asarray(run.variant), return_counts=True)
    min_q = float(min(run.quality)) if run.quality else None
    return {
        "description": run.description,
        "gramsPerMillionTokens": t.scope2_g_per_million_tokens,
        "gramsPerMillionTokensWithEmbodied": t.total_g_per_million_tokens,
        "sciGramsPerThousandTokens": t.sci_g_per_thousand_tokens,
        "scope2Kg": t.scope2_g / 1000.0,
        "embodiedKg": t.embodied_g / 1000.0,
        "kwh": t.facility_energy_kwh,
        "itKwh": t.energy_kwh,
        "gpuHours": t.gpu_hours,
        "outputTokens": t.output_tokens,
        # request-weighted: share of requests arriving in hours whose placement met the p95 SLO
        "sloAttainment": float(req[met].sum() / req.sum()) if req.sum() > 0 else None,
        "sloHoursAttainment": float(met.mean()) if len(met) else None,
        "minQuality": min_q,
        "qualityFloor": quality_floor,
        "qualityFloorViolations": int(sum(q < quality_floor for q in run.quality)) if quality_floor is not None else 0,
        "switches": int(sum(run.switched)),
        "meanReplicas": float(np.mean(run.replicas)) if run.replicas else 0.0,
        "regionHours": {str(r): int(c) for r, c in zip(regions, counts)},
        "variantHours": {str(v): int(c) for v, c in zip(variants, vcounts)},
        "energyLabel": t.energy_label,
        "decideSeconds": run.decide_seconds,
        "inputs": acc.inputs_dict(),
    }
