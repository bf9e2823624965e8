"""The baselines a platform engineer would actually run, chosen and sized by the ground truth (issue 16, section 2).

Every choice here is made with the ground truth's own numbers (:class:`~greenmodel.groundtruth.judge.Judge`), in
hindsight where the name says so, never with the planner's model. Candidates: the GreenModel family's variants
at or above the quality floor, on each GPU product their catalog profiles name, whose weights and one request fit
(KV cache > 0); each at the engine settings the operator deploys. "Meets the SLO" means the ground truth's p95
TTFT and p95 ITL of that hour are within it. Only the judged hours are looked at (see ``sampled`` in the output);
between them a policy keeps its choice, so its switches are counted on the judged hours.

* ``best-fixed``: one variant, GPU and region for the whole period, replicas sized for the period's peak hour
  (the fewest meeting the SLO there), the least carbon over the period among those meeting the SLO in every
  judged hour (else the most hours, then the least carbon).
* ``best-fixed-autoscaled``: best-fixed's variant, GPU and region, replicas from a reactive autoscaler: KEDA on
  ``vllm:num_requests_waiting`` with target 5 per replica, as vLLM production-stack ships it. Each hour the fewest
  replicas whose time-averaged waiting requests per replica are <= 5 at that hour's load (the autoscaler's steady
  state; its reaction lag inside the hour is not simulated).
* ``carbon-cap``: the same, capped by the region's intensity buckets (the Azure carbon-aware KEDA operator:
  100 / 75 / 50 % of the peak replicas in the cleanest / middle / dirtiest third of hours).
* ``region-follow``: best-fixed's variant and GPU, each hour the cleanest region, autoscaled as above.
* ``model-choice``: best-fixed's region, each hour the candidate with the least carbon meeting the SLO at its
  fewest replicas.
* ``relaxed-oracle``: each hour every candidate x region at its fewest replicas meeting the SLO, the exact
  cheapest sequence over the period with the switch overlap charged (the limit any policy can reach with these
  candidates and the same switch cost).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from greenmodel.bench import policies as bpol
from greenmodel.bench.metrics import PolicyRun
from greenmodel.bench.truth import TruthUnavailable, deployment, switch_overlap_kwh
from greenmodel.groundtruth.judge import Deployment, Judge

MAX_REPLICAS = 32
KEDA_TARGET_WAITING = 5.0


class Table:
    """Ground-truth figures by (candidate, replicas, hour), with the searches the baselines need."""

    def __init__(self, sc, model, judge: Judge, hours: list[int]):
        self.sc, self.model, self.judge, self.hours = sc, model, judge, hours
        self.candidates: list[tuple[str, str, Deployment]] = []
        q = sc.spec.quality
        floor = q.min_score if q else None
        for v in sc.catalog.variants:
            if v.family != sc.spec.model.family:
                continue
            if sc.spec.model.variants is not None and v.name not in sc.spec.model.variants:
                continue
            if floor is not None and not model.quality(v.name) >= floor:
                continue
            for prof in v.profiles:
                if prof.gpu_product not in model.gpus:
                    continue
                try:
                    d = deployment(sc, model, v.name, prof.gpu_product)
                    cfg = judge.config(d)
                except (TruthUnavailable, LookupError):
                    continue
                # weights and a request must fit; one decode step alone must be within the ITL SLO
                if cfg.kv_tokens <= 0 or cfg.curve.step_ms(1) > judge.itl_slo_ms:
                    continue
                self.candidates.append((v.name, prof.gpu_product, d))
        if not self.candidates:
            raise TruthUnavailable("no candidate variant x GPU above the quality floor fits for the baselines")
        self._min: dict[tuple[int, int], int | None] = {}
        self._infeasible_from: dict[int, float] = {}  # candidate -> a load at which MAX_REPLICAS did not do
        self._keda: dict[tuple[int, int], int] = {}

    def load(self, h: int) -> float:
        return float(self.sc.load.output_tokens_per_s[h])

    def truth(self, c: int, n: int, h: int):
        return self.judge.hour(self.candidates[c][2], n, self.load(h), h)

    @staticmethod
    def _search(ok, start: int) -> int | None:
        """Fewest n in [1, MAX_REPLICAS] with ok(n) (assumed monotone): down from ``start`` while ok, else doubling
        up from it, then bisection."""
        n = max(1, min(start, MAX_REPLICAS))
        if ok(n):
            while n > 1 and ok(n - 1):
                n -= 1
            return n
        lo, hi = n, None
        while lo < MAX_REPLICAS:
            m = min(MAX_REPLICAS, lo * 2)
            if ok(m):
                hi = m
                break
            lo = m
        if hi is None:
            return None
        while hi - lo > 1:  # ok(lo) false, ok(hi) true
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ok(mid) else (mid, hi)
        return hi

    def min_replicas(self, c: int, h: int, start: int = 1) -> int | None:
        """Fewest replicas of candidate ``c`` meeting the SLO in hour ``h`` (None: not with MAX_REPLICAS)."""
        key = (c, h)
        if key not in self._min:
            if self.load(h) >= self._infeasible_from.get(c, math.inf):
                self._min[key] = None
            else:
                self._min[key] = self._search(lambda n: self.truth(c, n, h).slo_met, start)
                if self._min[key] is None:
                    self._infeasible_from[c] = min(self.load(h), self._infeasible_from.get(c, math.inf))
        return self._min[key]

    def keda_replicas(self, c: int, h: int, start: int = 1) -> int:
        key = (c, h)
        if key not in self._keda:
            n = self._search(lambda n: self.truth(c, n, h).mean_waiting / n <= KEDA_TARGET_WAITING, start)
            self._keda[key] = n or MAX_REPLICAS
        return self._keda[key]

    def idle_kwh_of_switch(self, c: int, n: int) -> float:
        return switch_overlap_kwh(self.sc, self.candidates[c][2], n)


def _run(sc, name: str, description: str, choice: dict[int, tuple[str, str, int, int]]) -> PolicyRun:
    """A PolicyRun over every hour from choices on the judged hours (held until the next judged hour)."""
    run = PolicyRun(name, description)
    hs = sorted(choice)
    j = 0
    prev = None
    for h in range(sc.hours):
        while j + 1 < len(hs) and hs[j + 1] <= h:
            j += 1
        v, product, region_i, n = choice[hs[j]]
        cur = (v, product, region_i)
        run.append(region=sc.regions[region_i], variant=v, gpu_product=product, replicas=n, pue=sc.pue,
                   intensity=float(sc.intensity[region_i, h]), switched=prev is not None and cur != prev)
        prev = cur
    return run


def build(sc, model, judge: Judge, hours: list[int]) -> tuple[list[PolicyRun], dict[str, Any]]:
    t = Table(sc, model, judge, hours)
    peak_h = int(np.argmax(sc.load.output_tokens_per_s))
    R = len(sc.regions)
    info: dict[str, Any] = {"candidates": [f"{v} on {p}" for v, p, _ in t.candidates]}

    # ---- best-fixed: peak-sized, the least carbon over the judged hours
    best = None
    for c, (v, product, _) in enumerate(t.candidates):
        n = t.min_replicas(c, peak_h)
        if n is None:
            continue
        rows = [t.truth(c, n, h) for h in hours]
        met = sum(r.slo_met for r in rows)
        tokens = sum(r.output_tokens for r in rows)
        for ri in range(R):
            grams = sum(r.energy_kwh * sc.pue * sc.intensity[ri, h] for r, h in zip(rows, hours))
            key = (-met, grams / tokens if tokens else math.inf)
            if best is None or key < best[0]:
                best = (key, c, ri, n)
    if best is None:
        raise TruthUnavailable("no candidate meets the SLO at the peak hour with up to "
                               f"{MAX_REPLICAS} replicas: no best-fixed baseline")
    _, bc, br, bn = best
    bv, bp, _ = t.candidates[bc]
    info["bestFixed"] = {"variant": bv, "gpuProduct": bp, "region": sc.regions[br], "replicas": bn,
                         "peakOutputTokensPerSecond": t.load(peak_h)}
    runs = [_run(sc, "best-fixed", f"{bv} on {bn}x {bp} in {sc.regions[br]} all period, sized by the ground truth "
                 f"for the peak hour ({t.load(peak_h):.0f} tok/s)", {h: (bv, bp, br, bn) for h in hours})]

    # ---- autoscaled (KEDA on waiting requests), and with the carbon-aware cap
    keda = {}
    prev = 1
    for h in hours:
        prev = keda[h] = t.keda_replicas(bc, h, prev)
    runs.append(_run(sc, "best-fixed-autoscaled", f"{bv} on {bp} in {sc.regions[br]}; replicas: KEDA on "
                     f"vllm:num_requests_waiting, target {KEDA_TARGET_WAITING:g} per replica",
                     {h: (bv, bp, br, keda[h]) for h in hours}))
    buckets = bpol.intensity_buckets(sc.intensity[br], max(keda.values()))
    capped = {h: (bv, bp, br, min(keda[h], bpol.cap_replicas(float(sc.intensity[br, h]), buckets))) for h in hours}
    runs.append(_run(sc, "carbon-cap", f"best-fixed-autoscaled capped by intensity buckets ("
                     + ", ".join(f"<= {b.threshold:.0f} g/kWh: {b.max_replicas}" for b in buckets[:-1])
                     + f", above: {buckets[-1].max_replicas})", capped))

    # ---- region-follow: fixed model, the cleanest region each hour, autoscaled
    runs.append(_run(sc, "region-follow", f"{bv} on {bp}, each hour the cleanest region, KEDA-autoscaled",
                     {h: (bv, bp, int(np.argmin(sc.intensity[:, h])), keda[h]) for h in hours}))

    # ---- per-hour costs of every candidate at its fewest SLO-meeting replicas (model-choice, relaxed oracle)
    C = len(t.candidates)
    need: dict[tuple[int, int], int | None] = {}
    for c in range(C):
        prev = 1
        for h in hours:
            n = t.min_replicas(c, h, prev)
            need[(c, h)] = n
            prev = n or prev
    grams_ch = np.full((len(hours), C, R), math.inf)
    switch = np.zeros((len(hours), C, R))
    for k, h in enumerate(hours):
        for c in range(C):
            n = need[(c, h)]
            if n is None:
                continue
            r = t.truth(c, n, h)
            g = r.energy_kwh * sc.pue * sc.intensity[:, h]
            # carbon of the hour, per token of the hour: every candidate serves the same tokens
            grams_ch[k, c, :] = g
            switch[k, c, :] = t.idle_kwh_of_switch(c, n) * sc.pue * sc.intensity[:, h]
    mc = {}
    fallback = 0
    for k, h in enumerate(hours):
        c = int(np.argmin(grams_ch[k, :, br]))
        if not math.isfinite(grams_ch[k, c, br]):  # nothing meets the SLO this hour: keep best-fixed's choice
            fallback += 1
            mc[h] = (bv, bp, br, bn)
        else:
            mc[h] = (t.candidates[c][0], t.candidates[c][1], br, need[(c, h)])
    runs.append(_run(sc, "model-choice", f"each hour the cleanest candidate meeting the SLO in {sc.regions[br]}"
                     + (f" (best-fixed's choice in {fallback} judged hour(s) where none does)" if fallback else ""),
                     mc))

    flat = grams_ch.reshape(len(hours), C * R)
    feasible_hours = np.isfinite(flat).any(axis=1)
    if feasible_hours.all():
        path = bpol.cheapest_path(flat, switch.reshape(len(hours), C * R))
        ro = {h: (t.candidates[int(j) // R][0], t.candidates[int(j) // R][1], int(j) % R,
                  need[(int(j) // R, h)]) for h, j in zip(hours, path)}
        runs.append(_run(sc, "relaxed-oracle", "hindsight: every candidate x region each hour at its fewest replicas "
                         "meeting the SLO (ground truth), cheapest sequence with the switch overlap", ro))
    else:
        info["relaxedOracle"] = (f"no candidate meets the SLO with <= {MAX_REPLICAS} replicas in "
                                 f"{int((~feasible_hours).sum())} judged hour(s)")
    return runs, info
