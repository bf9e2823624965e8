"""The replay simulator: the same workload, hour by hour in simulated time, through four policies.

Policies (every one evaluated by the planner's own capacity and power model, ``planning.capacity``):

* ``static``: the highest-quality dense bf16/fp16 variant of the family, in the first region given,
  on the GPU product and with the replicas the real planner sizes for the period's peak hourly load.
* ``intensity-cap``: same variant, GPU and region; replicas follow the load (sized by the planner, as
  an autoscaler would) but are capped by intensity buckets, as the Azure carbon-aware KEDA operator
  does (see :mod:`greenmodel.bench.policies`).
* ``greenmodel``: the real ``plan()`` every hour with the current placement and ``since`` passed in,
  so its hysteresis (min improvement, dwell) acts exactly as in the operator. Like the operator, it
  sees the load of the last hour (serving metrics), not the load of the hour to come.
* ``oracle``: hindsight. Each hour the planner's candidates at the exact load and intensity of that
  hour (policy CarbonFirst, no hysteresis), then the exact cheapest sequence over the year including
  the cost of switching (:func:`greenmodel.bench.policies.cheapest_path`). A lower bound on the
  carbon of any policy that keeps the SLO and quality floor with the planner's candidates.

Every hour is evaluated at the load that actually arrives: p95 TTFT and ITL of the chosen replicas
at that load (the planner's queueing model), GPU power at that utilisation (idle power counts).
A switch of variant/region/GPU runs the new replicas beside the old ones for
``switch_overlap_minutes`` (zero-downtime switch), charged at the new replicas' idle power.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from greenmodel.api.v1alpha1 import (
    Architecture,
    GreenModelSpec,
    InvalidObject,
    ModelCatalogSpec,
    ModelVariant,
    Policy,
    Precision,
    Profile,
    parse_greenmodel,
    parse_modelcatalog,
)
from greenmodel.bench import data as bdata
from greenmodel.bench import policies as bpol
from greenmodel.bench.metrics import PolicyRun, summarise
from greenmodel.planning import plan
from greenmodel.planning.planner import PairModel, pair_model
from greenmodel.planning.types import CurrentPlacement, Intensity, Observed, Placement, Plan, RegionObs, ServingMetrics

HOUR = timedelta(hours=1)
HOURS_PER_YEAR = 8760.0
POLICY_ORDER = ("static", "intensity-cap", "greenmodel", "oracle")
TRUTH_ORDER = ("static", "best-fixed", "best-fixed-autoscaled", "carbon-cap", "region-follow", "model-choice",
               "greenmodel", "relaxed-oracle", "intensity-cap", "oracle")
REPO_ROOT = Path(__file__).resolve().parents[3]


class ScenarioError(ValueError):
    """The catalog/GreenModel/data combination cannot be benchmarked; the message says why."""


@dataclass
class Scenario:
    regions: list[str]
    start: datetime
    hours: int
    intensity: np.ndarray  # [region, hour] gCO2e/kWh
    estimated: np.ndarray  # [region, hour] bool
    intensity_sources: list[str]
    load: bdata.HourlyLoad
    spec: GreenModelSpec
    catalog: ModelCatalogSpec
    pue: float
    switch_overlap_minutes: float
    notes: list[str] = field(default_factory=list)
    catalog_source: str = ""
    greenmodel_source: str = ""
    trace: bdata.Trace | None = None  # the request trace (the ground truth replays its requests)


# ------------------------------------------------------------------------------------------
# Building the scenario
# ------------------------------------------------------------------------------------------


def _yaml_docs(path: str | Path, kind: str) -> dict:
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == kind:
            return d
    raise ScenarioError(f"{path}: no {kind} document")


def default_catalog_path() -> Path:
    try:
        p = resources.files("greenmodel") / "data" / "default-catalog.yaml"
        if p.is_file():
            return Path(str(p))
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover
        pass
    return REPO_ROOT / "examples" / "catalog.yaml"


def default_greenmodel_path() -> Path:
    return REPO_ROOT / "examples" / "greenmodel.yaml"


def load_catalog(path: str | Path | None) -> tuple[ModelCatalogSpec, str]:
    p = Path(path) if path else default_catalog_path()
    if not p.exists():
        raise ScenarioError(f"catalog {p} not found (give --catalog FILE)")
    try:
        return parse_modelcatalog(_yaml_docs(p, "ModelCatalog")).spec, str(p)
    except InvalidObject as exc:
        raise ScenarioError(f"{p}: {exc}") from None


def load_greenmodel(path: str | Path | None) -> tuple[GreenModelSpec, str]:
    p = Path(path) if path else default_greenmodel_path()
    if not p.exists():
        raise ScenarioError(f"GreenModel {p} not found (give --greenmodel FILE)")
    try:
        return parse_greenmodel(_yaml_docs(p, "GreenModel")).spec, str(p)
    except InvalidObject as exc:
        raise ScenarioError(f"{p}: {exc}") from None


def make_scenario(
    series: Sequence[bdata.IntensitySeries],
    trace: bdata.Trace,
    shape: np.ndarray,
    spec: GreenModelSpec,
    catalog: ModelCatalogSpec,
    *,
    days: float | None = None,
    pue: float = 1.2,
    switch_overlap_minutes: float = 10.0,
    load_scale: float = 1.0,
) -> Scenario:
    """Assemble a scenario from parsed inputs (pure: what tests use)."""
    start, hours = bdata.align(series)
    notes = []
    if days is not None:
        want = int(round(days * 24))
        if want <= 0:
            raise ScenarioError("--days must be > 0")
        if want > hours:
            notes.append(f"--days {days:g} asks for {want} h but the intensity files share {hours} h; using {hours} h")
        hours = min(hours, want)
    intensity = np.vstack([bdata.window(s, start, hours) for s in series])
    off = [int((start - s.start) / HOUR) for s in series]
    estimated = np.vstack([s.estimated[o : o + hours] for s, o in zip(series, off)])
    load = bdata.stretch(trace, shape, start, hours)
    notes.append(load.description + "; the stretched trace starts at the first common hour of the intensity files")
    if load_scale <= 0:
        raise ScenarioError("--load-scale must be > 0")
    if load_scale != 1.0:
        load = replace(load, output_tokens_per_s=load.output_tokens_per_s * load_scale,
                       requests_per_s=load.requests_per_s * load_scale)
        notes.append(f"load scaled x{load_scale:g} (--load-scale): {load.output_tokens_per_s.mean():.0f} output tok/s mean")
    # The benchmark's candidate regions are the intensity files' zones; the trace fixes the request mix.
    changes = []
    if spec.placement.regions is not None:
        changes.append(f"placement.regions {spec.placement.regions} -> the intensity zones")
    spec = spec.model_copy(deep=True)
    spec.placement.regions = None
    new_load = spec.load.model_copy(update={
        "average_output_tokens": max(1, int(round(load.mean_output_tokens))),
        "average_input_tokens": int(round(load.mean_context_tokens)),
        "output_tokens_per_second": float(load.output_tokens_per_s[0]),
        "requests_per_second": None,
    })
    changes.append(f"load prior -> the trace's mix ({new_load.average_input_tokens} in / "
                   f"{new_load.average_output_tokens} out tokens per request)")
    spec.load = new_load
    notes.append("GreenModel adjusted for the replay: " + "; ".join(changes))
    return Scenario(
        regions=[s.zone for s in series],
        start=start,
        hours=hours,
        intensity=intensity,
        estimated=estimated,
        intensity_sources=[s.source for s in series],
        load=load,
        spec=spec,
        catalog=catalog,
        pue=pue,
        switch_overlap_minutes=switch_overlap_minutes,
        notes=notes,
        trace=trace,
    )


def build_scenario(
    intensity_files: Sequence[str],
    trace_file: str,
    load_shape_file: str | None = None,
    catalog_file: str | None = None,
    greenmodel_file: str | None = None,
    days: float | None = None,
    pue: float = 1.2,
    switch_overlap_minutes: float = 10.0,
    load_scale: float = 1.0,
    min_quality: float | None = None,
) -> Scenario:
    if pue < 1.0:
        raise ScenarioError(f"--pue must be >= 1.0, got {pue}")
    if switch_overlap_minutes < 0:
        raise ScenarioError("--switch-overlap-minutes must be >= 0")
    series = [bdata.load_intensity(f) for f in intensity_files]
    trace = bdata.load_trace(trace_file)
    shape_path = load_shape_file or bdata.default_load_shape_path(trace_file)
    if shape_path is None:
        raise ScenarioError(f"no hourly-load-shape-*.csv next to {trace_file}; give --load-shape FILE")
    shape = bdata.load_load_shape(shape_path)
    catalog, csrc = load_catalog(catalog_file)
    spec, gsrc = load_greenmodel(greenmodel_file)
    if min_quality is not None:
        if spec.quality is None:
            raise ScenarioError("--min-quality needs a GreenModel with spec.quality (its benchmark)")
        spec = spec.model_copy(deep=True)
        spec.quality.min_score = min_quality
        gsrc += f" (quality floor overridden: {spec.quality.benchmark} >= {min_quality:g})"
    sc = make_scenario(series, trace, shape, spec, catalog, days=days, pue=pue,
                       switch_overlap_minutes=switch_overlap_minutes, load_scale=load_scale)
    sc.catalog_source, sc.greenmodel_source = csrc, gsrc
    sc.notes.append(f"load shape: {shape_path}")
    return sc


# ------------------------------------------------------------------------------------------
# The planner's capacity model, evaluated at the load that actually arrives
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Eval:
    ttft_ms: float
    itl_ms: float
    power_w: float
    slo_met: bool


class Model:
    """Placement lookups and evaluation with ``planning.capacity`` (the planner's own model)."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.spec = sc.spec
        self.variants = {v.name: v for v in sc.catalog.variants}
        self.gpus = {g.product: g for g in sc.catalog.gpus}
        self._prep: dict[tuple[str, str], PairModel] = {}
        self._max_load: dict[tuple[str, str, int], float] = {}

    def profile(self, variant: str, product: str) -> Profile:
        for p in self.variants[variant].profiles:
            if p.gpu_product == product:
                return p
        raise KeyError((variant, product))

    def _prepare(self, variant: str, product: str) -> PairModel:
        key = (variant, product)
        if key not in self._prep:
            self._prep[key] = pair_model(self.spec, self.profile(variant, product), self.gpus[product].idle_watts)
        return self._prep[key]

    def gpus_per_replica(self, variant: str, product: str) -> int:
        return self._prepare(variant, product).gpus_per_replica

    def batch_cap(self, variant: str, product: str) -> int:
        """The batch cap the operator deploys (``--max-num-seqs``): the operating point at the ITL SLO, else the
        largest measured batch."""
        pm = self._prepare(variant, product)
        return int(pm.table.batches[pm.idx] if pm.idx is not None else pm.table.batches[-1])

    def idle_watts(self, variant: str, product: str, replicas: int) -> float:
        return self._prepare(variant, product).idle_watts_replica * replicas

    def evaluate(self, variant: str, product: str, replicas: int, load_tps: float) -> Eval:
        """p95 latency and power of exactly ``replicas`` replicas at ``load_tps`` (no headroom rule:
        the SLO is met when the predicted p95 TTFT and ITL are within it and the replicas keep up)."""
        pm = self._prepare(variant, product)
        s = pm.evaluate(self.spec, replicas, load_tps)
        if s is None:
            return Eval(math.inf, math.inf, 0.0 if replicas <= 0 else pm.idle_watts_replica * replicas, False)
        lat = self.spec.latency
        ok = s.utilization < 1.0 and s.ttft_p95_ms <= lat.ttft_p95_milliseconds and \
            s.itl_p95_ms <= lat.inter_token_p95_milliseconds
        return Eval(s.ttft_p95_ms, s.itl_p95_ms, s.power_watts, ok)

    def max_load(self, variant: str, product: str, replicas: int) -> float:
        """Highest load (tok/s) at which exactly ``replicas`` replicas meet the SLO (bisection; the
        model's p95 TTFT and ITL grow with load). Cached per placement."""
        key = (variant, product, replicas)
        hit = self._max_load.get(key)
        if hit is not None:
            return hit
        pm = self._prepare(variant, product)
        table, idx = pm.table, pm.idx
        if idx is None or replicas <= 0 or not self.evaluate(variant, product, replicas, 0.0).slo_met:
            self._max_load[key] = 0.0
            return 0.0
        lo, hi = 0.0, replicas * table.tokens_per_second[idx]
        for _ in range(50):
            mid = (lo + hi) / 2
            if self.evaluate(variant, product, replicas, mid).slo_met:
                lo = mid
            else:
                hi = mid
        self._max_load[key] = lo
        return lo

    def quality(self, variant: str) -> float:
        q = self.spec.quality
        bench = q.benchmark if q else "MMLU"
        return float(self.variants[variant].quality.get(bench, math.nan))

    def embodied(self, product: str) -> tuple[float, float]:
        """(kgCO2e per GPU, lifetime hours) from the catalog."""
        g = self.gpus[product]
        return g.embodied_kilograms, g.lifetime_years * HOURS_PER_YEAR


# ------------------------------------------------------------------------------------------
# Planner calls
# ------------------------------------------------------------------------------------------


class Planner:
    """Builds ``Observed`` for an hour and calls the real ``plan()``; counts calls and time."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.calls = 0
        self.seconds = 0.0
        kinds = np.where(sc.estimated, "Estimated", "Measured")
        self._kinds = kinds
        self._src = [s.split(":", 1)[0] for s in sc.intensity_sources]

    def observed(self, h: int, load_tps: float, current: CurrentPlacement | None,
                 regions: Sequence[int] | None = None) -> Observed:
        sc = self.sc
        now = sc.start + h * HOUR
        idx = range(len(sc.regions)) if regions is None else regions
        obs = {
            sc.regions[i]: RegionObs(
                intensity=Intensity(float(sc.intensity[i, h]), self._src[i], sc.regions[i], now, str(self._kinds[i, h])),
                pue=sc.pue,
                free_gpus=None,
            )
            for i in idx
        }
        metrics = ServingMetrics(observed_at=now, output_tokens_per_second=float(load_tps))
        return Observed(regions=obs, current=current, metrics=metrics)

    def plan(self, spec: GreenModelSpec, observed: Observed, h: int) -> Plan:
        t = time.perf_counter()
        p = plan(spec, self.sc.catalog, observed, self.sc.start + h * HOUR)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return p


# ------------------------------------------------------------------------------------------
# Policies
# ------------------------------------------------------------------------------------------


def _record(run: PolicyRun, sc: Scenario, model: Model, h: int, variant: str, region_i: int, product: str,
            replicas: int, switched: bool) -> None:
    load = float(sc.load.output_tokens_per_s[h])
    ev = model.evaluate(variant, product, replicas, load)
    gpr = model.gpus_per_replica(variant, product)
    energy = ev.power_w / 1000.0  # kWh over one hour
    if switched:
        energy += model.idle_watts(variant, product, replicas) / 1000.0 * sc.switch_overlap_minutes / 60.0
    emb_kg, life_h = model.embodied(product)
    gpus = replicas * gpr
    run.append(
        region=sc.regions[region_i], variant=variant, gpu_product=product, replicas=replicas, gpus=gpus,
        it_energy_kwh=energy, pue=sc.pue, intensity=float(sc.intensity[region_i, h]),
        output_tokens=load * 3600.0, requests=float(sc.load.requests_per_s[h]), slo_met=ev.slo_met,
        p95_ttft_ms=ev.ttft_ms, p95_itl_ms=ev.itl_ms, quality=model.quality(variant),
        # embodied per GPU -> a "server" of gpus_per_server GPUs: kg x (reserved / total) == kg per GPU x GPUs
        embodied_kgco2e=emb_kg * 8, gpus_per_server=8, lifetime_hours=life_h, switched=switched,
    )
    # for the within-hour (per-minute) attainment: the most load this placement serves within the SLO
    run.max_load.append(model.max_load(variant, product, replicas))


def static_variant(sc: Scenario) -> ModelVariant:
    fam = [v for v in sc.catalog.variants if v.family == sc.spec.model.family]
    if sc.spec.model.variants is not None:
        fam = [v for v in fam if v.name in sc.spec.model.variants]
    dense = [v for v in fam if v.architecture == Architecture.DENSE and v.precision in (Precision.BF16, Precision.FP16)]
    if not dense:
        raise ScenarioError(f"family {sc.spec.model.family!r} has no dense bf16/fp16 variant for the static baseline")
    bench = sc.spec.quality.benchmark if sc.spec.quality else "MMLU"
    return max(dense, key=lambda v: (v.quality.get(bench, -1.0), v.parameters_billions))


def _restricted(spec: GreenModelSpec, variant: str) -> GreenModelSpec:
    """The baselines' spec: one variant, and no replica ceiling (a static deployment is sized for its
    peak whatever the GreenModel's maxReplicas says)."""
    s = spec.model_copy(deep=True)
    s.model.variants = [variant]
    s.max_replicas = 1000
    return s


def run_static(sc: Scenario, model: Model, planner: Planner, region_i: int = 0,
               name: str = "static") -> tuple[PolicyRun, dict]:
    v = static_variant(sc)
    spec = _restricted(sc.spec, v.name)
    peak = float(sc.load.output_tokens_per_s.max())
    region = sc.regions[region_i]
    t = time.perf_counter()
    p = planner.plan(spec, planner.observed(0, peak, None, regions=[region_i]), 0)
    if p.chosen is None:
        raise ScenarioError(f"{name} baseline: the planner finds no placement for {v.name} in {region} "
                            f"at the peak load {peak:.0f} tok/s: {p.message}")
    c = p.chosen
    run = PolicyRun(name, f"{v.name} on {c.replicas}x{c.gpus_per_replica} {c.gpu_product} in {region}, "
                          f"sized by the planner for the peak hourly load {peak:.0f} tok/s, all period")
    for h in range(sc.hours):
        _record(run, sc, model, h, v.name, region_i, c.gpu_product, c.replicas, False)
    run.decide_seconds = time.perf_counter() - t
    return run, {"variant": v.name, "gpuProduct": c.gpu_product, "replicas": c.replicas, "peakTokensPerSecond": peak,
                 "plannerFeasible": p.feasible}


def run_intensity_cap(sc: Scenario, model: Model, planner: Planner, static: dict) -> PolicyRun:
    v, product, peak_replicas = static["variant"], static["gpuProduct"], static["replicas"]
    spec = _restricted(sc.spec, v)
    spec.placement.gpu_products = [product]
    buckets = bpol.intensity_buckets(sc.intensity[0], peak_replicas)
    desc = ", ".join(f"<= {b.threshold:.0f} g/kWh: {b.max_replicas}" if math.isfinite(b.threshold)
                     else f"above: {b.max_replicas}" for b in buckets)
    run = PolicyRun("intensity-cap", f"{v} on {product} in {sc.regions[0]}; replicas follow the last hour's load "
                                     f"(planner sizing), capped by intensity buckets ({desc})")
    t = time.perf_counter()
    cache: dict[float, int] = {}
    for h in range(sc.hours):
        seen = float(sc.load.output_tokens_per_s[max(0, h - 1)])
        key = round(seen, 3)
        if key not in cache:
            p = planner.plan(spec, planner.observed(h, seen, None, regions=[0]), h)
            cache[key] = p.chosen.replicas if p.chosen is not None else peak_replicas
        n = min(cache[key], bpol.cap_replicas(float(sc.intensity[0, h]), buckets))
        _record(run, sc, model, h, v, 0, product, n, False)
    run.decide_seconds = time.perf_counter() - t
    return run


def run_greenmodel(sc: Scenario, model: Model, planner: Planner) -> tuple[PolicyRun, dict]:
    run = PolicyRun("greenmodel", f"real plan() each hour, policy {sc.spec.policy.value}, hysteresis "
                                  f"{sc.spec.hysteresis.min_improvement_percent:g}% / {sc.spec.hysteresis.min_dwell_seconds}s, "
                                  "sees the last hour's load")
    region_index = {r: i for i, r in enumerate(sc.regions)}
    current: CurrentPlacement | None = None
    reasons: dict[str, int] = {}
    infeasible = 0
    t = time.perf_counter()
    for h in range(sc.hours):
        seen = float(sc.load.output_tokens_per_s[max(0, h - 1)])
        p = planner.plan(sc.spec, planner.observed(h, seen, current), h)
        reasons[p.reason] = reasons.get(p.reason, 0) + 1
        c = p.chosen
        if not p.feasible:
            infeasible += 1
        if c is None:
            if current is None:
                raise ScenarioError(f"greenmodel: no placement at hour {h}: {p.message}")
            c_variant, c_region, c_product, c_repl = current.variant, current.region, current.gpu_product, current.replicas
        else:
            c_variant, c_region, c_product, c_repl = c.variant, c.region, c.gpu_product, c.replicas
        switched = current is not None and (c_variant, c_region, c_product) != (current.variant, current.region, current.gpu_product)
        since = sc.start + h * HOUR if (current is None or switched) else current.since
        current = CurrentPlacement(c_variant, c_region, c_product, c_repl, since)
        _record(run, sc, model, h, c_variant, region_index[c_region], c_product, c_repl, switched)
    run.decide_seconds = time.perf_counter() - t
    return run, {"planReasons": reasons, "infeasibleHours": infeasible}


def run_oracle(sc: Scenario, model: Model, planner: Planner) -> tuple[PolicyRun, dict]:
    """Exact hourly candidates (CarbonFirst ranking = grams per hour, no hysteresis), then the
    cheapest sequence with switching costs. Candidates per hour: the planner's best plus its ranked
    alternatives (it lists the top ``MAX_ALTERNATIVES``); a placement outside an hour's list is
    treated as unavailable that hour, which can only make the oracle slightly worse, never better."""
    spec = sc.spec.model_copy(deep=True)
    spec.policy = Policy.CARBON_FIRST
    spec.hysteresis = spec.hysteresis.model_copy(update={"min_improvement_percent": 0, "min_dwell_seconds": 0})
    region_index = {r: i for i, r in enumerate(sc.regions)}
    t = time.perf_counter()
    hourly: list[dict[tuple[str, str, str], tuple[float, int]]] = []
    keys: dict[Placement, int] = {}
    for h in range(sc.hours):
        exact = float(sc.load.output_tokens_per_s[h])
        p = planner.plan(spec, planner.observed(h, exact, None), h)
        cands = ([p.chosen] if p.feasible and p.chosen is not None else []) + [a for a in p.alternatives if a.slo_met]
        if not cands:
            raise ScenarioError(f"oracle: no feasible candidate at hour {h}: {p.message}")
        row = {}
        for c in cands:
            row[c.placement] = (c.grams_per_hour, c.replicas)
            keys.setdefault(c.placement, len(keys))
        hourly.append(row)
    n = len(keys)
    cost = np.full((sc.hours, n), math.inf)
    sw = np.zeros((sc.hours, n))
    repl = np.zeros((sc.hours, n), dtype=int)
    overlap_h = sc.switch_overlap_minutes / 60.0
    for h, row in enumerate(hourly):
        for pl, (g, r) in row.items():
            j = keys[pl]
            cost[h, j] = g
            repl[h, j] = r
            sw[h, j] = (model.idle_watts(pl.variant, pl.gpu_product, r) / 1000.0 * overlap_h * sc.pue
                        * sc.intensity[region_index[pl.region], h])
    path = bpol.cheapest_path(cost, sw)
    inv = {j: pl for pl, j in keys.items()}
    run = PolicyRun("oracle", "hindsight: exact load and intensity of every hour, the planner's candidates ranked by "
                              "grams (CarbonFirst), cheapest sequence over the period including switch overlap")
    prev = None
    for h in range(sc.hours):
        j = int(path[h])
        v, region, product = inv[j].variant, inv[j].region, inv[j].gpu_product
        _record(run, sc, model, h, v, region_index[region], product, int(repl[h, j]), prev is not None and j != prev)
        prev = j
    run.decide_seconds = time.perf_counter() - t
    return run, {"placementsConsidered": n}


def minute_attainment(sc: Scenario, run: PolicyRun) -> float | None:
    """Share of requests arriving in minutes whose rate the hour's placement serves within the SLO.

    Inside every hour the trace's own minute-by-minute rate (its burstiness, x the hour's load) is
    replayed; each minute is judged as a steady state of the capacity model, which is conservative
    for short bursts (a queue built in one busy minute drains in the next)."""
    load = sc.load.output_tokens_per_s[:, None] * sc.load.minute_multiplier[None, :]
    ok = load <= np.asarray(run.max_load)[:, None] * (1 + 1e-9)
    w = np.asarray(run.requests)[:, None] * sc.load.minute_request_share[None, :]
    tot = w.sum()
    return float(w[ok].sum() / tot) if tot > 0 else None


def run_all(sc: Scenario, truth_hours: int | None = 0, truth_sample_seconds: float = 60.0,
            energy_dir: str | None = None) -> dict[str, Any]:
    """Every policy through the planner's model; with ``truth_hours`` != 0 also judged by the ground truth
    (:mod:`greenmodel.bench.truth`) over that many hours spread over the period (None: every hour)."""
    model = Model(sc)
    planner = Planner(sc)
    t0 = time.perf_counter()
    static, static_info = run_static(sc, model, planner)
    cap = run_intensity_cap(sc, model, planner, static_info)
    green, green_info = run_greenmodel(sc, model, planner)
    oracle, oracle_info = run_oracle(sc, model, planner)
    runs = [static, cap, green, oracle]
    # Extra reference row: the static deployment in the region with the lowest mean intensity over
    # the period (a hindsight region pick). It separates the region lever from the others.
    greenest = int(np.argmin(sc.intensity.mean(axis=1)))
    extra = {}
    if greenest != 0:
        sg, sg_info = run_static(sc, model, planner, greenest, "static-greenest-region")
        runs.append(sg)
        extra["static-greenest-region"] = sg_info
    floor = sc.spec.quality.min_score if sc.spec.quality else None
    src = ";".join(sorted(set(sc.intensity_sources)))
    pols = {}
    for r in runs:
        s = summarise(r, sc.start, floor, src)
        s["sloAttainmentMinutes"] = minute_attainment(sc, r)
        pols[r.name] = s
    base = pols["static"]["gramsPerMillionTokensWithEmbodied"]
    base2 = pols["static"]["gramsPerMillionTokens"]
    for s in pols.values():
        s["savingVsStatic"] = 1.0 - s["gramsPerMillionTokensWithEmbodied"] / base if base else None
        s["scope2SavingVsStatic"] = 1.0 - s["gramsPerMillionTokens"] / base2 if base2 else None
    pols["static"].update(static_info)
    pols["greenmodel"].update(green_info)
    pols["oracle"].update(oracle_info)
    for k, v in extra.items():
        pols[k].update(v)
    g, o = pols["greenmodel"]["gramsPerMillionTokensWithEmbodied"], pols["oracle"]["gramsPerMillionTokensWithEmbodied"]
    result: dict[str, Any] = {
        "start": sc.start.isoformat(),
        "hours": sc.hours,
        "regions": sc.regions,
        "regionMeanIntensity": {r: float(sc.intensity[i].mean()) for i, r in enumerate(sc.regions)},
        "pue": sc.pue,
        "switchOverlapMinutes": sc.switch_overlap_minutes,
        "catalog": sc.catalog_source,
        "greenmodel": sc.greenmodel_source,
        "qualityFloor": floor,
        "latencySLO": {"ttftP95Milliseconds": sc.spec.latency.ttft_p95_milliseconds,
                       "interTokenP95Milliseconds": sc.spec.latency.inter_token_p95_milliseconds},
        "load": {"meanOutputTokensPerSecond": float(sc.load.output_tokens_per_s.mean()),
                 "peakOutputTokensPerSecond": float(sc.load.output_tokens_per_s.max()),
                 "withinHourPeakFactor": sc.load.peak_factor,
                 "note": "sloAttainmentMinutes replays the trace's own minute-by-minute rate inside every hour"},
        "notes": sc.notes,
        "greenmodelGapToOracle": (g / o - 1.0) if o else None,
        "policies": pols,
        "timings": {"replaySeconds": round(time.perf_counter() - t0, 3), "planCalls": planner.calls,
                    "planSeconds": round(planner.seconds, 3)},
        "_runs": runs,
    }
    if truth_hours != 0 and sc.trace is not None:
        from greenmodel.bench import truth

        gt = truth.judge_runs(sc, model, runs, sc.trace, hours=truth_hours, sample_s=truth_sample_seconds,
                              energy_dir=energy_dir)
        result["groundTruth"] = gt["groundTruth"]
        for run in gt["baselineRuns"]:  # chosen by the ground truth: no planner-model figures of their own
            pols[run.name] = {"description": run.description, "switches": int(sum(run.switched)),
                              "groundTruthOnly": True}
        for name, figures in gt["policies"].items():
            pols[name]["groundTruth"] = figures
    return result


def _f(x: Any, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def format_table(result: dict[str, Any]) -> str:
    lines = []
    lines.append(f"Replay: {result['hours']} h from {result['start']}, regions "
                 + ", ".join(f"{r} ({result['regionMeanIntensity'][r]:.0f} g/kWh mean)" for r in result["regions"])
                 + f"; PUE {result['pue']:g}; switch overlap {result['switchOverlapMinutes']:g} min")
    for n in result["notes"]:
        lines.append(f"note: {n}")
    slo = result["latencySLO"]
    lines.append(f"SLO p95 TTFT {slo['ttftP95Milliseconds']} ms, p95 ITL {slo['interTokenP95Milliseconds']} ms; "
                 f"quality floor {_f(result['qualityFloor'], 'g')}")
    lines.append("")
    hdr = (f"{'policy':22s} {'gCO2e/Mtok':>10s} {'+embodied':>10s} {'vs static':>9s} {'kWh':>10s} "
           f"{'SLO att.':>8s} {'minutes':>8s} {'min qual':>8s} {'switches':>8s} {'replicas':>8s}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    names = [n for n in list(POLICY_ORDER) + [n for n in result["policies"] if n not in POLICY_ORDER]
             if not result["policies"][n].get("groundTruthOnly")]
    for name in names:
        p = result["policies"][name]
        lines.append(
            f"{name:22s} {_f(p['gramsPerMillionTokens'], '10.1f')} {_f(p['gramsPerMillionTokensWithEmbodied'], '10.1f')} "
            f"{_f(-100 * p['savingVsStatic'] if p['savingVsStatic'] is not None else None, '+8.1f')}% "
            f"{_f(p['kwh'], '10.0f')} {_f(100 * p['sloAttainment'], '7.2f')}% {_f(100 * p['sloAttainmentMinutes'], '7.2f')}% "
            f"{_f(p['minQuality'], '8.1f')} {p['switches']:8d} {p['meanReplicas']:8.2f}")
    lines.append("")
    for name in names:
        p = result["policies"][name]
        lines.append(f"{name}: {p['description']}")
        top = sorted(p["regionHours"].items(), key=lambda kv: -kv[1])
        lines.append("    regions: " + ", ".join(f"{r} {c} h" for r, c in top)
                     + "; variants: " + ", ".join(f"{v} {c} h" for v, c in sorted(p['variantHours'].items(), key=lambda kv: -kv[1])))
    if result.get("greenmodelGapToOracle") is not None:
        lines.append(f"greenmodel is {100 * result['greenmodelGapToOracle']:.1f}% above the oracle (with embodied)")
    gt = result.get("groundTruth")
    if gt:
        smp = gt["sampled"]
        lines.append("")
        lines.append(f"Ground truth (per-request engine simulation from ML.ENERGY/Vidur measurements, not the planner's "
                     f"model; {smp['hoursJudged']} of {smp['hoursOfPeriod']} h sampled, {smp['secondsPerHour']:g} s each; "
                     f"Scope 2):")
        hdr2 = (f"{'policy':22s} {'gCO2e/Mtok':>10s} {'hours SLO':>9s} {'requests':>8s} {'kWh/h':>8s} "
                f"{'worst p95 TTFT':>14s} {'worst p95 ITL':>13s}")
        lines.append(hdr2)
        lines.append("-" * len(hdr2))
        order = [n for n in TRUTH_ORDER if n in result["policies"]] + \
            [n for n in result["policies"] if n not in TRUTH_ORDER]
        for name in order:
            g = result["policies"][name].get("groundTruth")
            if g:
                lines.append(f"{name:22s} {_f(g['gramsPerMillionTokens'], '10.1f')} "
                             f"{_f(100 * g['sloAttainment'], '8.1f')}% {_f(100 * g['requestsWithinSlo'], '7.1f')}% "
                             f"{_f(g['itEnergyKwhPerHour'], '8.2f')} {_f(g['worstHourP95TtftSeconds'], '13.2f')}s "
                             f"{_f(g['worstHourP95ItlMilliseconds'], '11.1f')}ms")
        for name in order:
            if result["policies"][name].get("groundTruthOnly"):
                lines.append(f"{name}: {result['policies'][name]['description']}")
        for d in gt.get("decomposition", []):
            lines.append(f"decomposition: {d['from']} -> {d['to']}: x{d['factor']:.3f} ({d['lever']})")
        for pair, rule in gt["derived"]["decodeCurves"].items():
            lines.append(f"derived decode curve: {pair}: {rule}")
        lines.append(f"ground truth: {gt['simulations']} simulations, {gt['seconds']} s")
    t = result["timings"]
    lines.append(f"timings: replay {t['replaySeconds']} s, {t['planCalls']} plan() calls, {t['planSeconds']} s in plan()")
    lines.append("SLO att.: share of requests in hours whose placement meets the p95 SLOs at that hour's mean load; "
                 "minutes: the same replaying the trace's minute-by-minute rate inside each hour (busiest minute "
                 "x{:.2f} the mean), each minute as a steady state".format(result["load"]["withinHourPeakFactor"]))
    return "\n".join(lines)
