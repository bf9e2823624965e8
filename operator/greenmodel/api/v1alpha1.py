"""Typed API of greenmodel.dev/v1alpha1: GreenModel (namespaced) and ModelCatalog (cluster-scoped).

This module is the one place where a raw Kubernetes body (a kopf ``body``, a YAML file) becomes a
typed object: :func:`parse_greenmodel` and :func:`parse_modelcatalog`. Nothing below handles dicts.
The CRD OpenAPI schemas in ``crds/`` are generated from these models by ``greenmodel.api.crdgen``
(CEL rules live next to the models in ``CEL_RULES``), and a test checks the two never drift.

Conventions (Kubernetes API conventions): camelCase JSON names, durations end in ``Seconds``,
units in names, CamelCase enum values (except precision names, which follow vLLM/HF usage),
no ``phase``. A GreenModel holds no URL, no Secret and no cross-namespace reference: it names a
cluster-scoped ModelCatalog and a model family in it, nothing else.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

GROUP = "greenmodel.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Bounded sizes: CEL cost estimation needs maxItems/maxLength on everything it iterates.
MAX_ALTERNATIVES = 10
MAX_VARIANTS = 64
MAX_REGIONS = 32
MAX_DAILY_BUCKETS = 35  # status.emissions.daily: one bucket per UTC day, oldest dropped
DNS_LABEL = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # lowercase, digits, - and . (e.g. llama-3.1-8b)
# A region/GPU product label value (Kubernetes label value syntax).
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors (CRD schemas prune)."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        frozen=False,
        use_enum_values=False,
        protected_namespaces=(),
    )

    def to_k8s(self) -> dict[str, Any]:
        """The wire form: camelCase, enums as strings, datetimes RFC 3339, unset Nones dropped."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Str(str, enum.Enum):
    def __str__(self) -> str:
        return self.value


# --------------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------------


class Policy(_Str):
    """How to rank feasible candidates (see docs/planner.md)."""

    LATENCY_FIRST = "LatencyFirst"
    BALANCED = "Balanced"
    CARBON_FIRST = "CarbonFirst"


class Precision(_Str):
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4_AWQ = "int4-awq"
    INT4_GPTQ = "int4-gptq"


class Architecture(_Str):
    DENSE = "Dense"
    MOE = "MoE"


class CarbonFallback(_Str):
    """What to do once a region's last good intensity reading is older than ``maxHoldSeconds``."""

    STATIC_INTENSITY = "StaticIntensity"  # use the operator-configured annual average for the region
    EXCLUDE_REGION = "ExcludeRegion"  # do not place in a region without fresh data


class ConditionStatus(_Str):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class IntensityKind(_Str):
    MEASURED = "Measured"
    ESTIMATED = "Estimated"
    FORECAST = "Forecast"
    HELD = "Held"  # last good reading, older than fresh but within maxHoldSeconds
    STATIC = "Static"  # static fallback (annual average from the operator configuration)


class EnergySourceKind(_Str):
    MEASURED = "Measured"
    ESTIMATED = "Estimated"
    MIXED = "Mixed"


class MeterKind(_Str):
    """Where measured GPU energy comes from."""

    DCGM = "DCGM"  # NVIDIA DCGM exporter: DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION / DCGM_FI_DEV_POWER_USAGE
    KEPLER = "Kepler"  # kepler_pod_gpu_joules_total


class TokenSourceKind(_Str):
    MEASURED = "Measured"  # vllm:generation_tokens rate
    PLANNED = "Planned"  # the load the planner sized for (observed earlier or spec.load)


# --------------------------------------------------------------------------------------------
# GreenModel spec
# --------------------------------------------------------------------------------------------


class ModelSelector(_Model):
    """Which model to serve: a family in a cluster-scoped ModelCatalog, optionally narrowed to
    named variants. (Catalogs are cluster-scoped and admin-owned, so this is not a
    cross-namespace reference.)"""

    family: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL,
                                 description="Model family in the catalog, e.g. `llama-3.1-8b`.")]
    catalog_name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_LABEL,
                                       description="Name of the cluster-scoped ModelCatalog.")] = "default"
    variants: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]] | None,
        Field(max_length=MAX_VARIANTS,
              description="Only these variants of the family may be chosen; all of them if unset."),
    ] = None

    @model_validator(mode="after")
    def _unique(self) -> "ModelSelector":
        _check_unique(self.variants, "variants")
        return self


class QualityFloor(_Model):
    """Quality floor: only variants whose catalog score on `benchmark` is at least `minScore` may be chosen."""

    benchmark: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
                                    description="Benchmark name as in the catalog's `quality` map, e.g. `MMLU`.")]
    min_score: Annotated[float, Field(ge=0, le=100, description="Minimum score (0-100) a variant must have.")]


class LatencySLO(_Model):
    """Latency SLO the planned replicas must meet at the expected load (p95, milliseconds)."""

    ttft_p95_milliseconds: Annotated[int, Field(ge=1, le=600_000,
                                                description="p95 time to first token, milliseconds.")] = 2000
    inter_token_p95_milliseconds: Annotated[int, Field(ge=1, le=10_000,
                                                       description="p95 inter-token latency, milliseconds.")] = 100


class CarbonSLO(_Model):
    """Carbon objective: grams CO2e per million output tokens, and an optional daily budget."""

    max_grams_per_million_tokens: Annotated[
        float | None, Field(gt=0, description="Target gCO2e per million output tokens (Scope 2 + embodied). "
                                              "Candidates above it are ranked after those below it.")] = None
    daily_budget_kilograms: Annotated[
        float | None, Field(gt=0, le=1_000_000, description="Optional daily budget, kgCO2e; reported by the operator.")] = None


class LoadPrior(_Model):
    """Expected load, used until live serving metrics exist (and when they go missing)."""

    output_tokens_per_second: Annotated[float | None, Field(ge=0, description="Expected output tokens per second.")] = None
    requests_per_second: Annotated[float | None, Field(ge=0, description=(
        "Expected requests per second (x averageOutputTokens gives tokens/s).") )] = None
    average_output_tokens: Annotated[int, Field(ge=1, le=1_000_000, description="Mean output tokens per request.")] = 256
    average_input_tokens: Annotated[int, Field(ge=0, le=10_000_000, description="Mean prompt tokens per request.")] = 1024
    peak_to_mean_ratio: Annotated[float, Field(ge=1, le=100, description=(
        "Busiest minute's load / the mean load (burstiness). Replicas are sized for mean x this ratio; energy "
        "and carbon are predicted at the mean. Applies to live metrics' load too."))] = 1.0

    def tokens_per_second(self) -> float:
        if self.output_tokens_per_second is not None:
            return float(self.output_tokens_per_second)
        if self.requests_per_second is not None:
            return float(self.requests_per_second) * self.average_output_tokens
        return 0.0


def _check_unique(items: list[str] | None, name: str) -> None:
    if items:
        seen: set[str] = set()
        for i, x in enumerate(items):
            if x in seen:
                raise ValueError(f"{name}[{i}]: Duplicate value: {x!r}")
            seen.add(x)


class PlacementConstraints(_Model):
    """Where the model may run: allowed regions and GPU products (all known ones if unset)."""

    regions: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE)]] | None,
        Field(max_length=MAX_REGIONS, description="Allowed regions (`topology.kubernetes.io/region`); "
                                                  "every region the operator knows if unset."),
    ] = None
    gpu_products: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE)]] | None,
        Field(max_length=16, description="Allowed GPU products (`nvidia.com/gpu.product`); all if unset."),
    ] = None

    @model_validator(mode="after")
    def _unique(self) -> "PlacementConstraints":
        _check_unique(self.regions, "regions")
        _check_unique(self.gpu_products, "gpuProducts")
        return self


class Hysteresis(_Model):
    """When to move to a better variant/region/GPU: only if it is better by enough, and not too often."""

    min_improvement_percent: Annotated[float, Field(ge=0, le=100, description=(
        "Switch variant/region/GPU only if the best alternative scores at least this much better."))] = 10
    min_dwell_seconds: Annotated[int, Field(ge=0, le=7 * 86400, description=(
        "Keep a placement at least this long before switching for a better score."))] = 900


class MissingData(_Model):
    """What to do when carbon data or serving metrics are missing: hold the last good values for a bounded
    time, then fall back (never scale to zero)."""

    max_hold_seconds: Annotated[int, Field(ge=0, le=7 * 86400, description=(
        "Keep using the last good carbon reading / serving metrics for at most this long."))] = 3600
    carbon_fallback: CarbonFallback = Field(default=CarbonFallback.STATIC_INTENSITY, description=(
        "After maxHoldSeconds without data: StaticIntensity (the region's configured annual mean) or "
        "ExcludeRegion."))


class ServingOptions(_Model):
    """How the tenant's model is served: context cap, gated-weights token, longest response to drain.
    Nothing here is an address: the token is a Secret in the GreenModel's own namespace, read only by the
    serving pods (secretKeyRef), never by the operator."""

    max_model_len: Annotated[int | None, Field(ge=256, le=10_000_000, description=(
        "Cap on the served context (vLLM --max-model-len), tokens; the catalog variant's context length and "
        "what fits the GPU memory cap it further."))] = None
    hugging_face_token_secret_name: Annotated[str | None, Field(min_length=1, max_length=253, pattern=DNS_LABEL,
        description=("Secret in this namespace holding the Hugging Face token for gated weights (key: the "
                     "catalog's huggingFaceToken.key, HF_TOKEN by default). Overrides the catalog's secret name."))] = None
    max_output_tokens: Annotated[int, Field(ge=1, le=1_000_000, description=(
        "Longest response the SLO is promised for, tokens. An old pod drains for maxOutputTokens x the ITL SLO "
        "+ the TTFT SLO before it stops (switch, scale-down, rollout)."))] = 2048


class GreenModelSpec(_Model):
    """What a team wants served; the operator chooses variant, region, GPU product and replicas."""

    model: ModelSelector
    quality: QualityFloor | None = None
    latency: LatencySLO = Field(default_factory=LatencySLO)
    carbon: CarbonSLO = Field(default_factory=CarbonSLO)
    load: LoadPrior = Field(default_factory=LoadPrior)
    placement: PlacementConstraints = Field(default_factory=PlacementConstraints)
    min_replicas: Annotated[int, Field(ge=1, le=1000, description="Fewest serving replicas.")] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000, description=(
        "Most serving replicas; if the SLO needs more, Ready=False says how many."))] = 8
    policy: Policy = Field(default=Policy.BALANCED, description=(
        "How to rank feasible placements: LatencyFirst, Balanced (grams x (1 + latency/SLO)) or CarbonFirst."))
    hysteresis: Hysteresis = Field(default_factory=Hysteresis)
    missing_data: MissingData = Field(default_factory=MissingData)
    serving: ServingOptions = Field(default_factory=ServingOptions)
    suspend: bool = Field(default=False, description="Stop reconciling; the current children are left as they are.")

    @model_validator(mode="after")
    def _check(self) -> "GreenModelSpec":
        # Same rules as the CEL in CEL_RULES, so a file is rejected by the CLI as by the API server.
        if self.min_replicas > self.max_replicas:
            raise ValueError("`minReplicas` must be less than or equal to `maxReplicas`")
        if self.load.output_tokens_per_second is not None and self.load.requests_per_second is not None:
            raise ValueError("spec.load: set at most one of `outputTokensPerSecond` and `requestsPerSecond`")
        return self


# --------------------------------------------------------------------------------------------
# GreenModel status
# --------------------------------------------------------------------------------------------


class Condition(_Model):
    """metav1.Condition."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    status: ConditionStatus
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")]
    message: Annotated[str, Field(max_length=32768)] = ""
    last_transition_time: datetime
    observed_generation: Annotated[int | None, Field(ge=0)] = None


class IntensityStatus(_Model):
    """The grid carbon intensity behind the choice."""

    grams_per_kilowatt_hour: Annotated[float, Field(ge=0)]
    source: Annotated[str, Field(max_length=63)]
    zone: Annotated[str, Field(max_length=63)]
    timestamp: datetime | None = None
    kind: IntensityKind = IntensityKind.MEASURED


class Predicted(_Model):
    """What the planner's model predicts for the chosen placement at the planned load."""

    ttft_p95_milliseconds: float | None = None
    inter_token_p95_milliseconds: float | None = None
    output_tokens_per_second: float | None = Field(default=None, description="Load planned for.")
    capacity_output_tokens_per_second: float | None = Field(default=None, description="Capacity at the SLO.")
    utilization: float | None = None
    power_watts: float | None = Field(default=None, description="IT power of all replicas (GPUs), W.")
    joules_per_token: float | None = None
    gpus: int | None = None
    grams_per_million_tokens: float | None = Field(default=None, description="Scope 2 + embodied.")
    scope2_grams_per_million_tokens: float | None = None
    embodied_grams_per_million_tokens: float | None = None
    grams_per_hour: float | None = None


class Alternative(_Model):
    variant: Annotated[str, Field(max_length=63)]
    region: Annotated[str | None, Field(max_length=63)] = None
    gpu_product: Annotated[str | None, Field(max_length=63)] = None
    replicas: int | None = None
    grams_per_million_tokens: float | None = None
    ttft_p95_milliseconds: float | None = None
    inter_token_p95_milliseconds: float | None = None
    reason: Annotated[str, Field(max_length=63)]
    message: Annotated[str, Field(max_length=1024)] = ""


class Measured(_Model):
    """What the serving metrics show now (Prometheus: vLLM, DCGM or Kepler), beside `predicted`.

    Absent fields are unknown (no series, or Prometheus unreachable), never 0. Refreshed in status
    when a figure moves by more than a quarter, when the meter changes, or at the accounting flush.
    """

    gpu_power_watts: Annotated[float | None, Field(ge=0, description=(
        "GPU power of all serving pods, W (DCGM power, else the rate of Kepler's GPU joules); "
        "compare with predicted.powerWatts."))] = None
    joules_per_token: Annotated[float | None, Field(ge=0, description=(
        "GPU energy per output token over the rate window, J; compare with predicted.joulesPerToken."))] = None
    output_tokens_per_second: Annotated[float | None, Field(ge=0)] = None
    requests_per_second: Annotated[float | None, Field(ge=0)] = None
    ttft_p95_milliseconds: Annotated[float | None, Field(ge=0)] = None
    inter_token_p95_milliseconds: Annotated[float | None, Field(ge=0)] = None
    energy_source: MeterKind | None = Field(default=None, description="Meter of the GPU energy; absent: none.")
    pods: Annotated[int | None, Field(ge=0, description="Pods reporting vLLM metrics.")] = None
    window_seconds: Annotated[float | None, Field(ge=0, description="Prometheus rate window.")] = None
    observed_at: datetime | None = None


class EmissionsInputs(_Model):
    """The inputs of the last accounted interval: what a report cites beside the figures."""

    region: Annotated[str | None, Field(max_length=63)] = None
    gpu_product: Annotated[str | None, Field(max_length=63)] = None
    gpus: Annotated[float | None, Field(ge=0, description="GPUs reserved by the serving pods.")] = None
    pue: Annotated[float | None, Field(ge=1)] = None
    grams_per_kilowatt_hour: Annotated[float | None, Field(ge=0, description="Grid intensity used.")] = None
    intensity_source: Annotated[str | None, Field(max_length=63)] = None
    embodied_kilograms_per_gpu: Annotated[float | None, Field(ge=0, description=(
        "Embodied kgCO2e per GPU (its server share included), from the ModelCatalog."))] = None
    lifetime_years: Annotated[float | None, Field(gt=0)] = None
    energy_source: EnergySourceKind | None = None
    output_tokens_source: TokenSourceKind | None = None


class DailyEmissions(_Model):
    """One UTC day of accounting (intervals that cross midnight are split by time)."""

    date: Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", max_length=10, description="UTC day.")]
    energy_joules: Annotated[float, Field(ge=0)] = 0
    measured_energy_joules: Annotated[float, Field(ge=0)] = 0
    scope2_grams: Annotated[float, Field(ge=0)] = 0
    scope3_grams: Annotated[float, Field(ge=0)] = 0
    output_tokens: Annotated[float, Field(ge=0)] = 0


class Emissions(_Model):
    """Accounting since the GreenModel was first placed (filled by the operator).

    Written to status at most every accounting flush (an hour by default), when the energy label
    changes, or together with a status write made for another reason.
    """

    energy_joules: Annotated[float, Field(ge=0, description="GPU (IT) energy, before PUE.")] = 0
    measured_energy_joules: Annotated[float, Field(ge=0, description="Part of energyJoules measured (DCGM/Kepler).")] = 0
    estimated_energy_joules: Annotated[float, Field(ge=0, description="Part of energyJoules estimated by the planner's model.")] = 0
    energy_source: EnergySourceKind = EnergySourceKind.ESTIMATED
    scope2_grams: Annotated[float, Field(ge=0, description="Location-based: energy x PUE x grid intensity.")] = 0
    scope3_grams: Annotated[float, Field(ge=0, description="Embodied share of the reserved GPUs.")] = 0
    output_tokens: Annotated[float, Field(ge=0)] = 0
    sci_grams_per_thousand_tokens: float | None = None
    since: datetime | None = None
    updated: datetime | None = None
    inputs: EmissionsInputs | None = None
    daily: Annotated[list[DailyEmissions], Field(max_length=MAX_DAILY_BUCKETS, description=(
        f"UTC days, oldest first; at most {MAX_DAILY_BUCKETS}, the oldest dropped."))] = Field(default_factory=list)


class Decision(_Model):
    reason: Annotated[str, Field(max_length=63)]
    message: Annotated[str, Field(max_length=4096)] = ""
    time: datetime | None = None
    kept_current: bool = False


class GreenModelStatus(_Model):
    # kopf keeps its own progress under status.kopf; ignore what we do not own.
    model_config = ConfigDict(extra="ignore")

    observed_generation: Annotated[int | None, Field(ge=0)] = None
    conditions: Annotated[list[Condition], Field(max_length=16)] = Field(default_factory=list)
    variant: str | None = None
    region: str | None = None
    gpu_product: str | None = None
    replicas: Annotated[int | None, Field(ge=0)] = None
    ready_replicas: Annotated[int | None, Field(ge=0)] = None
    placed_since: datetime | None = Field(default=None, description="When the current variant/region/GPU was chosen.")
    intensity: IntensityStatus | None = None
    predicted: Predicted | None = None
    measured: Measured | None = None
    decision: Decision | None = None
    alternatives: Annotated[list[Alternative], Field(max_length=MAX_ALTERNATIVES)] = Field(default_factory=list)
    emissions: Emissions | None = None


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = None
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None


class GreenModel(_Model):
    api_version: Literal["greenmodel.dev/v1alpha1"] = API_VERSION  # type: ignore[assignment]
    kind: Literal["GreenModel"] = "GreenModel"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: GreenModelSpec
    status: GreenModelStatus | None = None


# --------------------------------------------------------------------------------------------
# ModelCatalog
# --------------------------------------------------------------------------------------------


class BatchPoint(_Model):
    """One measured operating point of a replica (e.g. a vLLM ``--max-num-seqs`` cap)."""

    max_batch_size: Annotated[int, Field(ge=1, le=65536)]
    output_tokens_per_second: Annotated[float, Field(gt=0, description="Per replica, steady state.")]
    inter_token_p95_milliseconds: Annotated[float, Field(gt=0)]
    power_watts: Annotated[float, Field(gt=0, description="Average power of the whole replica (all its GPUs), W.")]


class ServingRuntime(_Model):
    """A variant's runtime: which of the catalog's `runtimes` serves it, and variant-specific extra arguments."""

    name: Annotated[str, Field(max_length=63, description="A `spec.runtimes[].name` (vLLM by default).")] = "vLLM"
    image: Annotated[str | None, Field(max_length=512, description=(
        "Image for this variant only; the runtime profile's image if unset."))] = None
    args: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=32, description=(
        "Extra engine arguments of this variant (the operator derives the rest, see docs/serving.md)."))] = Field(
        default_factory=list)


QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"


class PodResources(_Model):
    """Container requests per GPU of a replica (a replica of g GPUs asks for g times these)."""

    cpu: Annotated[str, Field(max_length=32, pattern=QUANTITY, description="CPU request per GPU.")] = "4"
    memory: Annotated[str, Field(max_length=32, pattern=QUANTITY, description=(
        "Memory request (and limit) per GPU; at least the weights' share plus 8Gi is asked for regardless."))] = "32Gi"
    ephemeral_storage: Annotated[str, Field(max_length=32, pattern=QUANTITY, description=(
        "Ephemeral storage request per GPU (logs, compile caches; weights live on the model cache)."))] = "10Gi"


class GPUProductResources(PodResources):
    gpu_product: Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE)]


class EnvVar(_Model):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    value: Annotated[str, Field(max_length=4096)] = ""


class Toleration(_Model):
    """core/v1 Toleration."""

    key: Annotated[str | None, Field(max_length=316)] = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: Annotated[str | None, Field(max_length=63)] = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


_OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


class PodSpecOverrides(_Model):
    """The pod spec fields an admin may set on serving pods, as core/v1 PodSpec has them. An allow-list: what
    keeps pods serving and restricted (containers, volumes, security contexts, affinity to the chosen pool, the
    service account) stays the operator's."""

    node_selector: Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=16)] | None = None
    scheduler_name: Annotated[str | None, Field(max_length=253)] = None
    dns_policy: Literal["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"] | None = None
    dns_config: Annotated[dict[str, Any] | None, Field(json_schema_extra=_OPEN)] = None
    topology_spread_constraints: Annotated[list[Annotated[dict[str, Any], Field(json_schema_extra=_OPEN)]] | None,
                                           Field(max_length=8)] = None
    preemption_policy: Literal["PreemptLowerPriority", "Never"] | None = None
    resource_claims: Annotated[list[Annotated[dict[str, Any], Field(json_schema_extra=_OPEN)]] | None, Field(
        max_length=8, description="Dynamic Resource Allocation claims (e.g. a GPU by DeviceClass).")] = None
    share_process_namespace: bool | None = None


class RuntimeProfile(_Model):
    """How the pods of one serving engine look on this cluster: admin-owned (the catalog is cluster-scoped)."""

    name: Annotated[str, Field(min_length=1, max_length=63, description="Engine name variants refer to, e.g. vLLM.")]
    image: Annotated[str, Field(min_length=1, max_length=512, description=(
        "Engine image, a tag or a digest (repo:tag@sha256:...)."))]
    image_pull_secrets: Annotated[list[Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_LABEL)]],
                                  Field(max_length=8, description=(
                                      "Secrets in each GreenModel's namespace used to pull the image."))] = Field(
        default_factory=list)
    resources: PodResources = Field(default_factory=PodResources, description="Requests per GPU, any GPU product.")
    resources_by_gpu_product: Annotated[list[GPUProductResources], Field(max_length=16, description=(
        "Requests per GPU for one GPU product (replaces `resources` there)."))] = Field(default_factory=list)
    env: Annotated[list[EnvVar], Field(max_length=64, description="Extra environment of the server container.")] = Field(
        default_factory=list)
    tolerations: Annotated[list[Toleration], Field(max_length=16, description=(
        "Tolerations of the serving pods; the NVIDIA GPU taint (nvidia.com/gpu, Exists, NoSchedule) if unset."))] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")])
    runtime_class_name: Annotated[str | None, Field(max_length=253, pattern=DNS_LABEL, description=(
        "RuntimeClass of the serving pods (e.g. `nvidia` where the GPU operator is not the default runtime)."))] = None
    priority_class_name: Annotated[str | None, Field(max_length=253, pattern=DNS_LABEL)] = None
    weights_load_mebibytes_per_second: Annotated[float, Field(gt=0, le=1_000_000, description=(
        "Weights read speed from the model cache, MiB/s: the startup probe allows weights / this + "
        "`startupOverheadSeconds`."))] = 200
    startup_overhead_seconds: Annotated[int, Field(ge=0, le=86400, description=(
        "Engine start beside reading the weights (CUDA graphs, compilation, warm-up), seconds."))] = 600
    pod_labels: Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=32)] = Field(
        default_factory=dict)
    pod_annotations: Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=32)] = Field(
        default_factory=dict)
    pod_spec_overrides: PodSpecOverrides | None = Field(default=None, description=(
        "Escape hatch for pod spec fields an admin needs (set as given over the operator's)."))

    def resources_for(self, gpu_product: str) -> PodResources:
        for r in self.resources_by_gpu_product:
            if r.gpu_product == gpu_product:
                return r
        return self.resources

    @model_validator(mode="after")
    def _check(self) -> "RuntimeProfile":
        _check_unique([r.gpu_product for r in self.resources_by_gpu_product], "resourcesByGpuProduct.gpuProduct")
        return self



class ModelCache(_Model):
    """A model cache that survives restarts and switches: a PVC per GreenModel, model and region, filled once
    by a download Job, mounted by every serving pod of that model there."""

    storage_class_name: Annotated[str | None, Field(max_length=253, pattern=DNS_LABEL, description=(
        "StorageClass of the cache PVCs; the cluster default if unset."))] = None
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = Field(
        default="ReadWriteOnce", description="ReadWriteMany lets replicas on several nodes share one cache.")
    size_factor: Annotated[float, Field(ge=1, le=10, description=(
        "PVC size = weightMemoryGiB x this (safetensors plus tokenizer and config files)."))] = 1.2


class SecretKey(_Model):
    secret_name: Annotated[str | None, Field(min_length=1, max_length=253, pattern=DNS_LABEL, description=(
        "Secret in each GreenModel's namespace; none if unset (public weights only)."))] = None
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = "HF_TOKEN"


class AttentionShape(_Model):
    """What one token costs in KV cache (from the checkpoint's config.json), per vLLM's own formula:
    2 (K and V) x layers x KV heads per GPU x head size x bytes per element."""

    layers: Annotated[int, Field(ge=1, le=1024, description="num_hidden_layers")]
    kv_heads: Annotated[int, Field(ge=1, le=1024, alias="kvHeads", description="num_key_value_heads")]
    head_dim: Annotated[int, Field(ge=1, le=4096, description="head_dim (hidden_size / num_attention_heads)")]
    kv_cache_bytes_per_element: Annotated[int, Field(ge=1, le=4, description=(
        "2 for a bf16/fp16 KV cache (vLLM's default), 1 for --kv-cache-dtype fp8."))] = 2


class PreloadedWeights(_Model):
    """Weights already on a PVC in the GreenModel's namespace (air-gapped clusters): no download."""

    claim_name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_LABEL)]
    path: Annotated[str, Field(max_length=1024, pattern=r"^[A-Za-z0-9._/-]*$", description=(
        "Directory of the checkpoint inside the claim (config.json, *.safetensors)."))] = ""


class Profile(_Model):
    """Measured (or derived) performance of a variant on one GPU product."""

    gpu_product: Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE)]
    gpus_per_replica: Annotated[int, Field(ge=1, le=16, description="Tensor-parallel size.")] = 1
    batch: Annotated[list[BatchPoint], Field(min_length=1, max_length=32,
                                             description="Operating points, by increasing maxBatchSize.")]
    prefill_tokens_per_second: Annotated[float, Field(gt=0, description=(
        "Prompt tokens per second one request's prefill runs at (drives TTFT)."))]
    derived: Annotated[str | None, Field(max_length=512, description=(
        "If set, how this profile was derived rather than measured."))] = None
    runtime_args: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=32)] = Field(
        default_factory=list)


class ModelVariant(_Model):
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    family: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    model_id: Annotated[str, Field(min_length=1, max_length=256, description="e.g. the Hugging Face repo id.")]
    architecture: Architecture = Architecture.DENSE
    parameters_billions: Annotated[float, Field(gt=0)]
    active_parameters_billions: Annotated[float | None, Field(gt=0)] = None
    precision: Precision = Precision.BF16
    weight_memory_gi_b: Annotated[float, Field(gt=0, alias="weightMemoryGiB")]
    min_kv_cache_gi_b: Annotated[float, Field(ge=0, alias="minKVCacheGiB", description=(
        "KV cache a replica needs at least, GiB (across its GPUs)."))] = 4.0
    attention: AttentionShape | None = Field(default=None, description=(
        "KV cache per token; with it the planner checks memory the way vLLM does (else minKVCacheGiB)."))
    context_length: Annotated[int, Field(ge=256, le=10_000_000, description=(
        "Longest context the checkpoint supports (max_position_embeddings): the highest --max-model-len."))] = 8192
    overhead_gi_b_per_gpu: Annotated[float, Field(ge=0, le=64, alias="overheadGiBPerGpu", description=(
        "Memory besides weights and KV cache per GPU: activations of the profiling run, CUDA graphs, NCCL and "
        "the CUDA context (vLLM's non-KV memory), GiB."))] = 2.0
    quantization: Annotated[str | None, Field(max_length=63, pattern=r"^[a-z0-9_]+$", description=(
        "vLLM --quantization, only for online quantisation of a checkpoint that is not quantised already "
        "(a pre-quantised checkpoint names its method in config.json)."))] = None
    preloaded: PreloadedWeights | None = None
    quality: Annotated[dict[str, Annotated[float, Field(ge=0, le=100)]], Field(max_length=16)] = Field(
        default_factory=dict)
    profiles: Annotated[list[Profile], Field(min_length=1, max_length=8)]
    runtime: ServingRuntime = Field(default_factory=ServingRuntime)

    @property
    def active_b(self) -> float:
        return self.active_parameters_billions or self.parameters_billions

    @model_validator(mode="after")
    def _check(self) -> "ModelVariant":
        a = self.active_parameters_billions
        if a is not None and a > self.parameters_billions:
            raise ValueError("`activeParametersBillions` must be less than or equal to `parametersBillions`")
        if self.architecture == Architecture.MOE and a is None:
            raise ValueError("`activeParametersBillions` is required when `architecture` is `MoE`")
        products = [p.gpu_product for p in self.profiles]
        _check_unique(products, "profiles.gpuProduct")
        return self


class GPUProduct(_Model):
    product: Annotated[str, Field(min_length=1, max_length=63, pattern=LABEL_VALUE)]
    memory_gi_b: Annotated[float, Field(gt=0, alias="memoryGiB")]
    idle_watts: Annotated[float, Field(ge=0)]
    max_watts: Annotated[float, Field(gt=0)]
    embodied_kilograms: Annotated[float, Field(ge=0, description=(
        "Embodied kgCO2e attributed to one GPU (its share of the server included)."))] = 275.0
    lifetime_years: Annotated[float, Field(gt=0, le=20)] = 4.0
    usable_memory_fraction: Annotated[float, Field(gt=0, le=1, description=(
        "Fraction of memory the runtime may use (vLLM --gpu-memory-utilization)."))] = 0.9

    @model_validator(mode="after")
    def _check(self) -> "GPUProduct":
        if self.idle_watts > self.max_watts:
            raise ValueError("`idleWatts` must be less than or equal to `maxWatts`")
        return self


class ModelCatalogSpec(_Model):
    gpus: Annotated[list[GPUProduct], Field(min_length=1, max_length=16)]
    variants: Annotated[list[ModelVariant], Field(min_length=1, max_length=512)]
    runtimes: Annotated[list[RuntimeProfile], Field(max_length=8, description=(
        "Runtime profiles by engine name; vLLM with the operator's default image if none is named vLLM."))] = Field(
        default_factory=list)
    model_cache: ModelCache | None = Field(default=None, description=(
        "Weights on PVCs filled by a download Job; without it each pod downloads into an emptyDir."),
        json_schema_extra={"x-greenmodel-absent-means-off": True})
    hugging_face_token: SecretKey = Field(default_factory=SecretKey, description=(
        "Secret (in each GreenModel's namespace) with the Hugging Face token, passed by secretKeyRef."))

    def runtime(self, name: str) -> RuntimeProfile | None:
        for r in self.runtimes:
            if r.name.lower() == name.lower():
                return r
        return None

    @model_validator(mode="after")
    def _check(self) -> "ModelCatalogSpec":
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"spec.variants: duplicate variant name(s) {', '.join(dup)}")
        products = [g.product for g in self.gpus]
        if len(set(products)) != len(products):
            raise ValueError("spec.gpus: duplicate GPU product")
        _check_unique([r.name.lower() for r in self.runtimes], "runtimes.name")
        known = set(products)
        for v in self.variants:
            for p in v.profiles:
                if p.gpu_product not in known:
                    raise ValueError(
                        f"every `variants[].profiles[].gpuProduct` must be listed in `gpus` "
                        f"({v.name} has {p.gpu_product!r})")
        return self

    def gpu(self, product: str) -> GPUProduct | None:
        for g in self.gpus:
            if g.product == product:
                return g
        return None


class ModelCatalog(_Model):
    api_version: Literal["greenmodel.dev/v1alpha1"] = API_VERSION  # type: ignore[assignment]
    kind: Literal["ModelCatalog"] = "ModelCatalog"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelCatalogSpec


# --------------------------------------------------------------------------------------------
# The boundary: raw body -> typed object
# --------------------------------------------------------------------------------------------


class InvalidObject(ValueError):
    """A body that is not a valid object of the expected kind; ``field`` names the offending field
    (dotted, camelCase as the user wrote it), ``message`` says what is wrong, on one line."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _first_error(exc: ValidationError) -> InvalidObject:
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
    field = _loc(loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    if err["type"] == "literal_error" and loc and loc[-1] in ("kind", "apiVersion"):
        msg = f"{msg} (got {err.get('input')!r})"
    n = exc.error_count()
    if n > 1:
        msg += f" (and {n - 1} more error{'s' if n > 2 else ''})"
    return InvalidObject(field, msg)


def _parse(model: type[_Model], body: Any, kind: str) -> Any:
    if hasattr(body, "items") and not isinstance(body, dict):  # kopf Body and other mappings
        body = {k: v for k, v in body.items()}
    if not isinstance(body, dict):
        raise InvalidObject("", f"expected a {kind} object (a mapping), got {type(body).__name__}")
    body = dict(body)
    if body.get("kind", kind) != kind:
        raise InvalidObject("kind", f"expected {kind!r}, got {body.get('kind')!r}")
    if body.get("apiVersion", API_VERSION) != API_VERSION:
        raise InvalidObject("apiVersion", f"expected {API_VERSION!r}, got {body.get('apiVersion')!r}")
    # kopf bodies carry metadata we do not model; keep only what we use.
    meta = body.get("metadata") or {}
    if hasattr(meta, "items"):
        meta = {k: meta[k] for k in ("name", "namespace", "generation", "uid") if k in meta}
    body["metadata"] = meta
    if "spec" not in body:
        raise InvalidObject("spec", "required field is missing")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _first_error(exc) from None


def parse_greenmodel(body: Any) -> GreenModel:
    """The only way a raw GreenModel body becomes typed. Raises InvalidObject naming the field."""
    return _parse(GreenModel, body, "GreenModel")


def parse_modelcatalog(body: Any) -> ModelCatalog:
    """The only way a raw ModelCatalog body becomes typed. Raises InvalidObject naming the field."""
    return _parse(ModelCatalog, body, "ModelCatalog")


def parse_status(body: Any) -> GreenModelStatus | None:
    """Typed status of a GreenModel body, or None if it has none (or one we cannot read)."""
    status = body.get("status") if hasattr(body, "get") else None
    if not status:
        return None
    try:
        return GreenModelStatus.model_validate(dict(status))
    except ValidationError:
        return None


__all__ = [
    "GROUP", "VERSION", "API_VERSION", "MAX_ALTERNATIVES", "MAX_DAILY_BUCKETS",
    "Policy", "Precision", "Architecture", "CarbonFallback", "ConditionStatus", "IntensityKind",
    "EnergySourceKind", "MeterKind", "TokenSourceKind",
    "ModelSelector", "QualityFloor", "LatencySLO", "CarbonSLO", "LoadPrior", "PlacementConstraints", "Hysteresis",
    "MissingData", "ServingOptions", "GreenModelSpec",
    "Condition", "IntensityStatus", "Predicted", "Measured", "Alternative", "EmissionsInputs",
    "DailyEmissions", "Emissions", "Decision", "GreenModelStatus",
    "GreenModel",
    "BatchPoint", "ServingRuntime", "PodResources", "GPUProductResources", "EnvVar", "Toleration", "RuntimeProfile",
    "ModelCache", "SecretKey", "AttentionShape", "PreloadedWeights", "PodSpecOverrides", "Profile", "ModelVariant", "GPUProduct", "ModelCatalogSpec", "ModelCatalog",
    "InvalidObject", "parse_greenmodel", "parse_modelcatalog", "parse_status",
]
