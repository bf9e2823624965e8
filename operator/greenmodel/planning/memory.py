"""Does a variant fit a GPU product the way vLLM will find it does? (pure; see docs/serving.md)

vLLM (v1 engine) sizes its KV cache at start: of each GPU's memory it may use ``total x
--gpu-memory-utilization``; weights, the activation peak of a profiling run and non-torch memory
(CUDA context, graphs, NCCL) come off; the rest holds KV blocks. It refuses to start when that rest
cannot hold one request of ``--max-model-len`` tokens (``vllm/v1/core/kv_cache_planning.py``,
``_check_enough_kv_cache_memory``), where a full-attention layer needs
``cdiv(max_model_len, block_size) x page_size`` and ``page_size = 2 x block_size x KV heads x
head size x bytes per element`` (``vllm/v1/kv_cache_interface.py``), KV heads split over the
tensor-parallel GPUs (at least one per GPU).

The planner uses the same numbers: the served context (--max-model-len) is the largest that fits,
capped by the checkpoint's context length and the GreenModel's cap; and a replica's batch (its
--max-num-seqs) is capped at the sequences of the expected context (prompt + output) the KV cache
holds at once, so the measured operating point used is one this GPU can really run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from greenmodel.api.v1alpha1 import GPUProduct, GreenModelSpec, ModelVariant, Profile

GIB = 1024 ** 3
BLOCK_SIZE = 16  # vLLM's default KV block size (tokens) on CUDA
CONTEXT_GRANULE = 1024  # a fitted --max-model-len is rounded down to this many tokens


@dataclass(frozen=True, slots=True)
class MemoryFit:
    """What the engine will find on one replica: the numbers behind its --max-model-len."""

    fits: bool
    reason: str  # "" when it fits, else a rejection reason (CamelCase)
    message: str
    gpu_memory_utilization: float
    max_model_len: int  # tokens served (the --max-model-len to pass); 0 if it does not fit
    max_sequences: int | None  # sequences of the expected context held at once (None: not known)


def kv_bytes_per_token_per_gpu(variant: ModelVariant, tensor_parallel: int) -> int:
    """vLLM's page size per token for one GPU of a tensor-parallel group, summed over layers."""
    a = variant.attention
    if a is None:
        return 0
    heads = max(1, a.kv_heads // tensor_parallel)
    return 2 * a.layers * heads * a.head_dim * a.kv_cache_bytes_per_element


def kv_bytes_for(max_model_len: int, per_token: int) -> int:
    """KV bytes one request of ``max_model_len`` tokens needs (whole blocks), as vLLM checks at start."""
    return math.ceil(max_model_len / BLOCK_SIZE) * BLOCK_SIZE * per_token


def fit(spec: GreenModelSpec, variant: ModelVariant, profile: Profile, gpu: GPUProduct) -> MemoryFit:
    tp = profile.gpus_per_replica
    util = gpu.usable_memory_fraction
    requested = gpu.memory_gi_b * util
    weights = variant.weight_memory_gi_b / tp
    kv_gib = requested - weights - variant.overhead_gi_b_per_gpu
    context = spec.load.average_input_tokens + spec.load.average_output_tokens
    cap = min(variant.context_length, spec.serving.max_model_len or variant.context_length)
    where = (f"{tp}x {gpu.product} at --gpu-memory-utilization {util:g}: {requested:.1f} GiB per GPU - weights "
             f"{weights:.1f} - overhead {variant.overhead_gi_b_per_gpu:g}")
    if kv_gib <= 0:
        return MemoryFit(False, "DoesNotFit", f"no memory left for the KV cache ({where} = {kv_gib:.1f} GiB)",
                         util, 0, 0)
    per_token = kv_bytes_per_token_per_gpu(variant, tp)
    if per_token == 0:  # no attention shape: the catalog's fixed minimum KV, as before
        if kv_gib * tp < variant.min_kv_cache_gi_b:
            return MemoryFit(False, "DoesNotFit",
                             f"{kv_gib * tp:.1f} GiB left for the KV cache ({where}), the variant needs "
                             f"minKVCacheGiB {variant.min_kv_cache_gi_b:g}", util, 0, 0)
        return MemoryFit(True, "", f"{kv_gib:.1f} GiB KV cache per GPU", util, cap, None)
    kv_tokens = int(kv_gib * GIB // per_token) // BLOCK_SIZE * BLOCK_SIZE
    max_len = cap if kv_bytes_for(cap, per_token) <= kv_gib * GIB else kv_tokens // CONTEXT_GRANULE * CONTEXT_GRANULE
    if max_len < context:
        return MemoryFit(False, "DoesNotFit",
                         f"the KV cache holds {kv_tokens} tokens ({kv_gib:.1f} GiB per GPU left: {where}; "
                         f"{per_token / 1024:g} KiB per token per GPU), less than one request of "
                         f"{context} tokens (spec.load averageInputTokens + averageOutputTokens)",
                         util, 0, 0)
    seqs = kv_tokens // context
    note = "" if max_len == cap else f", context cut from {cap} to fit"
    return MemoryFit(True, "", f"--max-model-len {max_len}{note}; KV cache {kv_tokens} tokens "
                     f"({kv_gib:.1f} GiB per GPU), {seqs} sequences of {context} tokens at once",
                     util, max_len, seqs)
