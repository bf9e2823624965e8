"""What the serving container runs for a chosen candidate: image and engine arguments (pure)."""

from __future__ import annotations

from greenmodel.api.state import ServingSpec
from greenmodel.api.v1alpha1 import ModelVariant
from greenmodel.planning.types import Candidate

DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.8.5"


class RuntimeImageMissing(ValueError):
    """The catalog names a runtime with no image (and it is not vLLM, whose default we know)."""


def serving_spec(variant: ModelVariant, candidate: Candidate) -> ServingSpec:
    """Container image and args for the chosen variant, runtime and operating point."""
    rt_name = variant.runtime.name or "vLLM"
    image = variant.runtime.image or (DEFAULT_VLLM_IMAGE if rt_name.lower() == "vllm" else None)
    if image is None:
        raise RuntimeImageMissing(f"variant {variant.name}: runtime {rt_name} has no image in the catalog")
    extra = list(candidate.runtime_args)
    args = ["--model", variant.model_id, "--served-model-name", variant.family, "--port", "8000"]
    if rt_name.lower() == "vllm":
        if not any(a.startswith("--tensor-parallel-size") for a in extra):
            args += ["--tensor-parallel-size", str(candidate.gpus_per_replica)]
        if not any(a.startswith("--max-num-seqs") for a in extra):
            args += ["--max-num-seqs", str(candidate.batch_cap)]
    return ServingSpec(image=image, args=tuple(args + extra), gpus_per_replica=candidate.gpus_per_replica,
                       runtime=rt_name)
