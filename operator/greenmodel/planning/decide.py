"""``decide(gm, seen, now) -> Outcome``: everything one reconcile pass decides, as one pure function.

The pass is ``parse → observe → decide → apply → remember`` (handlers.reconcile_pass). ``observe`` reads the
cluster, the carbon cache and Prometheus into a frozen ``Seen``; this module turns it into a frozen ``Outcome``:
the children to apply, the Deployments to delete (by uid), the full typed status, the Events, the requeue
delay, the gauges to export and the memory to keep. Nothing here does I/O or reads a clock, so every branch
runs under table-driven tests in microseconds, and a restarted operator reaches the same outcome from the same
cluster state.

Every status exit is one constructor: ``Outcome.invalid``, ``Outcome.stalled``, ``Outcome.suspended``,
``Outcome.infeasible`` and ``Outcome.serving`` (placed, rescaling, switching, draining).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Mapping

from greenmodel.api.state import (
    CacheState,
    ChildState,
    DeploymentState,
    Placement,
    ServingMetrics,
    ServingSpec,
    intent_hash,
)
from greenmodel.api.v1alpha1 import (
    Condition,
    Emissions,
    GreenModelSpec,
    GreenModelStatus,
    Measured,
    MeterKind,
    ModelCatalogSpec,
)
from greenmodel.planning.accounting import Interval, advance_status, measured_energy_joules, pass_interval
from greenmodel.planning.conditions import Cond, merge_conditions, signal_transitions
from greenmodel.planning.planner import plan as make_plan
from greenmodel.planning.serving import RuntimeProblem, serving_spec
from greenmodel.planning.status import one_line, plan_to_status, sig
from greenmodel.planning.switch import SwitchActions, plan_switch
from greenmodel.planning.types import Candidate, CurrentPlacement, Observed, Plan, RegionObs

Key = tuple[str, str]  # (namespace, name)
Pool = tuple[str, str]  # (region, GPU product)

# Reasons of a zone's carbon data (signals' ZoneStatus.condition) under which its reading is usable as it is.
CARBON_OK = {"Live", "FallbackProvider", "StaticConfigured"}
# status.measured is rewritten when one of these moves by more than this share (or at the accounting flush).
MEASURED_MOVE = 0.25


# ------------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class Subject:
    """The GreenModel as parsed at the boundary: its identity, its spec (or why it is invalid), and the status
    stored on it (typed; the conditions' transition times and the last placement come from there)."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: GreenModelSpec | None
    invalid: str | None = None  # InvalidSpec message when the body did not parse
    deleting: bool = False
    stored: GreenModelStatus = field(default_factory=GreenModelStatus)

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Memory:
    """What one GreenModel's passes remember between them (in memory only; status is the durable record)."""

    learned: Mapping[tuple[str, str], float] = field(default_factory=dict)  # latency factors (Plan.learned)
    last_metrics: ServingMetrics | None = None  # the last Available serving metrics (held while Prometheus fails)
    emissions: Emissions | None = None  # running totals, ahead of what status holds
    measured: Measured | None = None  # the freshest status.measured block
    exclusions: Mapping[Pool, tuple[datetime, str]] = field(default_factory=dict)  # unschedulable pools -> until


@dataclass(frozen=True)
class Tuning:
    """The operator's timing knobs (not the tenant's)."""

    drain_seconds: float = 5.0
    poll_seconds: float = 3.0
    capacity_exclusion_seconds: float = 300.0
    accounting_flush_seconds: float = 3600.0


@dataclass(frozen=True)
class Seen:
    """Everything ``observe`` read for one pass."""

    children: ChildState
    catalog: ModelCatalogSpec | None = None
    catalog_problem: tuple[str, str] | None = None  # (reason, message) when the catalog is missing or invalid
    regions: Mapping[str, RegionObs] = field(default_factory=dict)  # intensity, PUE, static fallback (no GPUs)
    carbon: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # region -> its zone's (reason, message)
    free_gpus: Mapping[Pool, int] = field(default_factory=dict)  # inventory less every other GreenModel's demand
    metrics: ServingMetrics | None = None  # this pass's answer; None: no metrics source is configured
    memory: Memory = field(default_factory=Memory)
    tuning: Tuning = field(default_factory=Tuning)


# ------------------------------------------------------------------------------------------------ outputs
@dataclass(frozen=True)
class DesiredDeployment:
    placement: Placement
    replicas: int
    serving: ServingSpec


@dataclass(frozen=True)
class DesiredService:
    placement: Placement
    since: datetime
    verify_live: bool = False  # re-read before the write: moving the Service is the one write whose staleness costs


@dataclass(frozen=True)
class DesiredCache:
    """A model cache to create where missing: its PVC and the Job that fills it (neither is ever updated: a
    claim's spec and a Job's template are immutable; a filled cache stays as it is)."""

    placement: Placement
    serving: ServingSpec
    storage_class: str | None
    access_mode: str
    claim: bool  # create the PVC
    job: bool  # create the download Job


@dataclass(frozen=True)
class Deletion:
    kind: str
    name: str
    namespace: str
    uid: str
    why: str


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"
    decision: bool = False  # counted by greenmodel_decisions_total{reason}


@dataclass(frozen=True)
class Gauges:
    """Per-GreenModel gauges (None removes the series: unknown is not zero)."""

    ready_replicas: float | None = None
    replicas: float | None = None
    predicted_grams_per_million_tokens: float | None = None
    predicted_power_watts: float | None = None  # facility (x PUE)
    predicted_gpu_power_watts: float | None = None
    measured_gpu_power_watts: float | None = None


@dataclass(frozen=True)
class Outcome:
    kind: str  # Nothing | Invalid | Stalled | Suspended | Infeasible | Serving
    status: GreenModelStatus | None = None  # None: write no status
    deployment: DesiredDeployment | None = None
    caches: tuple[DesiredCache, ...] = ()
    service: DesiredService | None = None
    pdb: bool = False
    deletions: tuple[Deletion, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_seconds: float | None = None
    gauges: Gauges | None = None
    memory: Memory = field(default_factory=Memory)
    accounted: Interval | None = None  # the interval this pass added to the emissions totals
    log: str = ""  # one INFO line when the pass changed or stalled something

    # -- the status exits ---------------------------------------------------------------------------------
    @classmethod
    def nothing(cls, seen: Seen) -> "Outcome":
        """Being deleted: owner references take the children; nothing to write."""
        return cls("Nothing", memory=seen.memory)

    @classmethod
    def stalled(cls, gm: Subject, seen: Seen, now: datetime, reason: str, message: str, *,
                kind: str = "Stalled") -> "Outcome":
        """Nothing can progress until the spec or the cluster changes: keep what runs, say why."""
        serving = _live_ready(seen.children)
        conds = [Cond("Ready", serving > 0, "ServingLastPlacement" if serving else reason,
                      (f"{serving} pod(s) keep serving the last placement; " if serving else "") + message),
                 Cond("Reconciling", False, reason, message), Cond("Stalled", True, reason, message)]
        status = _base_status(gm, seen, now, conds)
        return cls(kind, status=status, events=(Event(reason, message, "Warning"),),
                   gauges=Gauges(ready_replicas=float(seen.children.ready_pods)), memory=seen.memory,
                   log=f"stalled: {reason}: {message}")

    @classmethod
    def invalid(cls, gm: Subject, seen: Seen, now: datetime) -> "Outcome":
        return cls.stalled(gm, seen, now, "InvalidSpec", gm.invalid or "invalid spec", kind="Invalid")

    @classmethod
    def suspended(cls, gm: Subject, seen: Seen, now: datetime) -> "Outcome":
        serving = _live_ready(seen.children)
        msg = "spec.suspend is true: no changes are made" + (f"; {serving} pod(s) serving" if serving else "")
        # kstatus: not Ready and not Reconciling must be Stalled (nothing progresses while suspended).
        conds = [Cond("Ready", serving > 0, "Suspended", msg), Cond("Reconciling", False, "Suspended", msg),
                 Cond("Stalled", serving == 0, "Suspended", msg)]
        return cls("Suspended", status=_base_status(gm, seen, now, conds),
                   gauges=Gauges(ready_replicas=float(seen.children.ready_pods)), memory=seen.memory)

    @classmethod
    def infeasible(cls, gm: Subject, seen: Seen, now: datetime, ctx: "_Context") -> "Outcome":
        """Never scale to zero or move for an infeasible plan: keep what runs and explain."""
        plan = ctx.plan
        serving = _live_ready(seen.children)
        msg = one_line(plan.message, 4000)
        conds = [Cond("Ready", serving > 0, "ServingLastPlacement" if serving else plan.reason,
                      (f"{serving} pod(s) keep serving the last placement; " if serving else "") + msg),
                 Cond("Reconciling", False, plan.reason, msg), Cond("Stalled", True, plan.reason, msg),
                 *ctx.signal_conditions, slo_condition(plan, ctx.observed, gm.spec)]
        status = _base_status(gm, seen, now, conds)
        planned = plan_to_status(plan, now)
        status.predicted, status.decision, status.alternatives = planned.predicted, planned.decision, planned.alternatives
        events = (*ctx.signal_events, Event("PlanInfeasible", f"{plan.reason}: {msg}", "Warning", decision=True))
        return cls("Infeasible", status=status, events=events,
                   gauges=Gauges(ready_replicas=float(seen.children.ready_pods)), memory=ctx.memory)

    @classmethod
    def serving(cls, gm: Subject, seen: Seen, now: datetime, ctx: "_Context", serving: ServingSpec) -> "Outcome":
        """A feasible plan: apply the desired placement, move the Service when it is Ready, drain the old one."""
        plan, c, children = ctx.plan, ctx.plan.chosen, seen.children
        desired = c.placement
        caches, cache_deletions, waiting = cache_actions(seen, desired, serving, gm.namespace)
        if waiting is not None:
            lost = tuple(d for d in cache_deletions if d.uid == waiting.job_uid and not waiting.claim_name)
            return replace(cls.waiting_for_weights(gm, seen, now, ctx, caches, waiting), deletions=lost)
        # The old placement stays up, out of the Service, while streams it started may still run.
        hold = seen.tuning.drain_seconds + serving.drain_seconds
        act = plan_switch(desired, c.replicas, children, now, hold, seen.tuning.poll_seconds)
        live = children.live_deployment
        live_ready = live.pods_ready if live is not None else 0
        desired_dep = children.deployments.get(desired)
        dep_changes = desired_dep is None or desired_dep.intent != intent_hash(desired, c.replicas, serving)
        svc_changes = not children.service_exists or act.service_moved
        stored_g = gm.stored.predicted.grams_per_million_tokens if gm.stored.predicted is not None else None
        events = (*ctx.signal_events, *_decision_events(plan, children, act, dep_changes, stored_g))
        if ctx.capacity.status is False and ctx.exclusions:
            events += (Event("CapacityUnavailable", ctx.capacity.message, "Warning", decision=True),)

        serving_desired = act.service_placement == desired
        desired_ready = (desired_dep is not None and desired_dep.ready and not dep_changes
                         and desired_dep.ready_replicas >= c.replicas)
        ready = serving_desired and desired_dep is not None and desired_dep.pods_ready > 0 and desired_dep.ready
        in_flight = act.phase != "Steady" or dep_changes or svc_changes or not desired_ready
        # status.readyReplicas of the placement the Service serves, as its Deployment reports them (the figure
        # `kubectl get deploy` shows, and it moves with the Ready condition, so one status write covers both)
        serving_dep = desired_dep if serving_desired else live
        ready_pods = serving_dep.ready_replicas if serving_dep is not None else 0
        where = desired.describe()
        if ready:
            ready_cond = Cond("Ready", True, "Serving", f"{desired_dep.pods_ready}/{c.replicas} replicas of {where} ready")
        elif live_ready > 0:
            ready_cond = Cond("Ready", False, act.phase if act.phase != "Steady" else "Rescaling",
                              f"{act.message or 'rolling out'}; {live_ready} pod(s) serving meanwhile")
        else:
            ready_cond = Cond("Ready", False, "Deploying", f"waiting for {where}: "
                              f"{desired_dep.ready_replicas if desired_dep else 0}/{c.replicas} ready")
        if in_flight:
            phase = act.phase if act.phase != "Steady" else ("Rescaling" if dep_changes else "Deploying")
            rec_cond = Cond("Reconciling", True, phase, act.message or f"{where}: rolling out {c.replicas} replica(s)")
        else:
            rec_cond = Cond("Reconciling", False, "ReconciliationSucceeded", one_line(plan.message, 2000))
        conds = [ready_cond, rec_cond, Cond("Stalled", False, "Progressing", "placement is feasible"),
                 *ctx.signal_conditions, slo_condition(plan, ctx.observed, gm.spec)]

        emissions, memory_emissions, interval = account(gm, seen, c, ready_pods if serving_desired else 0, now)
        measured, memory_measured = measured_block(gm, seen, ctx.observed.metrics is not None, now)
        status = plan_to_status(plan, now)
        if _still_the_same_decision(plan, gm.stored):
            status.decision = gm.stored.decision  # nothing was decided anew: keep when and why it was placed
        status.observed_generation = gm.generation
        status.conditions = _conditions(gm, conds, now)
        status.ready_replicas = ready_pods
        status.placed_since = _since(act.service_since) if serving_desired else gm.stored.placed_since
        status.measured = measured
        status.emissions = emissions
        memory = replace(ctx.memory, emissions=memory_emissions, measured=memory_measured)
        m = seen.metrics
        gauges = Gauges(ready_replicas=float(children.ready_pods), replicas=float(c.replicas),
                        predicted_grams_per_million_tokens=c.g_per_mtok, predicted_power_watts=c.power_watts * c.pue,
                        predicted_gpu_power_watts=c.power_watts,
                        measured_gpu_power_watts=m.gpu_power_watts if m is not None and m.available else None)
        deletions = tuple(Deletion("Deployment", d.name, d.namespace, d.uid,
                                   f"placement {d.placement.variant}/{d.placement.region}/{d.placement.gpu_product} "
                                   "no longer serves") for d in act.delete)
        if act.phase == "Steady":  # a cache no Deployment mounts any more goes once no switch is in flight
            deletions += cache_deletions
        changed = dep_changes or svc_changes or deletions
        log = (f"{plan.reason}: {where} x{c.replicas} ({act.phase})" + (f"; {act.message}" if act.message else "")
               if changed else "")
        return cls("Serving", status=status,
                   deployment=DesiredDeployment(desired, c.replicas, serving),
                   # Re-read the live Service before moving it (the one write whose staleness could cost
                   # availability); a first Service, with none of ours known, has nothing to move.
                   service=DesiredService(act.service_placement, act.service_since,
                                          verify_live=act.service_moved and bool(children.service_exists
                                                                                 or children.deployments)),
                   caches=caches, pdb=True, deletions=deletions, events=events + _weights_events(caches),
                   requeue_seconds=act.requeue_seconds, gauges=gauges, memory=memory, accounted=interval, log=log)

    @classmethod
    def waiting_for_weights(cls, gm: Subject, seen: Seen, now: datetime, ctx: "_Context",
                            caches: tuple[DesiredCache, ...], cache: CacheState | None) -> "Outcome":
        """The chosen placement's weights are not in its cache yet: fill it; whatever serves keeps serving (the
        Service and every Deployment stay as they are), and status says how long the download has taken."""
        plan, c, children = ctx.plan, ctx.plan.chosen, seen.children
        where = c.placement.describe()
        live = children.live_deployment
        serving_pods = live.pods_ready if live is not None else 0
        model = caches[0].serving.weights.model_id if caches else (cache.model_id if cache else "")
        started = cache.job_started if cache is not None else None
        took = f" for {(now - started).total_seconds():.0f} s" if started is not None else ""
        failed = cache.job_failed if cache is not None else ""
        if failed:
            reason = "WeightsDownloadFailed"
            msg = (f"the download Job {cache.job_name} of {model} for {where} failed: {failed}; delete the Job to "
                   f"retry (check the token Secret and the model id)")
        else:
            reason = "WaitingForWeights"
            msg = f"downloading {model} into the model cache in {c.region}{took} before {where} starts"
            if cache is not None and cache.claim_phase == "Pending":
                msg += f" (the cache PVC {cache.claim_name} is Pending: no volume bound yet)"
        if serving_pods:
            ready = Cond("Ready", True, "Serving", f"{serving_pods} pod(s) of {live.placement.describe()} serve "
                                                   f"meanwhile; {msg}")
        else:
            ready = Cond("Ready", False, reason, msg)
        conds = [ready, Cond("Reconciling", not failed, reason, msg), Cond("Stalled", bool(failed), reason if failed
                                                                          else "Progressing", msg),
                 *ctx.signal_conditions, slo_condition(plan, ctx.observed, gm.spec)]
        status = _base_status(gm, seen, now, conds)
        planned = plan_to_status(plan, now)
        status.predicted, status.decision, status.alternatives = planned.predicted, planned.decision, planned.alternatives
        events = (*ctx.signal_events, *_weights_events(caches))
        if failed:
            events += (Event(reason, msg, "Warning"),)
        return cls("Serving", status=status, caches=caches, events=events,
                   requeue_seconds=None if failed else WEIGHTS_POLL_SECONDS,
                   gauges=Gauges(ready_replicas=float(children.ready_pods)), memory=ctx.memory,
                   log=f"{reason}: {msg}" if caches else "")


# ------------------------------------------------------------------------------------------------ decide
@dataclass(frozen=True)
class _Context:
    """What the plan-based exits share: the plan, its inputs and the signal conditions."""

    plan: Plan
    observed: Observed
    exclusions: Mapping[Pool, str]
    signal_conditions: tuple[Cond, ...]  # CarbonDataAvailable, MetricsAvailable, CapacityAvailable
    signal_events: tuple[Event, ...]
    capacity: Cond
    memory: Memory


def decide(gm: Subject, seen: Seen, now: datetime) -> Outcome:
    """One pass's whole decision for one GreenModel."""
    if gm.deleting:
        return Outcome.nothing(seen)
    if gm.invalid is not None or gm.spec is None:
        return Outcome.invalid(gm, seen, now)
    if seen.catalog is None:
        reason, message = seen.catalog_problem or ("CatalogNotFound", "no ModelCatalog")
        return Outcome.stalled(gm, seen, now, reason, message)
    if gm.spec.suspend:
        return Outcome.suspended(gm, seen, now)
    spec = gm.spec
    exclusions_mem = capacity_exclusions(seen.memory.exclusions, seen.children, now,
                                         seen.tuning.capacity_exclusion_seconds)
    exclusions = {pool: msg for pool, (_, msg) in exclusions_mem.items()}
    observed, last_metrics = observed_for_planner(seen, exclusions, now)
    plan = make_plan(spec, seen.catalog, observed, now)
    memory = replace(seen.memory, exclusions=exclusions_mem, last_metrics=last_metrics,
                     learned=plan.learned if plan.learned else seen.memory.learned)
    carbon = carbon_condition(plan, seen.carbon)
    metrics = metrics_condition(seen.metrics, observed)
    capacity = capacity_condition(plan, observed, exclusions, seen.free_gpus)
    stored = [c.to_k8s() for c in gm.stored.conditions]
    # An input that degrades or recovers is told once, as an Event, besides its condition.
    signal_events = tuple(Event(r, m, t) for r, m, t in signal_transitions(stored, [carbon, metrics]))
    ctx = _Context(plan, observed, exclusions, (carbon, metrics, capacity), signal_events, capacity, memory)
    c = plan.chosen
    if not plan.feasible or c is None or not c.slo_met and c.placement not in seen.children.deployments:
        return Outcome.infeasible(gm, seen, now, ctx)
    variant = next(v for v in seen.catalog.variants if v.name == c.variant)
    try:
        serving = serving_spec(seen.catalog, variant, c, spec)
    except RuntimeProblem as exc:
        return replace(Outcome.stalled(gm, seen, now, exc.reason, str(exc)), memory=memory)
    return Outcome.serving(gm, seen, now, ctx, serving)


# ------------------------------------------------------------------------------------------------ pieces
WEIGHTS_POLL_SECONDS = 30.0  # a download takes minutes; the Job's own events wake the pass sooner


def cache_actions(seen: Seen, desired: Placement, serving: ServingSpec, namespace: str
                  ) -> tuple[tuple[DesiredCache, ...], tuple[Deletion, ...], CacheState | None]:
    """(caches to create, caches to delete once steady, the cache the desired placement waits for or None).

    The desired placement's cache must be filled before its Deployment is applied: pods that mount an empty
    cache with the hub offline could not start. Meanwhile every existing Deployment is left as it is (one made
    before the catalog had a cache keeps serving with its own weights). Caches no Deployment of ours mounts and
    the desired placement does not need are deleted."""
    w = serving.weights
    children, catalog = seen.children, seen.catalog
    wanted: set[tuple[str, str]] = set()
    if catalog is not None:
        model_of = {v.name: v.model_id for v in catalog.variants}
        wanted = {(model_of.get(p.variant, ""), p.region) for p in children.deployments}
    deletions = []
    key = (w.model_id, w.region) if w.source == "cache" else None
    for k, cs in children.caches.items():
        if k in wanted or k == key:
            continue
        if cs.job_uid:
            deletions.append(Deletion("Job", cs.job_name, namespace, cs.job_uid,
                                      f"cache of {k[0]} in {k[1]} is unused"))
        if cs.claim_uid:
            deletions.append(Deletion("PersistentVolumeClaim", cs.claim_name, namespace, cs.claim_uid,
                                      f"cache of {k[0]} in {k[1]} is unused"))
    if key is None or catalog is None or catalog.model_cache is None:
        return (), tuple(deletions), None
    cs = children.caches.get(key)
    mc = catalog.model_cache
    if cs is not None and not cs.claim_name and cs.job_uid:
        # The claim is gone (deleted by hand, or lost): its Job filled a volume that no longer exists. Remove the
        # Job now so the next pass fills a new claim (a Job's template is immutable, so it cannot be re-run).
        stale = Deletion("Job", cs.job_name, namespace, cs.job_uid, f"the cache of {key[0]} in {key[1]} lost its PVC")
        return (), (stale,), cs
    create = DesiredCache(desired, serving, mc.storage_class_name, mc.access_mode,
                          claim=cs is None or not cs.claim_name, job=cs is None or not cs.job_name)
    caches = (create,) if create.claim or create.job else ()
    if cs is not None and cs.ready:
        return caches, tuple(deletions), None
    return caches, tuple(deletions), cs if cs is not None else CacheState(model_id=w.model_id, region=w.region)


def _weights_events(caches: tuple[DesiredCache, ...]) -> tuple[Event, ...]:
    return tuple(Event("DownloadingWeights", f"filling the model cache of {d.serving.weights.model_id} in "
                                             f"{d.placement.region} for {d.placement.describe()}")
                 for d in caches if d.job)


def current_placement(children: ChildState, now: datetime) -> tuple[DeploymentState | None, CurrentPlacement | None]:
    """The Deployment that serves (the Service's), and the planner's view of it. After a crash between
    applying a Deployment and its Service (kopf is at-least-once), the one with the most Ready pods counts as
    current, so hysteresis holds instead of starting over somewhere else."""
    live, since = children.live_deployment, children.service_since
    if live is None and children.deployments:
        live = max(children.deployments.values(), key=lambda d: (d.pods_ready, d.created_at or datetime.min.replace(
            tzinfo=now.tzinfo)))
        since = live.created_at or now
    if live is None:
        return None, None
    p = live.placement
    return live, CurrentPlacement(variant=p.variant, region=p.region, gpu_product=p.gpu_product,
                                  replicas=live.spec_replicas, since=since or now)


def usable_free_gpus(free: Mapping[Pool, int], live: DeploymentState | None,
                     exclusions: Mapping[Pool, str]) -> dict[Pool, int]:
    """Free GPUs per pool as the planner needs them: without what the current placement holds (the planner
    adds its replicas back), and in an excluded pool (our pods were Unschedulable there) only the GPUs our
    scheduled pods already hold beyond the current replicas."""
    out = dict(free)
    if live is not None:
        pool = (live.placement.region, live.placement.gpu_product)
        out[pool] = max(0, out.get(pool, 0) - live.gpus_requested)
    for pool in exclusions:
        out[pool] = 0
        if live is not None and (live.placement.region, live.placement.gpu_product) == pool:
            out[pool] = (live.pods_scheduled - live.spec_replicas) * live.gpus_per_pod
    return out


def capacity_exclusions(previous: Mapping[Pool, tuple[datetime, str]], children: ChildState, now: datetime,
                        hold_seconds: float) -> dict[Pool, tuple[datetime, str]]:
    """Pools where our pods were Unschedulable, each kept ``hold_seconds`` after its last sighting (so a freed
    placement does not flap back and forth with the scheduler), with the scheduler's message."""
    out = {pool: v for pool, v in previous.items() if v[0] > now}
    for dep in children.deployments.values():
        if dep.pods_unschedulable > 0:
            pool = (dep.placement.region, dep.placement.gpu_product)
            out[pool] = (now + timedelta(seconds=hold_seconds),
                         f"{dep.pods_unschedulable} pod(s) of {dep.name} Pending in {pool[0]} ({pool[1]}): "
                         f"{dep.unschedulable_message}")
    return out


def observed_for_planner(seen: Seen, exclusions: Mapping[Pool, str], now: datetime
                         ) -> tuple[Observed, ServingMetrics | None]:
    """The planner's inputs, and the serving metrics to remember: this pass's if Available, else the last
    ones (the planner drops them after missingData.maxHoldSeconds by their timestamp)."""
    live, current = current_placement(seen.children, now)
    free = usable_free_gpus(seen.free_gpus, live, exclusions)
    regions = {name: replace(r, free_gpus={prod: n for (reg, prod), n in free.items() if reg == name})
               for name, r in seen.regions.items()}
    m = seen.metrics
    held = None if m is None else m if m.available else seen.memory.last_metrics
    observed = Observed(regions=regions, current=current, metrics=held, learned=seen.memory.learned)
    return observed, held


def carbon_condition(plan: Plan, signals: Mapping[str, tuple[str, str]]) -> Cond:
    """CarbonDataAvailable for the chosen (or best) candidate's region.

    True: ``Live``; ``FallbackProvider`` (another live provider of the chain answers); ``StaticConfigured``
    (the operator config names only a static intensity for the zone: the admin's choice, nothing is missing).
    False: ``HoldingLastReading`` (no fresh live reading; the last one is used within
    missingData.maxHoldSeconds), ``StaticFallback`` (no live reading within that hold: the configured
    annual mean is used per missingData.carbonFallback; decisions no longer follow the grid),
    ``NoUsableReading``.
    """
    c = plan.chosen or plan.best
    if c is not None:
        kind = c.intensity.kind
        where = f"{c.region}: {c.intensity.grams_per_kwh:.0f} g/kWh from {c.intensity.source} ({kind})"
        reason, message = signals.get(c.region, ("NoData", "no carbon data for this region"))
        others = "; ".join(f"{r}: {why}: {m}" for r, (why, m) in sorted(signals.items())
                           if r != c.region and why not in ("Live", "StaticConfigured"))
        tail = f"; other regions: {others}" if others else ""
        if kind == "Static" and reason == "StaticConfigured":
            return Cond("CarbonDataAvailable", True, "StaticConfigured", f"{where}: {message}{tail}")
        if kind == "Static":
            return Cond("CarbonDataAvailable", False, "StaticFallback",
                        f"{where}: no live reading within missingData.maxHoldSeconds ({reason}: {message}); "
                        f"using the configured static intensity per missingData.carbonFallback{tail}")
        if kind == "Held" or reason not in CARBON_OK:
            return Cond("CarbonDataAvailable", False, "HoldingLastReading",
                        f"{where}, the last live reading; no fresh one ({reason}: {message}); holding it within "
                        f"missingData.maxHoldSeconds{tail}")
        if reason == "FallbackProvider":
            return Cond("CarbonDataAvailable", True, "FallbackProvider", f"{where}; {message}{tail}")
        return Cond("CarbonDataAvailable", True, "Live", f"{where}{tail}")
    problems = {r: v for r, v in signals.items() if v[0] not in CARBON_OK}
    if problems:
        return Cond("CarbonDataAvailable", False, "NoUsableReading",
                    "; ".join(f"{r}: {why}: {m}" for r, (why, m) in sorted(problems.items())))
    return Cond("CarbonDataAvailable", None, "NotEvaluated", "no placement was evaluated")


def metrics_condition(m: ServingMetrics | None, observed: Observed) -> Cond:
    """MetricsAvailable: are serving metrics live, what is held meanwhile, and what energy is used."""
    if m is None:
        return Cond("MetricsAvailable", False, "NotConfigured",
                    "no Prometheus configured; planning from spec.load; emissions use estimated energy")
    ok, reason, message = m.condition()
    held = observed.metrics
    if ok:
        meter = {"dcgm": "DCGM", "kepler": "Kepler"}.get(m.energy_source or "")
        message += (f"; GPU energy measured by {meter}" if meter else
                    "; no GPU energy series (DCGM or Kepler) for these pods: emissions use estimated energy")
    elif held is not None and held.observed_at is not None:
        message += (f"; holding the metrics observed at {held.observed_at.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                    "within missingData.maxHoldSeconds (replicas kept at least as planned from them); "
                    "emissions use estimated energy meanwhile")
    else:
        message += "; planning from spec.load; emissions use estimated energy"
    return Cond("MetricsAvailable", bool(ok), reason or ("Available" if ok else "Unavailable"), message)


def capacity_condition(plan: Plan, observed: Observed, exclusions: Mapping[Pool, str],
                       free: Mapping[Pool, int]) -> Cond:
    """CapacityAvailable: the chosen pool has the GPUs, and no greener pool was passed over for lack of them."""
    c = plan.chosen
    notes = [f"{r}/{p}: {m}" for (r, p), m in sorted(exclusions.items())]
    if c is not None:
        def greener(rj) -> bool:  # only pools that exist: a region without that GPU product is not "full"
            reg = observed.regions.get(rj.region) if rj.region else None
            inten = (reg.intensity or reg.static_intensity) if reg is not None else None
            return (rj.reason == "InsufficientGPUs" and (rj.region, rj.gpu_product) in free and inten is not None
                    and rj.region != c.region and inten.grams_per_kwh < c.intensity.grams_per_kwh)

        for rj in [rj for rj in plan.rejected if greener(rj)][:3]:
            notes.append(f"{rj.region}/{rj.gpu_product}: {rj.message}")
        if notes:
            return Cond("CapacityAvailable", False, "InsufficientGPUs",
                        f"placed in {c.region} ({c.gpu_product}) because greener capacity is missing: "
                        + "; ".join(notes))
        n = free.get((c.region, c.gpu_product))
        return Cond("CapacityAvailable", True, "GPUsAvailable",
                    f"{c.replicas}x{c.gpus_per_replica} {c.gpu_product} in {c.region}"
                    + (f"; {n} more free" if n is not None else ""))
    gpu_fail = [f for f in plan.failed_constraints if f.reason == "InsufficientGPUs"]
    if gpu_fail or notes:
        return Cond("CapacityAvailable", False, "InsufficientGPUs", "; ".join([f.message for f in gpu_fail] + notes))
    return Cond("CapacityAvailable", None, "NotEvaluated", plan.message[:1000])


def slo_condition(plan: Plan, observed: Observed, spec: GreenModelSpec) -> Cond:
    c = plan.chosen
    if c is None:
        return Cond("SLOMet", False, plan.reason, plan.message)
    m = observed.metrics
    itl_slo = spec.latency.inter_token_p95_milliseconds
    if m is not None and m.inter_token_p95_milliseconds is not None and m.inter_token_p95_milliseconds > itl_slo:
        return Cond("SLOMet", False, "ObservedLatencyAboveSLO",
                    f"observed p95 ITL {m.inter_token_p95_milliseconds:.1f} ms > {itl_slo} ms")
    if not c.slo_met:
        return Cond("SLOMet", False, "SLOUnreachableWithinBounds", plan.message)
    return Cond("SLOMet", True, "ModelledSLOMet",
                f"predicted p95 TTFT {c.ttft_p95_ms:.0f}/{spec.latency.ttft_p95_milliseconds} ms, "
                f"p95 ITL {c.itl_p95_ms:.1f}/{itl_slo} ms at {c.load_tokens_per_second:.0f} tok/s ({plan.load_source})")


def _fmt_g(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.1f}"


def _decision_events(plan: Plan, children: ChildState, act: SwitchActions, dep_changes: bool,
                     stored_g: float | None) -> tuple[Event, ...]:
    """One Event per decision that changes something, with old vs new numbers. A switch prices the placement
    it leaves at its own region's intensity now (Plan.current); a rescale compares with the stored prediction
    of the same placement."""
    c = plan.chosen
    desired = c.placement
    live = children.live_deployment
    live_p = children.service_placement if live is not None else None
    was_g = plan.current.g_per_mtok if plan.current is not None and plan.current.placement == live_p else None
    new_g = c.g_per_mtok
    out: list[Event] = []

    def event(reason: str, message: str) -> None:
        out.append(Event(reason, message, "Normal", decision=True))

    if desired not in children.deployments:
        if live_p is None:
            event("VariantSelected", f"placing {desired.describe()} x{c.replicas}: {_fmt_g(new_g)} gCO2e/Mtok "
                                     f"at {c.intensity.grams_per_kwh:.0f} g/kWh ({plan.reason})")
        else:
            event("SwitchStarted", f"starting {desired.describe()} x{c.replicas} ({_fmt_g(new_g)} gCO2e/Mtok) "
                                   f"beside {live_p.describe()} ({_fmt_g(was_g)} gCO2e/Mtok); {plan.hysteresis}")
    if act.service_moved and live_p is not None and act.service_placement == desired and live_p != desired:
        if live_p.region != desired.region:
            event("RegionSwitched", f"{live_p.region} -> {desired.region}: {_fmt_g(was_g)} -> {_fmt_g(new_g)} "
                                    f"gCO2e/Mtok ({live_p.describe()} -> {desired.describe()})")
        if live_p.variant != desired.variant:
            event("VariantSelected", f"{live_p.variant} -> {desired.variant}: {_fmt_g(was_g)} -> {_fmt_g(new_g)} "
                                     f"gCO2e/Mtok in {desired.region}")
        if live_p.gpu_product != desired.gpu_product and live_p.variant == desired.variant \
                and live_p.region == desired.region:
            event("GPUProductSwitched", f"{live_p.gpu_product} -> {desired.gpu_product}: {_fmt_g(was_g)} -> "
                                        f"{_fmt_g(new_g)} gCO2e/Mtok")
    if dep_changes and live_p == desired and live is not None and live.spec_replicas != c.replicas:
        event("Rescaled", f"replicas {live.spec_replicas} -> {c.replicas} for {c.load_tokens_per_second:.0f} "
                          f"output tok/s ({plan.load_source}); predicted p95 ITL {c.itl_p95_ms:.1f} ms, "
                          f"{_fmt_g(stored_g)} -> {_fmt_g(new_g)} gCO2e/Mtok")
    return tuple(out)


def _still_the_same_decision(plan: Plan, stored: GreenModelStatus) -> bool:
    """The plan keeps the placement status already records, and nothing better was held back by hysteresis."""
    d = stored.decision
    return (d is not None and plan.kept_current and plan.best is not None and plan.chosen is not None
            and plan.best.placement == plan.chosen.placement and stored.variant == plan.chosen.variant
            and stored.region == plan.chosen.region and stored.gpu_product == plan.chosen.gpu_product
            and stored.replicas == plan.chosen.replicas)


def _live_ready(children: ChildState) -> int:
    live = children.live_deployment
    return live.pods_ready if live is not None else 0


def _since(ts: datetime | None) -> datetime | None:
    return ts.replace(microsecond=0) if ts is not None else None


def _conditions(gm: Subject, wanted: list[Cond], now: datetime) -> list[Condition]:
    stored = [c.to_k8s() for c in gm.stored.conditions]
    return [Condition.model_validate(c) for c in merge_conditions(stored, wanted, gm.generation, now)]


def _base_status(gm: Subject, seen: Seen, now: datetime, conds: list[Cond]) -> GreenModelStatus:
    """Conditions plus the placement fields of what actually serves (the stored ones when nothing does); the
    accounting blocks stay as stored (only a serving pass advances them)."""
    live = seen.children.live_deployment
    st = GreenModelStatus(observed_generation=gm.generation, conditions=_conditions(gm, conds, now),
                          ready_replicas=live.ready_replicas if live is not None else 0, emissions=gm.stored.emissions,
                          measured=gm.stored.measured)
    if live is None:
        prev = gm.stored
        st.variant, st.region, st.gpu_product = prev.variant, prev.region, prev.gpu_product
        st.replicas, st.placed_since = prev.replicas, prev.placed_since
    else:
        p = live.placement
        st.variant, st.region, st.gpu_product, st.replicas = p.variant, p.region, p.gpu_product, live.spec_replicas
        st.placed_since = _since(seen.children.service_since)
    return st


def account(gm: Subject, seen: Seen, c: Candidate, serving_pods: int, now: datetime
            ) -> tuple[Emissions | None, Emissions, Interval | None]:
    """status.emissions: fold the time since the last pass into the running totals.

    Returns (the block for status: the running totals when a flush is due, else the stored block; the running
    totals to remember; the interval added). Energy is the measured GPU energy from Prometheus when this pass's serving metrics are
    Available and carry it (the energy counter's mean power over the rate window x the interval, or the power
    gauge x the interval: ``accounting.measured_energy_joules``), labelled Measured; else the planner's predicted
    IT power x time, labelled Estimated. Output tokens are the measured tokens/s x the interval when known, else
    the planned load. Intensity and PUE are those of this pass (passes are at most one timer interval apart, so
    the hour is right to within it); embodied is the catalog's kg per GPU over its lifetime for the GPUs of the
    serving pods. Totals advance in memory on every pass and reach status at most every
    ``accounting_flush_seconds``, or once when the energy label changes (Estimated -> Measured/Mixed: at most
    twice in a life); after a restart they resume from status (``advance_status`` ignores intervals already
    counted, so a repeated pass never double-counts).
    """
    stored = gm.stored.emissions
    prev = seen.memory.emissions or stored
    interval = None
    if prev is None or prev.updated is None:
        prev = Emissions(since=now, updated=now)
    elif serving_pods > 0 and now > prev.updated:
        gpu = seen.catalog.gpu(c.gpu_product)
        seconds = (now - prev.updated).total_seconds()
        live = seen.metrics if seen.metrics is not None and seen.metrics.available else None
        joules = None
        if live is not None:
            joules, _basis = measured_energy_joules(seconds, window_energy_joules=live.gpu_energy_joules,
                                                    window_seconds=live.window_seconds,
                                                    power_watts=live.gpu_power_watts)
        tps = live.output_tokens_per_second if live is not None else None
        tokens, token_source = ((tps * seconds, "Measured") if tps is not None
                                else (c.load_tokens_per_second * seconds, "Planned"))
        try:
            got = pass_interval(
                start=prev.updated, end=now, region=c.region, gpus_reserved=serving_pods * c.gpus_per_replica,
                embodied_kg_per_gpu=gpu.embodied_kilograms if gpu else 0.0,
                lifetime_years=gpu.lifetime_years if gpu else 4.0, pue=c.pue,
                intensity_g_per_kwh=c.intensity.grams_per_kwh, intensity_source=c.intensity.source,
                output_tokens=tokens, estimated_power_watts=c.power_watts * serving_pods / max(1, c.replicas),
                measured_energy_joules=joules, gpu_product=c.gpu_product, output_tokens_source=token_source)
            advanced = advance_status(prev, got)
            if advanced is not prev:
                interval = got
            prev = advanced
        except ValueError:
            pass  # an interval that cannot be accounted (e.g. a clock step back) is skipped
    else:
        prev = prev.model_copy(update={"updated": now})  # nothing served: nothing to count
    flushed = stored.updated if stored is not None else None
    relabelled = stored is not None and prev.energy_joules > 0 and prev.energy_source != stored.energy_source
    due = flushed is None or relabelled or (now - flushed).total_seconds() >= seen.tuning.accounting_flush_seconds
    return (prev if due else stored), prev, interval


_MEASURED_TRIGGERS = ("gpu_power_watts", "output_tokens_per_second")


def measured_block(gm: Subject, seen: Seen, held: bool, now: datetime) -> tuple[Measured | None, Measured | None]:
    """status.measured: what the serving metrics show, beside status.predicted. Returns (block for status, the
    freshest block to remember).

    From this pass's metrics when Available (unknown figures absent, never 0). Status gets a new block only when
    it appears, when the meter or pod count changes, when GPU power or output tokens/s move by more than 25 %
    from the stored block, or when the stored one is older than the accounting flush; otherwise the stored block
    stays, so serving noise causes no writes. While metrics are unavailable the last block stays as long as the
    planner holds the last metrics (``held``; its ``observedAt`` says how old), then it is cleared.
    """
    stored = gm.stored.measured
    m = seen.metrics
    if m is None or not m.available:
        return (stored if held else None), None
    meter = {"dcgm": MeterKind.DCGM, "kepler": MeterKind.KEPLER}.get(m.energy_source or "")
    fresh = Measured(
        gpu_power_watts=sig(m.gpu_power_watts), joules_per_token=sig(m.gpu_energy_joules_per_output_token),
        output_tokens_per_second=sig(m.output_tokens_per_second), requests_per_second=sig(m.request_rate_per_second),
        ttft_p95_milliseconds=sig(m.ttft_p95_milliseconds), inter_token_p95_milliseconds=sig(m.inter_token_p95_milliseconds),
        energy_source=meter, pods=m.pods, window_seconds=sig(m.window_seconds), observed_at=m.observed_at)
    if stored is None:
        return fresh, fresh
    if (stored.energy_source, stored.pods, stored.window_seconds) != (fresh.energy_source, fresh.pods,
                                                                      fresh.window_seconds):
        return fresh, fresh
    for k in _MEASURED_TRIGGERS:
        a, b = getattr(stored, k), getattr(fresh, k)
        if (a is None) != (b is None) or a is not None and abs(b - a) > MEASURED_MOVE * max(abs(a), 1e-9):
            return fresh, fresh
    if stored.observed_at is None or (now - stored.observed_at).total_seconds() >= seen.tuning.accounting_flush_seconds:
        return fresh, fresh
    return stored, fresh
