"""Small named pure checks. Each returns a verdict ``(reason, message, failed)``, as cert-manager's
policy chain does: ``failed`` True means the thing checked must not be chosen, ``reason`` is a
CamelCase word from :data:`REASONS`, ``message`` a single line with the numbers behind it.
"""

from __future__ import annotations

from typing import Callable

from greenmodel.api.v1alpha1 import GPUProduct, GreenModelSpec, ModelVariant, Profile

Verdict = tuple[str, str, bool]
OK: Verdict = ("", "", False)

# The bounded set of reasons a candidate can lose or be rejected for (used in status and Events).
REASONS = {
    "BelowQualityFloor": "the variant's score on the spec's benchmark is below spec.quality.minScore",
    "QualityUnknown": "the catalog has no score for the spec's benchmark",
    "VariantNotAllowed": "spec.model.variants does not list it",
    "GPUProductNotAllowed": "spec.placement.gpuProducts does not list it",
    "GPUProductUnknown": "the catalog has no spec.gpus entry for the product",
    "DoesNotFit": "weights, overhead and the KV cache of one request exceed what vLLM may use of the GPUs",
    "InterTokenLatencyUnreachable": "even the smallest measured batch exceeds the p95 ITL SLO",
    "TTFTUnreachable": "prefill alone exceeds the p95 TTFT SLO",
    "ReplicaBoundTooLow": "the SLO needs more replicas than spec.maxReplicas",
    "InsufficientGPUs": "the region has fewer free GPUs of the product than the replicas need",
    "RegionUnknown": "no observation (inventory/PUE) for the region",
    "CarbonDataMissing": "no intensity reading within spec.missingData.maxHoldSeconds and no usable fallback",
    "HigherScore": "feasible, but scores worse than the chosen placement under the policy",
}

SpecCheck = Callable[[GreenModelSpec, ModelVariant], Verdict]


def variant_allowed(spec: GreenModelSpec, variant: ModelVariant) -> Verdict:
    allowed = spec.model.variants
    if allowed is not None and variant.name not in allowed:
        return ("VariantNotAllowed", f"variant {variant.name} is not in spec.model.variants", True)
    return OK


def quality_floor(spec: GreenModelSpec, variant: ModelVariant) -> Verdict:
    q = spec.quality
    if q is None:
        return OK
    score = variant.quality.get(q.benchmark)
    if score is None:
        return ("QualityUnknown", f"catalog has no {q.benchmark} score for {variant.name}", True)
    if score < q.min_score:
        return ("BelowQualityFloor",
                f"{q.benchmark} {score:g} is below the floor {q.min_score:g} (short by {q.min_score - score:.2f})",
                True)
    return OK


VARIANT_POLICIES: tuple[SpecCheck, ...] = (variant_allowed, quality_floor)


def gpu_product_allowed(spec: GreenModelSpec, product: str) -> Verdict:
    allowed = spec.placement.gpu_products
    if allowed is not None and product not in allowed:
        return ("GPUProductNotAllowed", f"{product} is not in spec.placement.gpuProducts", True)
    return OK


def gpu_product_known(profile: Profile, gpu: GPUProduct | None) -> Verdict:
    if gpu is None:
        return ("GPUProductUnknown", f"no spec.gpus entry for {profile.gpu_product}", True)
    return OK


def itl_reachable(spec: GreenModelSpec, best_itl_ms: float) -> Verdict:
    slo = spec.latency.inter_token_p95_milliseconds
    if best_itl_ms > slo:
        return ("InterTokenLatencyUnreachable",
                f"smallest measured batch has p95 ITL {best_itl_ms:.1f} ms > SLO {slo} ms", True)
    return OK


def ttft_reachable(spec: GreenModelSpec, floor_ms: float) -> Verdict:
    slo = spec.latency.ttft_p95_milliseconds
    if floor_ms > slo:
        return ("TTFTUnreachable",
                f"prefill of {spec.load.average_input_tokens} tokens alone takes {floor_ms:.0f} ms > SLO {slo} ms", True)
    return OK


def replicas_within_bounds(spec: GreenModelSpec, needed: int, why: str) -> Verdict:
    if needed > spec.max_replicas:
        return ("ReplicaBoundTooLow",
                f"needs {needed} replicas {why}, maxReplicas is {spec.max_replicas}", True)
    return OK


def gpus_available(region: str, product: str, need: int, free: float) -> Verdict:
    if need > free:
        return ("InsufficientGPUs", f"needs {need} {product} in {region}, {int(free)} free", True)
    return OK
