"""The one mapping of a Plan onto GreenModel status fields (the live pass and ``greenmodel plan`` both use it),
and onto the CLI's JSON (pure)."""

from __future__ import annotations

from datetime import datetime
from math import floor, log10
from typing import Any

from greenmodel.api.v1alpha1 import (
    MAX_ALTERNATIVES,
    Alternative,
    Decision,
    GreenModelStatus,
    IntensityKind,
    IntensityStatus,
    Predicted,
)
from greenmodel.planning.types import Candidate, Plan, Rejection

# Feasible runners-up shown at most; the rest of status.alternatives explains rejections.
MAX_RUNNERS_UP = 5
# Rejections a platform engineer asks about first: "why not the greener pool?"
_REJECTION_ORDER = {"InsufficientGPUs": 0, "CarbonDataMissing": 1}


def sig(x: float | None, digits: int = 4) -> float | None:
    """Round to significant digits, so noise in inputs does not rewrite status every pass."""
    if x is None:
        return None
    if x == 0:
        return 0.0
    return round(float(x), -int(floor(log10(abs(x)))) + (digits - 1))


def one_line(text: str, limit: int) -> str:
    return " ".join(str(text).split())[:limit]


def predicted(c: Candidate) -> Predicted:
    return Predicted(
        ttft_p95_milliseconds=sig(c.ttft_p95_ms), inter_token_p95_milliseconds=sig(c.itl_p95_ms),
        output_tokens_per_second=sig(c.load_tokens_per_second),
        capacity_output_tokens_per_second=sig(c.capacity_tokens_per_second), utilization=sig(c.utilization, 3),
        power_watts=sig(c.power_watts), joules_per_token=sig(c.joules_per_token), gpus=c.gpus,
        grams_per_million_tokens=sig(c.g_per_mtok), scope2_grams_per_million_tokens=sig(c.scope2_g_per_mtok),
        embodied_grams_per_million_tokens=sig(c.embodied_g_per_mtok), grams_per_hour=sig(c.grams_per_hour),
    )


def intensity(c: Candidate) -> IntensityStatus:
    i = c.intensity
    try:
        kind = IntensityKind(i.kind.capitalize() if i.kind.islower() else i.kind)
    except ValueError:
        kind = IntensityKind.ESTIMATED
    return IntensityStatus(grams_per_kilowatt_hour=sig(i.grams_per_kwh), source=i.source[:63],
                           zone=i.zone[:63], timestamp=i.timestamp, kind=kind)


def _alt_from_candidate(c: Candidate, chosen: Candidate | None) -> Alternative:
    msg = ""
    if chosen is not None and chosen.score > 0:
        msg = f"score {100.0 * (c.score - chosen.score) / chosen.score:+.1f}% vs chosen"
    return Alternative(variant=c.variant[:63], region=c.region, gpu_product=c.gpu_product, replicas=c.replicas,
                       grams_per_million_tokens=sig(c.g_per_mtok), ttft_p95_milliseconds=sig(c.ttft_p95_ms),
                       inter_token_p95_milliseconds=sig(c.itl_p95_ms),
                       reason="HigherScore" if c.slo_met else "ReplicaBoundTooLow", message=msg)


def _alt_from_rejection(r: Rejection) -> Alternative:
    c = r.candidate
    return Alternative(variant=r.variant[:63], region=r.region, gpu_product=r.gpu_product,
                       replicas=c.replicas if c else None, grams_per_million_tokens=sig(c.g_per_mtok) if c else None,
                       reason=r.reason[:63], message=one_line(r.message, 1024))


def alternatives(plan: Plan, limit: int = MAX_ALTERNATIVES) -> list[Alternative]:
    """Bounded: at most ``MAX_RUNNERS_UP`` feasible runners-up, then one rejection per distinct reason (capacity
    and missing carbon data first), then the other rejections."""
    out = [_alt_from_candidate(c, plan.chosen) for c in plan.alternatives[:MAX_RUNNERS_UP]]
    seen: set[str] = set()
    first, rest = [], []
    for r in sorted(plan.rejected, key=lambda r: _REJECTION_ORDER.get(r.reason, 2)):
        (rest if r.reason in seen else first).append(r)
        seen.add(r.reason)
    out += [_alt_from_rejection(r) for r in (first + rest)[: max(0, limit - len(out))]]
    return out[:limit]


def decision(plan: Plan, now: datetime | None) -> Decision:
    """Why this placement, and how its engine was sized to the GPU (the --max-model-len and batch it runs)."""
    msg = plan.message
    c = plan.chosen
    if plan.feasible and c is not None and c.memory_note:
        msg = f"{msg}; engine: {c.memory_note}"
    return Decision(reason=plan.reason[:63], message=one_line(msg, 4096), time=now,
                    kept_current=plan.kept_current if plan.feasible else False)


# The status fields a plan decides (plan_to_status fills no others).
PLAN_STATUS_FIELDS = ("variant", "region", "gpuProduct", "replicas", "intensity", "predicted", "decision",
                      "alternatives")


def plan_to_status(plan: Plan, now: datetime | None = None) -> GreenModelStatus:
    """The status fields a plan decides: placement, intensity, prediction, decision, alternatives. Conditions,
    observedGeneration, placedSince, readyReplicas, measured and emissions are the reconciler's to add."""
    c = plan.chosen
    st = GreenModelStatus(decision=decision(plan, now), alternatives=alternatives(plan),
                          predicted=predicted(c) if c is not None else None)
    if c is not None and plan.feasible:
        st.variant, st.region, st.gpu_product, st.replicas = c.variant, c.region, c.gpu_product, c.replicas
        st.intensity = intensity(c)
    return st


def _cand_json(c: Candidate) -> dict[str, Any]:
    return {
        "variant": c.variant, "region": c.region, "gpuProduct": c.gpu_product, "replicas": c.replicas,
        "gpusPerReplica": c.gpus_per_replica, "maxBatchSize": c.batch_cap, "maxModelLen": c.max_model_len,
        "engine": c.memory_note,
        "intensity": intensity(c).to_k8s(), "pue": c.pue,
        "predicted": predicted(c).to_k8s(), "sloMet": c.slo_met, "carbonSLOMet": c.carbon_slo_met,
        "latencyHeadroom": sig(c.latency_headroom, 3), "score": sig(c.score, 6),
        "runtimeArgs": list(c.runtime_args),
    }


def plan_to_json(plan: Plan, now: datetime | None = None) -> dict[str, Any]:
    """Everything the CLI prints: the decision, its numbers, every alternative with why it lost, and under
    ``status`` exactly the fields the operator would write to the GreenModel's status for this plan."""
    c = plan.chosen
    alts = []
    for a in plan.alternatives:
        d = _cand_json(a)
        d["reason"] = "HigherScore" if a.slo_met else "ReplicaBoundTooLow"
        if c is not None and c.score > 0:
            d["message"] = f"score {100.0 * (a.score - c.score) / c.score:+.1f}% vs chosen under the policy"
        alts.append(d)
    for r in plan.rejected:
        alts.append({"variant": r.variant, "region": r.region, "gpuProduct": r.gpu_product, "reason": r.reason,
                     "message": r.message, "required": r.required, "limit": r.limit})
    return {
        "feasible": plan.feasible,
        "reason": plan.reason,
        "message": plan.message,
        "variant": c.variant if c else None,
        "region": c.region if c else None,
        "gpuProduct": c.gpu_product if c else None,
        "replicas": c.replicas if c else None,
        "gpusPerReplica": c.gpus_per_replica if c else None,
        "runtimeArgs": list(c.runtime_args) if c else [],
        "intensity": intensity(c).to_k8s() if c else None,
        "predicted": predicted(c).to_k8s() if c else None,
        "keptCurrent": plan.kept_current,
        "hysteresis": plan.hysteresis,
        "load": {"outputTokensPerSecond": plan.load_tokens_per_second, "source": plan.load_source},
        "failedConstraints": [
            {"field": f.field, "reason": f.reason, "message": f.message, "required": f.required, "limit": f.limit}
            for f in plan.failed_constraints
        ],
        "warnings": list(plan.warnings),
        "alternatives": alts,
        "status": {k: v for k, v in plan_to_status(plan, now).to_k8s().items() if k in PLAN_STATUS_FIELDS},
    }
