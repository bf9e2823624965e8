"""``plan(spec, catalog, observed, now) -> Plan``: the pure decision engine (see docs/planner.md).

Enumerates variant x GPU product (sizing is region-independent, so it is computed once per pair)
x region (carbon, free GPUs). Every candidate that is not chosen is either rejected with a reason
from ``policies.REASONS`` or ranked below the chosen one with its numbers. No I/O, no clock.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from datetime import datetime

from greenmodel.api.v1alpha1 import (
    MAX_ALTERNATIVES,
    CarbonFallback,
    GreenModelSpec,
    ModelCatalogSpec,
    ModelVariant,
    Policy,
    Profile,
)
from greenmodel.planning import capacity, memory, policies
from greenmodel.planning.types import (
    Candidate,
    FailedConstraint,
    Intensity,
    Observed,
    Plan,
    Rejection,
)

HOURS_PER_YEAR = 8760.0
# A reading older than this (but within spec.missingData.maxHoldSeconds) is reported as "Held".
FRESH_SECONDS = 3600.0
MAX_REJECTIONS = 200  # bound on the detail kept (counts are still exact in the message)


@dataclass(slots=True)
class _Pair:
    """Region-independent numbers of one variant on one GPU product."""

    variant: ModelVariant
    profile: Profile
    sizing: capacity.Sizing
    gpus_per_replica: int
    embodied_g_per_gpu_hour: float
    batch_cap: int
    memory: memory.MemoryFit


# Operating tables by profile identity (the catalog object is reused between reconciles; a re-parsed
# catalog gets new entries). Bounded; the profile is kept in the value so its id cannot be reused
# while cached. Catalog models are treated as immutable once parsed.
_TABLES: dict[int, tuple[Profile, capacity.OperatingTable]] = {}
_TABLES_MAX = 8192


def _table(profile: Profile) -> capacity.OperatingTable:
    hit = _TABLES.get(id(profile))
    if hit is not None and hit[0] is profile:
        return hit[1]
    pts = sorted(profile.batch, key=lambda p: p.max_batch_size)
    table = capacity.OperatingTable(
        tuple(p.max_batch_size for p in pts),
        tuple(p.output_tokens_per_second for p in pts),
        tuple(p.inter_token_p95_milliseconds for p in pts),
        tuple(p.power_watts for p in pts),
    )
    if len(_TABLES) >= _TABLES_MAX:
        _TABLES.clear()
    _TABLES[id(profile)] = (profile, table)
    return table


def operating_table(profile: Profile) -> capacity.OperatingTable:
    """A profile's measured batch points as the capacity model's table (cached per profile)."""
    return _table(profile)


@dataclass(frozen=True, slots=True)
class PairModel:
    """The planner's model of one variant profile on one GPU product for one spec: the operating
    point at the ITL SLO, prefill time, idle power. ``idx`` is None when no batch meets the ITL SLO."""

    table: capacity.OperatingTable
    idx: int | None
    prefill_ms: float
    idle_watts_replica: float
    gpus_per_replica: int

    def size(self, spec: GreenModelSpec, load_tps: float, min_replicas: int, max_replicas: int) -> capacity.Sizing:
        """Replicas for ``load_tps`` within the bounds (``capacity.size``); requires ``idx``."""
        lat = spec.latency
        return capacity.size(self.table, self.idx, load_tps, float(spec.load.average_output_tokens),
                             self.prefill_ms, lat.ttft_p95_milliseconds, min_replicas, max_replicas,
                             self.idle_watts_replica)

    def evaluate(self, spec: GreenModelSpec, replicas: int, load_tps: float) -> capacity.Sizing | None:
        """Predicted latency and power of exactly ``replicas`` replicas at ``load_tps``
        (None when the ITL SLO is unreachable or there are no replicas)."""
        if self.idx is None or replicas <= 0:
            return None
        return self.size(spec, load_tps, replicas, replicas)


def pair_model(spec: GreenModelSpec, profile: Profile, idle_watts_per_gpu: float,
               latency_factor: float = 1.0, max_batch: int | None = None) -> PairModel:
    """The model of ``profile`` for ``spec``. ``latency_factor`` (learned from serving metrics, see
    ``learn_latency_factor``) scales every measured p95 ITL up by it and throughput down by it: the
    same batch runs that much slower, so the operating point at the ITL SLO and the capacity move.
    ``max_batch``: the sequences the replica's KV cache holds (``memory.fit``); larger points are cut."""
    table = capacity.capped(_table(profile), max_batch)
    if latency_factor != 1.0:
        f = latency_factor
        table = capacity.OperatingTable(table.batches, tuple(t / f for t in table.tokens_per_second),
                                        tuple(i * f for i in table.itl_p95_ms), table.power_watts)
    return PairModel(
        table=table,
        idx=capacity.operating_point(table, spec.latency.inter_token_p95_milliseconds),
        prefill_ms=1000.0 * spec.load.average_input_tokens / profile.prefill_tokens_per_second,
        idle_watts_replica=idle_watts_per_gpu * profile.gpus_per_replica,
        gpus_per_replica=profile.gpus_per_replica,
    )


def _size_for_peak(pm: PairModel, spec: GreenModelSpec, load: float) -> capacity.Sizing:
    """Replicas for the peak (``load x spec.load.peakToMeanRatio``); latency, utilisation and power
    of those replicas at the mean load (what energy and carbon accrue at)."""
    ratio = spec.load.peak_to_mean_ratio
    peak = pm.size(spec, load * ratio, spec.min_replicas, spec.max_replicas)
    if ratio == 1.0 or load <= 0:
        return peak
    at_mean = pm.size(spec, load, peak.replicas, peak.replicas)
    return replace(at_mean, needed=peak.needed, slo_met=peak.slo_met,
                   why=f"{peak.why} (the peak: {ratio:g} x the mean {load:.0f} tok/s, spec.load.peakToMeanRatio)")


# Learning each variant's real capacity at the SLO from serving metrics (see docs/planner.md).
LEARN_MIN_UTILIZATION = 0.2  # below this the p95 ITL is mostly fixed cost and noise: nothing is learned
LEARN_RATE = 0.5  # weight of this pass's observation (geometric average with the previous factor)
LEARN_BOUNDS = (0.5, 4.0)  # one observation is clamped to this: a factor corrects the catalog, never replaces it


def learn_latency_factor(spec: GreenModelSpec, catalog: ModelCatalogSpec, observed: Observed,
                         now: datetime) -> tuple[dict[tuple[str, str], float], str]:
    """(learned factors, note): update the current placement's latency factor from the observed p95
    ITL against the catalog model's p95 ITL at the observed load and replicas. Nothing is learned
    without a current placement, fresh metrics with an ITL and a load, or when the model says the
    replicas are under ``LEARN_MIN_UTILIZATION`` busy."""
    learned = dict(observed.learned)
    cur, m = observed.current, observed.metrics
    if cur is None or m is None or cur.replicas <= 0:
        return learned, ""
    if m.observed_at is not None and (now - m.observed_at).total_seconds() > spec.missing_data.max_hold_seconds:
        return learned, ""
    itl, tps = m.inter_token_p95_milliseconds, m.output_tokens_per_second
    if itl is None or tps is None or not math.isfinite(itl) or not math.isfinite(tps) or itl <= 0 or tps <= 0:
        return learned, ""
    variant = next((v for v in catalog.variants if v.name == cur.variant), None)
    prof = next((p for p in variant.profiles if p.gpu_product == cur.gpu_product), None) if variant else None
    gpu = next((g for g in catalog.gpus if g.product == cur.gpu_product), None)
    if prof is None or gpu is None:
        return learned, ""
    fitted = memory.fit(spec, variant, prof, gpu)
    model = pair_model(spec, prof, gpu.idle_watts, max_batch=fitted.max_sequences).evaluate(spec, cur.replicas, tps)
    if model is None or not math.isfinite(model.itl_p95_ms) or model.itl_p95_ms <= 0:
        return learned, ""
    if model.utilization < LEARN_MIN_UTILIZATION:
        return learned, (f"serving metrics: {tps:.0f} tok/s on {cur.replicas} replicas is {model.utilization:.0%} "
                         f"of modelled capacity (< {LEARN_MIN_UTILIZATION:.0%}); nothing learned")
    ratio = min(max(itl / model.itl_p95_ms, LEARN_BOUNDS[0]), LEARN_BOUNDS[1])
    key = (cur.variant, cur.gpu_product)
    prev = learned.get(key, 1.0)
    factor = math.exp((1.0 - LEARN_RATE) * math.log(prev) + LEARN_RATE * math.log(ratio))
    learned[key] = factor
    note = (f"learned from serving metrics: {cur.variant} on {cur.gpu_product} p95 ITL {itl:.1f} ms observed vs "
            f"{model.itl_p95_ms:.1f} ms modelled at {tps:.0f} tok/s on {cur.replicas} replicas; latency factor "
            f"{factor:.2f} (capacity x{1.0 / factor:.2f} of the catalog's)")
    return learned, note


def _load(spec: GreenModelSpec, observed: Observed, now: datetime) -> tuple[float, str]:
    m = observed.metrics
    if m is not None:
        fresh = m.observed_at is None or (now - m.observed_at).total_seconds() <= spec.missing_data.max_hold_seconds
        if fresh and m.output_tokens_per_second is not None:
            return max(0.0, m.output_tokens_per_second), "metrics"
        if fresh and m.request_rate_per_second is not None:
            return max(0.0, m.request_rate_per_second * spec.load.average_output_tokens), "metrics"
    return spec.load.tokens_per_second(), "spec.load"


def _resolve_intensity(spec: GreenModelSpec, region: str, obs, now: datetime) -> tuple[Intensity | None, str]:
    """The reading to use for a region (kind Held/Static when it is old/fallback), or (None, why)."""
    hold = spec.missing_data.max_hold_seconds
    r = obs.intensity
    if r is not None and r.grams_per_kwh is not None and math.isfinite(r.grams_per_kwh) and r.grams_per_kwh >= 0:
        age = (now - r.timestamp).total_seconds() if r.timestamp is not None else 0.0
        if age <= hold:
            if age > FRESH_SECONDS and r.kind.lower() != "forecast":
                return replace(r, kind="Held"), ""
            return r, ""
        why = f"last reading is {age:.0f}s old, older than maxHoldSeconds {hold}"
    else:
        why = "no intensity reading"
    if spec.missing_data.carbon_fallback == CarbonFallback.STATIC_INTENSITY:
        s = obs.static_intensity
        if s is not None:
            return replace(s, kind="Static"), ""
        return None, f"{why} and no static intensity configured for {region}"
    return None, f"{why} (carbonFallback ExcludeRegion)"


def _latency_norm(ttft: float, itl: float, spec: GreenModelSpec) -> float:
    return max(ttft / spec.latency.ttft_p95_milliseconds, itl / spec.latency.inter_token_p95_milliseconds)


def _score(policy: Policy, grams_per_hour: float, lat_norm: float) -> float:
    """Lower is better. The load is the same for every candidate, so grams per hour ranks exactly
    as grams per million tokens does, and stays defined at zero load."""
    if policy == Policy.CARBON_FIRST:
        return grams_per_hour
    if policy == Policy.LATENCY_FIRST:
        return lat_norm
    return grams_per_hour * (1.0 + lat_norm)  # Balanced


def plan(spec: GreenModelSpec, catalog: ModelCatalogSpec, observed: Observed, now: datetime) -> Plan:
    load, load_source = _load(spec, observed, now)
    rejected: list[Rejection] = []
    n_rejected = 0

    def reject(variant: str, region: str | None, product: str | None, reason: str, message: str,
               cand: Candidate | None = None, required: float | None = None, limit: float | None = None) -> None:
        nonlocal n_rejected
        n_rejected += 1
        if len(rejected) < MAX_REJECTIONS:
            rejected.append(Rejection(variant, region, product, reason, message, cand, required, limit))

    family = [v for v in catalog.variants if v.family == spec.model.family]
    if not family:
        known = sorted({v.family for v in catalog.variants})
        msg = f"spec.model.family: {spec.model.family!r} is not in the catalog (it has: {', '.join(known)})"
        return Plan(False, None, "CatalogEntryNotFound", msg, load_tokens_per_second=load, load_source=load_source,
                    learned=dict(observed.learned),
                    failed_constraints=(FailedConstraint("spec.model.family", "CatalogEntryNotFound", msg),))

    # --- regions: which ones, with which intensity -----------------------------------------
    if spec.placement.regions is not None:
        region_names = list(spec.placement.regions)
    else:
        region_names = sorted(observed.regions)
    regions: list[tuple[str, Intensity, float, object]] = []  # name, intensity, pue, free map
    for name in region_names:
        obs = observed.regions.get(name)
        if obs is None:
            reject("*", name, None, "RegionUnknown", f"no observation for region {name}")
            continue
        inten, why = _resolve_intensity(spec, name, obs, now)
        if inten is None:
            reject("*", name, None, "CarbonDataMissing", f"{name}: {why}")
            continue
        regions.append((name, inten, max(1.0, obs.pue), obs.free_gpus))

    # --- variant x GPU product: quality, fit, sizing (region-independent) ------------------
    learned, learning = learn_latency_factor(spec, catalog, observed, now)
    itl_slo = spec.latency.inter_token_p95_milliseconds
    ttft_slo = spec.latency.ttft_p95_milliseconds
    gpus = {g.product: g for g in catalog.gpus}
    pairs: list[_Pair] = []
    cur = observed.current
    cur_gpr = 0  # GPUs per replica of the current placement (its GPUs count as available where it runs)
    if cur is not None:
        for v in catalog.variants:
            if v.name == cur.variant:
                cur_gpr = next((p.gpus_per_replica for p in v.profiles if p.gpu_product == cur.gpu_product), 0)
    for v in family:
        failed = False
        for check in policies.VARIANT_POLICIES:
            reason, message, bad = check(spec, v)
            if bad:
                req = spec.quality.min_score if reason == "BelowQualityFloor" and spec.quality else None
                lim = v.quality.get(spec.quality.benchmark) if reason == "BelowQualityFloor" and spec.quality else None
                reject(v.name, None, None, reason, message, required=req, limit=lim)
                failed = True
                break
        if failed:
            continue
        for prof in v.profiles:
            product = prof.gpu_product
            reason, message, bad = policies.gpu_product_allowed(spec, product)
            if not bad:
                reason, message, bad = policies.gpu_product_known(prof, gpus.get(product))
            if bad:
                reject(v.name, None, product, reason, message)
                continue
            gpu = gpus[product]
            fitted = memory.fit(spec, v, prof, gpu)
            if not fitted.fits:
                reject(v.name, None, product, fitted.reason, fitted.message)
                continue
            pm = pair_model(spec, prof, gpu.idle_watts, learned.get((v.name, product), 1.0), fitted.max_sequences)
            table = pm.table
            if pm.idx is None:
                reason, message, bad = policies.itl_reachable(spec, min(table.itl_p95_ms))
                reject(v.name, None, product, reason, message, required=itl_slo, limit=min(table.itl_p95_ms))
                continue
            floor_ms = pm.prefill_ms + table.itl_p95_ms[0]
            reason, message, bad = policies.ttft_reachable(spec, floor_ms)
            if bad:
                reject(v.name, None, product, reason, message, required=ttft_slo, limit=floor_ms)
                continue
            sizing = _size_for_peak(pm, spec, load)
            emb = gpu.embodied_kilograms * 1000.0 / (gpu.lifetime_years * HOURS_PER_YEAR)
            pairs.append(_Pair(v, prof, sizing, pm.gpus_per_replica, emb, table.batches[pm.idx], fitted))

    # --- region loop: carbon and free GPUs (the hot loop: keep it to arithmetic) ---------------
    policy = spec.policy
    carbon_slo = spec.carbon.max_grams_per_million_tokens
    # carbon SLO as grams per hour at this load (same ranking, no division in the loop)
    slo_gph = carbon_slo * load * 3.6e-3 if carbon_slo is not None and load > 0 else math.inf
    carbon_first, latency_first = policy == Policy.CARBON_FIRST, policy == Policy.LATENCY_FIRST
    entries: list[tuple] = []  # sort keys with what is needed to build the Candidate
    best_effort: list[tuple] = []
    seq = 0
    cur_region = cur.region if cur is not None else None
    cur_product = cur.gpu_product if cur is not None else None
    # Regions cleanest first (PUE x intensity). Within one variant/GPU pair every key component
    # (carbon-SLO bucket, score, then enumeration order) is non-decreasing along this order, so only
    # the first K accepted regions of a pair can enter the overall top K: the rest are skipped
    # (exact, and it keeps plan() fast). The current placement's pair is always enumerated fully.
    regions.sort(key=lambda r: r[2] * r[1].grams_per_kwh)
    top_k = MAX_ALTERNATIVES + 1
    for pr in pairs:
        s = pr.sizing
        product = pr.profile.gpu_product
        need_gpus = s.replicas * pr.gpus_per_replica
        lat = _latency_norm(s.ttft_p95_ms, s.itl_p95_ms, spec)
        neg_headroom = lat - 1.0
        emb_gph = need_gpus * pr.embodied_g_per_gpu_hour
        kw = s.power_watts / 1000.0
        target = entries if s.slo_met else best_effort
        factor = 1.0 + lat
        limit = len(regions) if (pr.variant.name == (cur.variant if cur else None) and product == cur_product) else top_k
        accepted = 0
        for name, inten, pue, free_map in regions:
            if accepted >= limit:
                break
            gph = kw * pue * inten.grams_per_kwh + emb_gph
            if free_map is not None:
                free = free_map.get(product, 0)
                if name == cur_region and product == cur_product:
                    free += cur.replicas * cur_gpr
                if need_gpus > free:
                    reject(pr.variant.name, name, product, "InsufficientGPUs",
                           f"needs {need_gpus} {product} in {name} ({s.replicas} x {pr.gpus_per_replica}), {free} free",
                           required=need_gpus, limit=free)
                    continue
            seq += 1
            accepted += 1
            score = gph if carbon_first else (lat if latency_first else gph * factor)
            target.append(((0 if gph <= slo_gph else 1, score, neg_headroom, seq), pr, name, inten, pue, gph, lat))

    def build(item) -> Candidate:
        key, pr, name, inten, pue, gph, lat = item
        s = pr.sizing
        g_mtok = scope2 = emb = jpt = None
        if load > 0:
            tok_per_hour = load * 3600.0
            emb_gph = s.replicas * pr.gpus_per_replica * pr.embodied_g_per_gpu_hour
            g_mtok = gph / tok_per_hour * 1e6
            emb = emb_gph / tok_per_hour * 1e6
            scope2 = g_mtok - emb
            jpt = s.power_watts / load
        return Candidate(
            variant=pr.variant.name, region=name, gpu_product=pr.profile.gpu_product, replicas=s.replicas,
            gpus_per_replica=pr.gpus_per_replica, batch_cap=pr.batch_cap, load_tokens_per_second=load,
            capacity_tokens_per_second=s.capacity_tps, utilization=s.utilization, ttft_p95_ms=s.ttft_p95_ms,
            itl_p95_ms=s.itl_p95_ms, power_watts=s.power_watts, joules_per_token=jpt, intensity=inten, pue=pue,
            scope2_g_per_mtok=scope2, embodied_g_per_mtok=emb, g_per_mtok=g_mtok, grams_per_hour=gph,
            slo_met=s.slo_met, carbon_slo_met=None if carbon_slo is None else key[0] == 0,
            latency_headroom=1.0 - lat, score=key[1],
            runtime_args=tuple(pr.variant.runtime.args) + tuple(pr.profile.runtime_args),
            max_model_len=pr.memory.max_model_len, gpu_memory_utilization=pr.memory.gpu_memory_utilization,
            memory_note=pr.memory.message,
        )

    common = dict(load_tokens_per_second=load, load_source=load_source, learned=learned, learning=learning)
    if not entries:
        return _infeasible(spec, rejected, n_rejected, best_effort, build, pairs, regions, common)

    top = heapq.nsmallest(MAX_ALTERNATIVES + 1, entries, key=lambda e: e[0])
    best = build(top[0])
    alternatives = tuple(build(e) for e in top[1:])

    # --- hysteresis --------------------------------------------------------------------------
    chosen, kept, verdict = best, False, ""
    reason, message = "Placed", _describe(best, spec, policy)
    current: Candidate | None = None  # the current placement, priced now in its own region
    if cur is not None:
        cur_item = next((e for e in entries if e[1].variant.name == cur.variant and e[2] == cur.region
                         and e[1].profile.gpu_product == cur.gpu_product), None)
        if best.placement == cur.placement:
            reason, kept, current = "KeptCurrent", True, best
            verdict = "current placement is still the best"
        elif cur_item is None:
            # not feasible any more; its numbers, if it was evaluated, are on its rejection
            current = next((rj.candidate for rj in rejected if rj.candidate is not None
                            and rj.candidate.placement == cur.placement), None)
            reason = "Switched"
            verdict = (f"current placement {cur.variant}/{cur.region}/{cur.gpu_product} is no longer feasible; "
                       "switching now")
        else:
            current = build(cur_item)
            dwell = (now - cur.since).total_seconds()
            min_dwell = spec.hysteresis.min_dwell_seconds
            need_pct = spec.hysteresis.min_improvement_percent
            better_bucket = best.carbon_slo_met is True and current.carbon_slo_met is False
            gain = 100.0 * (current.score - best.score) / current.score if current.score > 0 else 0.0
            if not better_bucket and gain < need_pct:
                chosen, kept, reason = current, True, "KeptCurrent"
                verdict = (f"best alternative {best.variant}/{best.region}/{best.gpu_product} improves the score by "
                           f"{gain:.1f}% < minImprovementPercent {need_pct:g}")
            elif dwell < min_dwell:
                chosen, kept, reason = current, True, "KeptCurrent"
                verdict = (f"best alternative {best.variant}/{best.region}/{best.gpu_product} improves the score by "
                           f"{gain:.1f}%, but the current placement is only {dwell:.0f}s old "
                           f"(minDwellSeconds {min_dwell})")
            else:
                reason = "Switched"
                verdict = (f"{best.variant}/{best.region}/{best.gpu_product} improves the score by {gain:.1f}% "
                           f">= {need_pct:g}% after {dwell:.0f}s >= {min_dwell}s")
            if kept:
                alternatives = tuple(c for c in (best, *alternatives) if c.placement != current.placement)
        message = _describe(chosen, spec, policy) + "; " + verdict
    if learning:
        message += "; " + learning
    warnings = ()
    if chosen.carbon_slo_met is False:
        warnings = (f"no feasible placement meets the carbon SLO {carbon_slo:g} gCO2e/Mtok; "
                    f"best is {chosen.g_per_mtok:.1f}",)
    return Plan(True, chosen, reason, message, kept_current=kept, hysteresis=verdict, best=best, current=current,
                alternatives=alternatives[:MAX_ALTERNATIVES], rejected=tuple(rejected),
                evaluated=len(entries) + len(best_effort), warnings=warnings, **common)


def _describe(c: Candidate, spec: GreenModelSpec, policy: Policy) -> str:
    g = f"{c.g_per_mtok:.1f} gCO2e/Mtok" if c.g_per_mtok is not None else f"{c.grams_per_hour:.0f} gCO2e/h (no load)"
    return (f"{policy.value}: {c.variant} on {c.replicas}x{c.gpus_per_replica} {c.gpu_product} in {c.region} "
            f"at {c.intensity.grams_per_kwh:.0f} g/kWh ({c.intensity.kind}): {g}, "
            f"p95 TTFT {c.ttft_p95_ms:.0f}/{spec.latency.ttft_p95_milliseconds} ms, "
            f"p95 ITL {c.itl_p95_ms:.1f}/{spec.latency.inter_token_p95_milliseconds} ms")


_FIELD = {
    "BelowQualityFloor": "spec.quality.minScore",
    "QualityUnknown": "spec.quality.benchmark",
    "VariantNotAllowed": "spec.model.variants",
    "GPUProductNotAllowed": "spec.placement.gpuProducts",
    "GPUProductUnknown": "spec.placement.gpuProducts",
    "DoesNotFit": "spec.placement.gpuProducts",
    "InterTokenLatencyUnreachable": "spec.latency.interTokenP95Milliseconds",
    "TTFTUnreachable": "spec.latency.ttftP95Milliseconds",
    "ReplicaBoundTooLow": "spec.maxReplicas",
    "InsufficientGPUs": "spec.placement",
    "RegionUnknown": "spec.placement.regions",
    "CarbonDataMissing": "spec.missingData",
}


def _infeasible(spec, rejected, n_rejected, best_effort, build, pairs, regions, common) -> Plan:
    failed: list[FailedConstraint] = []
    if best_effort:
        top = min(best_effort, key=lambda e: (e[1].sizing.needed == 0, e[1].sizing.needed, e[0]))
        be = build(top)
        pr = top[1]
        needed = pr.sizing.needed
        if needed:
            msg = (f"{be.variant} on {be.gpu_product} needs {needed} replicas {pr.sizing.why}; "
                   f"maxReplicas is {spec.max_replicas}")
            failed.append(FailedConstraint("spec.maxReplicas", "ReplicaBoundTooLow", msg, needed, spec.max_replicas))
        else:
            msg = (f"even {spec.max_replicas}+ replicas of {be.variant} on {be.gpu_product} give p95 TTFT "
                   f"{be.ttft_p95_ms:.0f} ms > {spec.latency.ttft_p95_milliseconds} ms")
            failed.append(FailedConstraint("spec.latency.ttftP95Milliseconds", "TTFTUnreachable", msg,
                                           spec.latency.ttft_p95_milliseconds, be.ttft_p95_ms))
        reason = "SLOUnreachableWithinBounds"
        message = f"no placement meets the latency SLO within replica bounds: {msg}; best effort {be.variant}/{be.region}/{be.gpu_product} with {be.replicas} replicas"
        return Plan(False, be, reason, message, best=be, rejected=tuple(rejected),
                    failed_constraints=tuple(failed), evaluated=len(best_effort), **common)
    if not regions:
        msg = "no candidate region has an observation and usable carbon data"
        if not spec.placement.regions and not rejected:
            msg = "no candidate regions: spec.placement.regions is unset and none were observed"
        failed.append(FailedConstraint("spec.placement.regions", "NoCandidateRegion", msg))
    # Summarise per reason: the closest miss (largest limit vs required where numbers exist).
    by_reason: dict[str, list[Rejection]] = {}
    for r in rejected:
        by_reason.setdefault(r.reason, []).append(r)
    for reason, rs in by_reason.items():
        if reason == "CarbonDataMissing" and regions:
            continue
        with_nums = [r for r in rs if r.required is not None and r.limit is not None]
        if with_nums:
            if reason in ("InterTokenLatencyUnreachable", "TTFTUnreachable", "InsufficientGPUs"):
                closest = min(with_nums, key=lambda r: r.limit - r.required if reason != "InsufficientGPUs"
                              else r.required - r.limit)
            else:
                closest = max(with_nums, key=lambda r: r.limit - r.required)
            ex = closest
        else:
            ex = rs[0]
        where = "/".join(x for x in (ex.variant, ex.region, ex.gpu_product) if x and x != "*")
        msg = f"{len(rs)} candidate(s) rejected: {ex.message}" + (f" ({where})" if where else "")
        failed.append(FailedConstraint(_FIELD.get(reason, "spec"), reason, msg, ex.required, ex.limit))
    if not failed:
        failed.append(FailedConstraint("spec", "NoFeasibleCandidate", "no candidate was evaluated"))
    pair_stage = ["BelowQualityFloor", "QualityUnknown", "VariantNotAllowed", "GPUProductNotAllowed",
                  "GPUProductUnknown", "DoesNotFit", "InterTokenLatencyUnreachable", "TTFTUnreachable"]
    region_stage = ["NoCandidateRegion", "RegionUnknown", "CarbonDataMissing"]
    order = ["CatalogEntryNotFound", *pair_stage, *region_stage, "InsufficientGPUs"]
    failed.sort(key=lambda f: order.index(f.reason) if f.reason in order else len(order))
    # The reason is the constraint that stopped the candidates that got furthest: with no variant x GPU
    # pair left, the latest pair check any pair failed (a GPU product nobody allows beats a floor that
    # only the small variants miss); with pairs but no region, the region check; else free GPUs.
    stage = pair_stage if not pairs else region_stage if not regions else ["InsufficientGPUs"]
    in_stage = [f for f in failed if f.reason in stage]
    top = max(in_stage, key=lambda f: stage.index(f.reason)) if in_stage else failed[0]
    # The Ready/Stalled reason names the constraint that failed first (the spec field is in the message).
    reason = "NoGPUAvailable" if top.reason == "InsufficientGPUs" else top.reason
    message = "; ".join(f"{f.field}: {f.message}" for f in failed)
    return Plan(False, None, reason, message, rejected=tuple(rejected), failed_constraints=tuple(failed), **common)
