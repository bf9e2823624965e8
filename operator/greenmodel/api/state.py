"""Typed observed state, shared by the code that reads the cluster (``kube``, ``signals``) and the pure code
that decides (``planning``): what one GreenModel's children look like, what its serving pods report, and what
a serving container runs. Plain frozen dataclasses, no raw Kubernetes bodies.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping


@dataclass(frozen=True, order=True)
class Placement:
    """Where and what one Deployment serves: a catalog variant on a GPU product in a region."""

    variant: str
    region: str
    gpu_product: str

    @property
    def key(self) -> str:
        return f"{self.variant}|{self.region}|{self.gpu_product}"

    def describe(self) -> str:
        return f"{self.variant} on {self.gpu_product} in {self.region}"


@dataclass(frozen=True)
class Weights:
    """Where a serving pod finds its weights: a model-cache PVC filled by a download Job (``cache``), a PVC an
    admin pre-loaded (``preloaded``, air-gapped), or an emptyDir each pod downloads into (``download``)."""

    source: str = "download"  # download | cache | preloaded
    claim_name: str = ""  # the preloaded PVC (a cache PVC is named by kube.names.cache_claim_name)
    path: str = ""  # checkpoint directory inside a preloaded claim
    size_gib: float = 0.0  # emptyDir size limit / cache PVC size
    model_id: str = ""  # what the cache holds (Hugging Face repo id)
    region: str = ""  # where the cache lives (a cache is per GreenModel, model and region)


@dataclass(frozen=True)
class ServingSpec:
    """What the serving container runs, resolved from the catalog variant, its runtime profile and the
    GreenModel (planning/serving.py). Everything the pod template needs, nothing raw."""

    image: str
    args: tuple[str, ...]
    gpus_per_replica: int
    runtime: str = "vllm"
    command: tuple[str, ...] = ()
    port: int = 8000
    health_path: str = "/health"
    env: tuple[tuple[str, str], ...] = ()
    # (env name, Secret name, key, optional): passed by secretKeyRef, never read by the operator
    secret_env: tuple[tuple[str, str, str, bool], ...] = ()
    cpu_request: str | None = None
    memory_request: str | None = None  # also the memory limit
    ephemeral_storage_request: str | None = None
    # Model loading takes minutes: allow this long before liveness may kill a starting pod.
    startup_seconds: int = 900
    # In-flight streams finish within this after a pod leaves the Service (preStop sleep; grace adds margin).
    drain_seconds: int = 0
    # core/v1 tolerations as canonical JSON (the runtime profile's; the NVIDIA GPU taint by default)
    tolerations_json: str = '[{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]'
    runtime_class_name: str | None = None
    priority_class_name: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    pod_labels: tuple[tuple[str, str], ...] = ()
    pod_annotations: tuple[tuple[str, str], ...] = ()
    pod_spec_overrides_json: str = ""  # the runtime profile's podSpecOverrides, canonical JSON
    weights: Weights = field(default_factory=Weights)
    shm_size_gib: float = 0.0  # /dev/shm size limit (0: no limit)
    served_model_name: str = ""


def intent_hash(placement: Placement, replicas: int, serving: ServingSpec) -> str:
    """A short, stable fingerprint of what we ask one Deployment to be. The builder stamps it on the
    Deployment, so deciding whether a pass changes it needs no raw body and no diff."""
    fields = {k: getattr(serving, k) for k in serving.__dataclass_fields__}
    w = serving.weights
    fields["weights"] = [w.source, w.claim_name, w.path, w.size_gib, w.model_id, w.region]
    doc = {"placement": [placement.variant, placement.region, placement.gpu_product], "replicas": replicas,
           "serving": fields}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=list).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DeploymentState:
    """One of our Deployments (one per placement) and its pods, as observed."""

    name: str
    namespace: str
    uid: str
    placement: Placement
    spec_replicas: int
    ready_replicas: int
    updated_replicas: int
    rolled_out: bool  # the controller saw the latest spec and every replica is updated and ready
    status_replicas: int = 0
    gpus_per_pod: int = 0
    intent: str = ""  # intent_hash it was applied with ("" if it predates the annotation)
    created_at: datetime | None = None
    pods_ready: int = 0
    pods_scheduled: int = 0  # bound to a node and not terminated: they hold GPUs
    pods_unschedulable: int = 0
    unschedulable_message: str = ""

    @property
    def ready(self) -> bool:
        """Fully up: at least one replica, all desired replicas ready on the latest template."""
        return self.spec_replicas > 0 and self.rolled_out and self.ready_replicas >= self.spec_replicas

    @property
    def gpus_requested(self) -> int:
        """GPUs this Deployment holds or is about to: replicas (desired, or more while surging) x GPUs per pod.
        Counting desired replicas makes a burst of new GreenModels see each other's demand before pods exist."""
        return self.gpus_per_pod * max(self.spec_replicas, self.status_replicas)


@dataclass(frozen=True)
class CacheState:
    """One model cache of a GreenModel (a PVC and the Job that fills it), as observed."""

    model_id: str
    region: str
    claim_name: str = ""
    claim_uid: str = ""
    claim_phase: str = ""  # Pending | Bound | Lost ("" when the claim is missing)
    job_name: str = ""
    job_uid: str = ""
    job_succeeded: bool = False
    job_failed: str = ""  # the Job's Failed condition message ("" unless it failed for good)
    job_started: datetime | None = None
    job_completed: datetime | None = None

    @property
    def ready(self) -> bool:
        return bool(self.claim_name) and self.job_succeeded


@dataclass(frozen=True)
class ChildState:
    """Every child of one GreenModel, as observed (owned by its uid)."""

    deployments: Mapping[Placement, DeploymentState] = field(default_factory=dict)
    service_exists: bool = False
    service_placement: Placement | None = None  # the placement the Service serves
    service_since: datetime | None = None
    pdb_exists: bool = False
    foreign: tuple[str, ...] = ()  # our labels but not owned by this GreenModel uid
    caches: Mapping[tuple[str, str], CacheState] = field(default_factory=dict)  # (model id, region) -> cache

    @property
    def ready_pods(self) -> int:
        return sum(d.pods_ready for d in self.deployments.values())

    @property
    def live_deployment(self) -> DeploymentState | None:
        if self.service_placement is None:
            return None
        return self.deployments.get(self.service_placement)


@dataclass(frozen=True)
class ServingMetrics:
    """What the serving pods of one GreenModel report through Prometheus (vLLM, DCGM, Kepler).

    Unknown is None, never 0. Latencies in milliseconds, rates per second, energy in joules.
    """

    available: bool = True
    reason: str = "Available"  # | NotConfigured | PrometheusUnreachable | QueryFailed | NoServingSeries | ...
    message: str = ""
    observed_at: datetime | None = None
    window_seconds: float | None = None
    request_rate_per_second: float | None = None
    output_tokens_per_second: float | None = None
    ttft_p95_milliseconds: float | None = None
    inter_token_p95_milliseconds: float | None = None
    itl_metric: str | None = None
    queue_length: float | None = None
    running_requests: float | None = None
    kv_cache_usage_ratio: float | None = None
    gpu_power_watts: float | None = None
    gpu_energy_joules: float | None = None  # GPU energy used over the window
    gpu_energy_joules_per_output_token: float | None = None
    energy_source: str | None = None  # "dcgm" | "kepler"
    pods: int | None = None
    errors: Mapping[str, str] = field(default_factory=dict)

    def condition(self) -> tuple[bool, str, str]:
        """(status, reason, message) for the ``MetricsAvailable`` condition."""
        return self.available, self.reason, self.message
