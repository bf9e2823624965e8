"""Inputs and output of the pure planner: ``plan(spec, catalog, observed, now) -> Plan``.

Plain frozen dataclasses (cheap to build: the planner runs in microseconds). Units are in the
names. Unknown is ``None``, never 0 (a missing reading must not look like a clean grid, a missing
metric must not look like no load).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

from greenmodel.api.state import Placement, ServingMetrics  # noqa: F401 - part of the planner's input types


@dataclass(frozen=True, slots=True)
class Intensity:
    """A grid carbon-intensity reading for a region's zone."""

    grams_per_kwh: float
    source: str  # provider name, e.g. "electricitymaps", "static"
    zone: str  # e.g. "GB"
    timestamp: datetime | None  # the time the value is for (tz-aware)
    kind: str = "Measured"  # Measured | Estimated | Forecast (the planner adds Held | Static)


@dataclass(frozen=True, slots=True)
class RegionObs:
    """What the reconciler observed about one candidate region."""

    intensity: Intensity | None  # last good reading (even if old: the planner applies maxHoldSeconds), or None
    pue: float = 1.2  # facility power usage effectiveness (>= 1)
    # Free (allocatable, not requested) GPUs by product, EXCLUDING the GPUs the current placement
    # holds (the planner adds those back for the current placement). None = unknown/unlimited.
    free_gpus: Mapping[str, int] | None = None
    static_intensity: Intensity | None = None  # fallback from the operator configuration (annual mean)


@dataclass(frozen=True, slots=True)
class CurrentPlacement:
    variant: str
    region: str
    gpu_product: str
    replicas: int
    since: datetime  # when this variant/region/GPU was chosen (status.placedSince)

    @property
    def placement(self) -> Placement:
        return Placement(self.variant, self.region, self.gpu_product)


@dataclass(frozen=True, slots=True)
class Observed:
    regions: Mapping[str, RegionObs]  # candidate regions (the spec's placement.regions narrows them)
    current: CurrentPlacement | None = None
    metrics: ServingMetrics | None = None
    # Learned latency factors per (variant, GPU product): real p95 ITL / the catalog model's, from
    # earlier plans (Plan.learned). 1.0 or absent: the catalog's measured profile is right.
    learned: Mapping[tuple[str, str], float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One variant x region x GPU product with the replicas it needs and its predicted numbers."""

    variant: str
    region: str
    gpu_product: str
    replicas: int
    gpus_per_replica: int
    batch_cap: int  # maxBatchSize of the operating point (vLLM --max-num-seqs)
    load_tokens_per_second: float
    capacity_tokens_per_second: float  # all replicas, at the operating point
    utilization: float
    ttft_p95_ms: float
    itl_p95_ms: float
    power_watts: float  # IT power of all replicas
    joules_per_token: float | None  # None at zero load
    intensity: Intensity  # the reading used (kind may be Held/Static)
    pue: float
    scope2_g_per_mtok: float | None
    embodied_g_per_mtok: float | None
    g_per_mtok: float | None  # total; None at zero load
    grams_per_hour: float  # Scope 2 + embodied per hour at this load
    slo_met: bool  # latency SLO met by the model at this load
    carbon_slo_met: bool | None  # None if the spec sets no carbon SLO
    latency_headroom: float  # min(1 - ttft/slo, 1 - itl/slo); higher is better
    score: float  # the policy's score; lower is better
    runtime_args: tuple[str, ...] = ()
    max_model_len: int = 0  # --max-model-len that fits (memory.fit); 0: not derived
    gpu_memory_utilization: float = 0.9  # --gpu-memory-utilization (the GPU's usableMemoryFraction)
    memory_note: str = ""  # how the KV cache and context were sized, in words

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def placement(self) -> Placement:
        return Placement(self.variant, self.region, self.gpu_product)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A candidate (or a whole variant / region / product) that was not chosen, and why."""

    variant: str
    region: str | None  # None: applies to every region
    gpu_product: str | None  # None: applies to every product
    reason: str  # CamelCase, bounded set (see planning.policies.REASONS)
    message: str  # one line, with numbers
    candidate: Candidate | None = None  # its numbers, when it was evaluated
    required: float | None = None  # what the spec/candidate needed (e.g. GPUs, a score, ms)
    limit: float | None = None  # what was available/achievable


@dataclass(frozen=True, slots=True)
class FailedConstraint:
    """Why no candidate is feasible: which spec field, what was required, what was possible."""

    field: str  # e.g. "spec.maxReplicas", "spec.quality.minScore"
    reason: str
    message: str
    required: float | None = None
    limit: float | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    feasible: bool
    chosen: Candidate | None  # feasible: the placement to apply; infeasible: a best effort or None
    reason: str  # CamelCase: Placed, KeptCurrent, Switched, NoFeasibleCandidate, ...
    message: str
    kept_current: bool = False  # hysteresis kept the current placement
    hysteresis: str = ""  # the hysteresis verdict in words (with numbers)
    best: Candidate | None = None  # the best candidate before hysteresis
    # the current placement (Observed.current) priced at this plan's inputs, in its own region: what a
    # switch away from it is compared with (None without a current placement, or when it was not evaluated)
    current: Candidate | None = None
    alternatives: tuple[Candidate, ...] = ()  # feasible runners-up, best first
    rejected: tuple[Rejection, ...] = ()
    failed_constraints: tuple[FailedConstraint, ...] = ()
    load_tokens_per_second: float = 0.0
    load_source: str = "spec.load"  # or "metrics"
    evaluated: int = 0  # candidates with numbers
    warnings: tuple[str, ...] = field(default_factory=tuple)
    learned: Mapping[tuple[str, str], float] = field(default_factory=dict)  # pass to the next Observed
    learning: str = ""  # what the serving metrics taught this pass, in words (empty: nothing)
