"""What a serving pod runs for a chosen candidate (pure): image, engine arguments, environment, requests,
probe budget, drain time and where the weights come from. One source for the engine's numbers: the
--max-model-len and --gpu-memory-utilization passed are the ones the planner checked memory with
(planning/memory.py). docs/serving.md explains each field."""

from __future__ import annotations

import json
import math

from greenmodel.api import quantity
from greenmodel.api.state import ServingSpec, Weights
from greenmodel.api.v1alpha1 import GreenModelSpec, ModelCatalogSpec, ModelVariant, RuntimeProfile
from greenmodel.planning.types import Candidate

DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
VLLM_PORT = 8000
MODELS_DIR = "/models"  # the weights volume (cache PVC, preloaded PVC or emptyDir)
SCRATCH_DIR = "/scratch"  # writable HOME and compile caches for a non-root UID
MIN_MEMORY_HEADROOM_GIB = 8.0  # host memory beside a replica's share of the weights while loading

# Derived by the operator: a variant's `runtime.args` may not set these (they would disagree with the plan).
DERIVED_FLAGS = ("--model", "--served-model-name", "--port", "--host", "--tensor-parallel-size", "--max-num-seqs",
                 "--max-model-len", "--gpu-memory-utilization", "--quantization", "--download-dir",
                 "--shutdown-timeout")


class RuntimeProblem(ValueError):
    """The catalog cannot run the chosen variant: ``reason`` is the Stalled condition's reason
    (RuntimeImageMissing: a runtime with no profile and no image, not vLLM whose default we know;
    RuntimeArgsInvalid: extra arguments that set a flag the operator derives)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


def default_runtime() -> RuntimeProfile:
    return RuntimeProfile(name="vLLM", image=DEFAULT_VLLM_IMAGE)


def runtime_profile(catalog: ModelCatalogSpec, variant: ModelVariant) -> RuntimeProfile:
    name = variant.runtime.name or "vLLM"
    prof = catalog.runtime(name)
    if prof is None:
        if name.lower() != "vllm":
            if variant.runtime.image is None:
                raise RuntimeProblem("RuntimeImageMissing",
                                     f"variant {variant.name}: runtime {name} has no spec.runtimes entry and no image")
            return RuntimeProfile(name=name, image=variant.runtime.image)
        prof = default_runtime()
    if variant.runtime.image:
        prof = prof.model_copy(update={"image": variant.runtime.image})
    return prof


def drain_seconds(spec: GreenModelSpec) -> int:
    """The longest request the SLO allows: maxOutputTokens x ITL SLO + TTFT SLO."""
    lat = spec.latency
    return math.ceil((spec.serving.max_output_tokens * lat.inter_token_p95_milliseconds
                      + lat.ttft_p95_milliseconds) / 1000.0)


def startup_seconds(variant: ModelVariant, prof: RuntimeProfile) -> int:
    """Startup probe budget: read the weights at the profile's speed, then start the engine."""
    read = variant.weight_memory_gi_b * 1024.0 / prof.weights_load_mebibytes_per_second
    return math.ceil(read) + prof.startup_overhead_seconds


def check_extra_args(variant_name: str, args: tuple[str, ...] | list[str]) -> str | None:
    """A problem with a variant's or profile's extra arguments (one the operator derives), or None."""
    for a in args:
        flag = a.split("=", 1)[0]
        if flag in DERIVED_FLAGS:
            return (f"variant {variant_name}: runtime.args / profiles[].runtimeArgs may not set {flag} "
                    f"(the operator derives it)")
    return None


def serving_spec(catalog: ModelCatalogSpec, variant: ModelVariant, candidate: Candidate,
                 spec: GreenModelSpec) -> ServingSpec:
    """The whole serving pod for the chosen variant, runtime profile and operating point."""
    prof = runtime_profile(catalog, variant)
    problem = check_extra_args(variant.name, candidate.runtime_args)
    if problem:
        raise RuntimeProblem("RuntimeArgsInvalid", problem)
    g = candidate.gpus_per_replica
    is_vllm = prof.name.lower() == "vllm"
    cache = catalog.model_cache
    if variant.preloaded is not None:
        weights = Weights("preloaded", claim_name=variant.preloaded.claim_name, path=variant.preloaded.path)
        model = f"{MODELS_DIR}/{variant.preloaded.path}".rstrip("/")
    elif cache is not None:
        weights = Weights("cache", size_gib=round(variant.weight_memory_gi_b * cache.size_factor, 1),
                          model_id=variant.model_id, region=candidate.region)
        model = variant.model_id
    else:
        weights = Weights("download", size_gib=round(variant.weight_memory_gi_b * 1.2, 1), model_id=variant.model_id)
        model = variant.model_id
    served = variant.family  # stable across variant and region switches: clients keep their `model`
    args: list[str] = []
    command: tuple[str, ...] = ()
    if is_vllm:
        command = ("vllm", "serve")
        args = [model, "--served-model-name", served, "--port", str(VLLM_PORT),
                "--tensor-parallel-size", str(g), "--max-num-seqs", str(candidate.batch_cap),
                "--gpu-memory-utilization", f"{candidate.gpu_memory_utilization:g}",
                "--shutdown-timeout", str(drain_seconds(spec))]
        if candidate.max_model_len:
            args += ["--max-model-len", str(candidate.max_model_len)]
        if variant.quantization:
            args += ["--quantization", variant.quantization]
    args += list(candidate.runtime_args)  # the variant's runtime.args, then its profile's runtimeArgs
    env = [("HOME", f"{SCRATCH_DIR}/home"), ("USER", "greenmodel"), ("XDG_CACHE_HOME", f"{SCRATCH_DIR}/cache"),
           ("XDG_CONFIG_HOME", f"{SCRATCH_DIR}/config"), ("HF_HOME", f"{MODELS_DIR}/huggingface")]
    if is_vllm:
        env += [("VLLM_CACHE_ROOT", f"{SCRATCH_DIR}/cache/vllm"), ("TRITON_CACHE_DIR", f"{SCRATCH_DIR}/cache/triton"),
                ("NUMBA_CACHE_DIR", f"{SCRATCH_DIR}/cache/numba"),
                ("OUTLINES_CACHE_DIR", f"{SCRATCH_DIR}/cache/outlines"),
                ("TORCHINDUCTOR_CACHE_DIR", f"{SCRATCH_DIR}/cache/inductor"),
                ("VLLM_NO_USAGE_STATS", "1"), ("DO_NOT_TRACK", "1")]
    if weights.source in ("cache", "preloaded"):
        env.append(("HF_HUB_OFFLINE", "1"))  # the weights are on the volume: never reach the hub at start
    names = {k for k, _ in env}
    env += [(e.name, e.value) for e in prof.env if e.name not in names]
    secret_env: tuple[tuple[str, str, str, bool], ...] = ()
    token = catalog.hugging_face_token
    secret = spec.serving.hugging_face_token_secret_name or token.secret_name
    if secret and weights.source != "preloaded":
        # Whoever downloads (the pod, or the cache's download Job) gets it. Named by the GreenModel: it must
        # exist (the pod says so); named by the catalog: optional, so public weights serve without it.
        secret_env = (("HF_TOKEN", secret, token.key, spec.serving.hugging_face_token_secret_name is None),)
    res = prof.resources_for(candidate.gpu_product)
    mem = quantity.times(res.memory, g)
    floor = variant.weight_memory_gi_b + MIN_MEMORY_HEADROOM_GIB
    if quantity.parse(mem) < floor * 2 ** 30:
        mem = f"{math.ceil(floor)}Gi"
    tolerations = [t.to_k8s() for t in prof.tolerations]
    return ServingSpec(
        image=prof.image, args=tuple(args), gpus_per_replica=g, runtime=prof.name, command=command,
        port=VLLM_PORT, env=tuple(env), secret_env=secret_env,
        cpu_request=quantity.times(res.cpu, g), memory_request=mem,
        ephemeral_storage_request=quantity.times(res.ephemeral_storage, g),
        startup_seconds=startup_seconds(variant, prof), drain_seconds=drain_seconds(spec),
        tolerations_json=json.dumps(tolerations, sort_keys=True),
        runtime_class_name=prof.runtime_class_name, priority_class_name=prof.priority_class_name,
        image_pull_secrets=tuple(prof.image_pull_secrets),
        pod_labels=tuple(sorted(prof.pod_labels.items())), pod_annotations=tuple(sorted(prof.pod_annotations.items())),
        pod_spec_overrides_json=(json.dumps(prof.pod_spec_overrides.to_k8s(), sort_keys=True)
                                 if prof.pod_spec_overrides is not None else ""),
        weights=weights, shm_size_gib=float(min(16, 2 * g)) if g > 1 else 1.0, served_model_name=served,
    )
