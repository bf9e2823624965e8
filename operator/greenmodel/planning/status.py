"""The one mapping of a Plan onto GreenModel status fields and onto the CLI's JSON (pure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from greenmodel.api.v1alpha1 import (
    MAX_ALTERNATIVES,
    Alternative,
    Decision,
    IntensityKind,
    IntensityStatus,
    Predicted,
)
from greenmodel.planning.types import Candidate, Plan, Rejection


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def predicted(c: Candidate) -> Predicted:
    return Predicted(
        ttft_p95_milliseconds=_r(c.ttft_p95_ms, 1),
        inter_token_p95_milliseconds=_r(c.itl_p95_ms, 2),
        output_tokens_per_second=_r(c.load_tokens_per_second, 1),
        capacity_output_tokens_per_second=_r(c.capacity_tokens_per_second, 1),
        utilization=_r(c.utilization, 3),
        power_watts=_r(c.power_watts, 1),
        joules_per_token=_r(c.joules_per_token, 4),
        gpus=c.gpus,
        grams_per_million_tokens=_r(c.g_per_mtok, 3),
        scope2_grams_per_million_tokens=_r(c.scope2_g_per_mtok, 3),
        embodied_grams_per_million_tokens=_r(c.embodied_g_per_mtok, 3),
        grams_per_hour=_r(c.grams_per_hour, 3),
    )


def intensity(c: Candidate) -> IntensityStatus:
    i = c.intensity
    try:
        kind = IntensityKind(i.kind.capitalize() if i.kind.islower() else i.kind)
    except ValueError:
        kind = IntensityKind.ESTIMATED
    return IntensityStatus(grams_per_kilowatt_hour=round(i.grams_per_kwh, 2), source=i.source[:63],
                           zone=i.zone[:63], timestamp=i.timestamp, kind=kind)


def _alt_from_candidate(c: Candidate, chosen: Candidate | None, reason: str = "HigherScore") -> Alternative:
    msg = ""
    if chosen is not None and chosen.score > 0:
        msg = f"score {100.0 * (c.score - chosen.score) / chosen.score:+.1f}% vs chosen"
    if not c.slo_met:
        reason = "ReplicaBoundTooLow"
    return Alternative(variant=c.variant, region=c.region, gpu_product=c.gpu_product, replicas=c.replicas,
                       grams_per_million_tokens=_r(c.g_per_mtok, 3), ttft_p95_milliseconds=_r(c.ttft_p95_ms, 1),
                       inter_token_p95_milliseconds=_r(c.itl_p95_ms, 2), reason=reason, message=msg[:1024])


def _alt_from_rejection(r: Rejection) -> Alternative:
    return Alternative(variant=r.variant, region=r.region, gpu_product=r.gpu_product, reason=r.reason,
                       message=r.message[:1024])


def alternatives(plan: Plan, limit: int = MAX_ALTERNATIVES) -> list[Alternative]:
    """Bounded: feasible runners-up first, then one rejection per distinct reason, then the rest."""
    out = [_alt_from_candidate(c, plan.chosen) for c in plan.alternatives]
    seen: set[str] = set()
    first, rest = [], []
    for r in plan.rejected:
        (rest if r.reason in seen else first).append(r)
        seen.add(r.reason)
    budget = max(0, limit - min(len(out), limit // 2))
    rej = [_alt_from_rejection(r) for r in (first + rest)[:budget]]
    out = out[: limit - len(rej)] + rej
    return out[:limit]


def plan_to_status(plan: Plan, now: datetime | None = None) -> dict[str, Any]:
    """Status fields for the chosen placement (camelCase, JSON-ready). Conditions, observedGeneration,
    placedSince, readyReplicas and emissions are the reconciler's to set."""
    c = plan.chosen
    out: dict[str, Any] = {
        "decision": Decision(reason=plan.reason, message=plan.message[:4096], time=now,
                             kept_current=plan.kept_current).to_k8s(),
        "alternatives": [a.to_k8s() for a in alternatives(plan)],
    }
    if c is not None:
        out.update({
            "variant": c.variant,
            "region": c.region,
            "gpuProduct": c.gpu_product,
            "replicas": c.replicas,
            "intensity": intensity(c).to_k8s(),
            "predicted": predicted(c).to_k8s(),
        })
    return out


def _cand_json(c: Candidate) -> dict[str, Any]:
    return {
        "variant": c.variant, "region": c.region, "gpuProduct": c.gpu_product, "replicas": c.replicas,
        "gpusPerReplica": c.gpus_per_replica, "maxBatchSize": c.batch_cap,
        "intensity": intensity(c).to_k8s(), "pue": c.pue,
        "predicted": predicted(c).to_k8s(), "sloMet": c.slo_met, "carbonSLOMet": c.carbon_slo_met,
        "latencyHeadroom": _r(c.latency_headroom, 3), "score": _r(c.score, 6),
        "runtimeArgs": list(c.runtime_args),
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """Everything the CLI prints: the decision, its numbers, and every alternative with why it lost."""
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
    }
