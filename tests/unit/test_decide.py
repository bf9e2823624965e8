"""decide(): every exit of a reconcile pass as a table over the whole outcome (children, deletions, status
conditions, Events, requeue), with no cluster and no fake API.

The catalog is made by hand so each answer is obvious: one family with one variant on one GPU product, two
regions at 50 and 500 g/kWh with 8 free GPUs each. A replica makes 400 output tok/s at the only operating
point, so the 600 tok/s asked for need 2 replicas (utilisation 0.75 <= 0.85), in the 50 g/kWh region.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from greenmodel.api.state import CacheState, ChildState, DeploymentState, Placement, ServingMetrics, intent_hash
from greenmodel.api.v1alpha1 import GreenModelSpec, GreenModelStatus, ModelCatalogSpec
from greenmodel.planning.decide import Memory, Seen, Subject, Tuning, decide
from greenmodel.planning.serving import serving_spec
from greenmodel.planning.types import Intensity, RegionObs

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CATALOG = ModelCatalogSpec.model_validate({
    "gpus": [{"product": "GPU-X", "memoryGiB": 80, "idleWatts": 60, "maxWatts": 400}],
    "variants": [{"name": "small", "family": "chat", "modelId": "org/small", "parametersBillions": 8,
                  "weightMemoryGiB": 16, "quality": {"MMLU": 70},
                  "profiles": [{"gpuProduct": "GPU-X", "prefillTokensPerSecond": 8000,
                                "batch": [{"maxBatchSize": 8, "outputTokensPerSecond": 400,
                                           "interTokenP95Milliseconds": 20, "powerWatts": 300}]}]}]})
SPEC = {"model": {"family": "chat"}, "quality": {"benchmark": "MMLU", "minScore": 60},
        "latency": {"ttftP95Milliseconds": 5000, "interTokenP95Milliseconds": 50},
        "load": {"outputTokensPerSecond": 600}, "hysteresis": {"minImprovementPercent": 10, "minDwellSeconds": 0}}
CLEAN, DIRTY = Placement("small", "r-clean", "GPU-X"), Placement("small", "r-dirty", "GPU-X")
# What the operator runs for the variant at its only operating point (1 GPU, --max-num-seqs 8; no attention
# shape in this catalog, so --max-model-len is the variant's contextLength default, 8192).
SERVING = serving_spec(CATALOG, CATALOG.variants[0], SimpleNamespace(
    runtime_args=(), gpus_per_replica=1, batch_cap=8, max_model_len=8192, gpu_memory_utilization=0.9,
    region="r-clean", gpu_product="GPU-X"), GreenModelSpec.model_validate(SPEC))


def region(g: float) -> RegionObs:
    return RegionObs(intensity=Intensity(g, "electricitymaps", "Z", NOW - timedelta(minutes=5), "Measured"), pue=1.1)


REGIONS = {"r-clean": region(50), "r-dirty": region(500)}
FREE = {("r-clean", "GPU-X"): 8, ("r-dirty", "GPU-X"): 8}
LIVE = {"r-clean": ("Live", "50 g/kWh"), "r-dirty": ("Live", "500 g/kWh")}


def subject(spec=None, invalid=None, deleting=False, **status) -> Subject:
    s = None if invalid else GreenModelSpec.model_validate({**SPEC, **(spec or {})})
    return Subject("team", "chat", "gm-uid", 3, s, invalid=invalid, deleting=deleting,
                   stored=GreenModelStatus(**status))


def dep(p: Placement, replicas=2, ready=None, intent=True, unschedulable=0, **kw) -> DeploymentState:
    ready = replicas if ready is None else ready
    return DeploymentState(name=f"chat-{p.region}", namespace="team", uid=f"uid-{p.region}", placement=p,
                           spec_replicas=replicas, ready_replicas=ready, updated_replicas=replicas,
                           status_replicas=replicas, rolled_out=ready >= replicas, gpus_per_pod=1,
                           intent=intent_hash(p, replicas, SERVING) if intent else "", created_at=NOW - timedelta(hours=2),
                           pods_ready=ready, pods_scheduled=replicas - unschedulable, pods_unschedulable=unschedulable,
                           unschedulable_message="0/3 nodes are available: Insufficient nvidia.com/gpu" if unschedulable
                           else "", **kw)


def children(*deps, live=None, since=NOW - timedelta(hours=1)) -> ChildState:
    return ChildState(deployments={d.placement: d for d in deps}, service_exists=live is not None,
                      service_placement=live, service_since=since if live else None, pdb_exists=bool(deps))


def seen(kids=None, catalog=CATALOG, problem=None, regions=None, free=None, memory=None, metrics=None) -> Seen:
    return Seen(children=kids or children(), catalog=catalog, catalog_problem=problem,
                regions=REGIONS if regions is None else regions, carbon=LIVE, free_gpus=FREE if free is None else free,
                metrics=metrics, memory=memory or Memory(), tuning=Tuning(drain_seconds=5, poll_seconds=3))


# name -> (subject, seen, expected)
# expected: kind, deployment (placement, replicas) | None, service placement | None, deletions, event reasons,
# conditions {type: (status, reason)}, requeue seconds
TABLE = {
    "being deleted": (
        subject(deleting=True), seen(children(dep(CLEAN), live=CLEAN)),
        dict(kind="Nothing", deployment=None, service=None, deletions=[], events=[], conditions=None, requeue=None)),
    "invalid spec": (
        subject(invalid="spec.load.requestsPerSecond: must be >= 0"), seen(),
        dict(kind="Invalid", deployment=None, service=None, deletions=[], events=["InvalidSpec"],
             conditions={"Ready": ("False", "InvalidSpec"), "Reconciling": ("False", "InvalidSpec"),
                         "Stalled": ("True", "InvalidSpec")}, requeue=None)),
    "catalog missing": (
        subject(), seen(catalog=None, problem=("CatalogNotFound", "ModelCatalog 'default' does not exist")),
        dict(kind="Stalled", deployment=None, service=None, deletions=[], events=["CatalogNotFound"],
             conditions={"Ready": ("False", "CatalogNotFound"), "Stalled": ("True", "CatalogNotFound")},
             requeue=None)),
    "catalog invalid, old pods keep serving": (
        subject(), seen(children(dep(CLEAN), live=CLEAN), catalog=None, problem=("CatalogInvalid", "bad")),
        dict(kind="Stalled", deployment=None, service=None, deletions=[], events=["CatalogInvalid"],
             conditions={"Ready": ("True", "ServingLastPlacement"), "Stalled": ("True", "CatalogInvalid")},
             requeue=None)),
    "suspended, nothing runs": (
        subject(spec={"suspend": True}), seen(),
        dict(kind="Suspended", deployment=None, service=None, deletions=[], events=[],
             conditions={"Ready": ("False", "Suspended"), "Reconciling": ("False", "Suspended"),
                         "Stalled": ("True", "Suspended")}, requeue=None)),
    "suspended while serving": (
        subject(spec={"suspend": True}), seen(children(dep(CLEAN), live=CLEAN)),
        dict(kind="Suspended", deployment=None, service=None, deletions=[], events=[],
             conditions={"Ready": ("True", "Suspended"), "Stalled": ("False", "Suspended")}, requeue=None)),
    "floor above every variant": (
        subject(spec={"quality": {"benchmark": "MMLU", "minScore": 90}}), seen(),
        dict(kind="Infeasible", deployment=None, service=None, deletions=[], events=["PlanInfeasible"],
             conditions={"Ready": ("False", "BelowQualityFloor"), "Stalled": ("True", "BelowQualityFloor"),
                         "CarbonDataAvailable": ("Unknown", "NotEvaluated")}, requeue=None)),
    "no GPUs anywhere, old pods keep serving": (
        subject(), seen(children(dep(DIRTY), live=DIRTY), free={("r-clean", "GPU-X"): 0, ("r-dirty", "GPU-X"): 0},
                        regions={"r-clean": region(50)}),
        dict(kind="Infeasible", deployment=None, service=None, deletions=[], events=["PlanInfeasible"],
             conditions={"Ready": ("True", "ServingLastPlacement"), "Stalled": ("True", "NoGPUAvailable"),
                         "CapacityAvailable": ("False", "InsufficientGPUs")}, requeue=None)),
    "runtime without an image": (
        subject(), seen(catalog=CATALOG.model_copy(update={"variants": [CATALOG.variants[0].model_copy(
            update={"runtime": CATALOG.variants[0].runtime.model_copy(update={"name": "TGI"})})]})),
        dict(kind="Stalled", deployment=None, service=None, deletions=[], events=["RuntimeImageMissing"],
             conditions={"Stalled": ("True", "RuntimeImageMissing")}, requeue=None)),
    "first placement": (
        subject(), seen(),
        dict(kind="Serving", deployment=(CLEAN, 2), service=CLEAN, deletions=[], events=["VariantSelected"],
             conditions={"Ready": ("False", "Deploying"), "Reconciling": ("True", "Deploying"),
                         "Stalled": ("False", "Progressing"), "CarbonDataAvailable": ("True", "Live"),
                         "MetricsAvailable": ("False", "NotConfigured"), "CapacityAvailable": ("True", "GPUsAvailable"),
                         "SLOMet": ("True", "ModelledSLOMet")}, requeue=3)),
    "steady: ready and unchanged": (
        subject(), seen(children(dep(CLEAN), live=CLEAN)),
        dict(kind="Serving", deployment=(CLEAN, 2), service=CLEAN, deletions=[], events=[],
             conditions={"Ready": ("True", "Serving"), "Reconciling": ("False", "ReconciliationSucceeded")},
             requeue=None)),
    "load grew: rescale in place": (
        subject(spec={"load": {"outputTokensPerSecond": 1000}}), seen(children(dep(CLEAN), live=CLEAN)),
        dict(kind="Serving", deployment=(CLEAN, 3), service=CLEAN, deletions=[], events=["Rescaled"],
             conditions={"Ready": ("True", "Serving"), "Reconciling": ("True", "Rescaling")}, requeue=None)),
    "switch started: the dirty region keeps serving": (
        subject(), seen(children(dep(DIRTY), live=DIRTY)),
        dict(kind="Serving", deployment=(CLEAN, 2), service=DIRTY, deletions=[], events=["SwitchStarted"],
             conditions={"Ready": ("False", "Switching"), "Reconciling": ("True", "Switching")}, requeue=3)),
    "switch: target not ready yet": (
        subject(), seen(children(dep(DIRTY), dep(CLEAN, ready=1), live=DIRTY)),
        dict(kind="Serving", deployment=(CLEAN, 2), service=DIRTY, deletions=[], events=[],
             conditions={"Ready": ("False", "Switching"), "Reconciling": ("True", "Switching")}, requeue=3)),
    "switch: target ready, the Service moves, the old one drains": (
        subject(), seen(children(dep(DIRTY), dep(CLEAN), live=DIRTY)),
        dict(kind="Serving", deployment=(CLEAN, 2), service=CLEAN, deletions=[], events=["RegionSwitched"],
             # held for the longest request the SLO allows (2048 tokens x 50 ms + 5 s TTFT = 107.4 -> 108 s) after
             # the operator's 5 s for endpoints to catch up
             conditions={"Ready": ("True", "Serving"), "Reconciling": ("True", "Draining")}, requeue=113)),
    "switch: the old placement still drains the longest request": (
        subject(), seen(children(dep(DIRTY), dep(CLEAN), live=CLEAN, since=NOW - timedelta(seconds=100))),
        dict(kind="Serving", deployment=(CLEAN, 2), service=CLEAN, deletions=[], events=[],
             conditions={"Ready": ("True", "Serving"), "Reconciling": ("True", "Draining")}, requeue=13)),
    "switch: drained, the old placement is deleted by uid": (
        subject(), seen(children(dep(DIRTY), dep(CLEAN), live=CLEAN, since=NOW - timedelta(seconds=114))),
        dict(kind="Serving", deployment=(CLEAN, 2), service=CLEAN, deletions=["uid-r-dirty"], events=[],
             conditions={"Ready": ("True", "Serving"), "Reconciling": ("False", "ReconciliationSucceeded")},
             requeue=None)),
    "unschedulable pods exclude the pool and say so": (
        subject(), seen(children(dep(CLEAN, ready=0, unschedulable=2), live=CLEAN)),
        dict(kind="Serving", deployment=(DIRTY, 2), service=CLEAN, deletions=[],
             events=["SwitchStarted", "CapacityUnavailable"],
             conditions={"CapacityAvailable": ("False", "InsufficientGPUs")}, requeue=3)),
}


@pytest.mark.parametrize("case", list(TABLE))
def test_decide(case):
    gm, s, want = TABLE[case]
    out = decide(gm, s, NOW)
    assert out.kind == want["kind"]
    got_dep = (out.deployment.placement, out.deployment.replicas) if out.deployment else None
    assert got_dep == want["deployment"]
    assert (out.service.placement if out.service else None) == want["service"]
    assert [d.uid for d in out.deletions] == want["deletions"]
    assert [e.reason for e in out.events] == want["events"], [(e.reason, e.message) for e in out.events]
    assert out.requeue_seconds == (pytest.approx(want["requeue"]) if want["requeue"] else None)
    if want["conditions"] is None:
        assert out.status is None
        return
    st = out.status.to_k8s()
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    for t, v in want["conditions"].items():
        assert conds.get(t) == v, (t, conds)
    assert st["observedGeneration"] == 3
    # kstatus: not Ready means Reconciling or Stalled, never both
    assert not (conds["Reconciling"][0] == "True" and conds["Stalled"][0] == "True"), conds
    if conds["Ready"][0] != "True":
        assert "True" in (conds["Reconciling"][0], conds["Stalled"][0]), conds
    if out.kind == "Serving":
        assert (st["variant"], st["region"], st["replicas"]) == (out.deployment.placement.variant,
                                                                out.deployment.placement.region, out.deployment.replicas)


def test_a_switch_prices_both_sides_at_their_own_region():
    out = decide(subject(), seen(children(dep(DIRTY), dep(CLEAN), live=DIRTY)), NOW)
    msg = next(e.message for e in out.events if e.reason == "RegionSwitched")
    before, after = (float(x) for x in msg.split(": ", 1)[1].split(" gCO2e")[0].split(" -> "))
    assert msg.startswith("r-dirty -> r-clean") and before > 5 * after, msg  # 10x the intensity


def test_an_unchanged_pass_decides_the_same_thing_twice():
    s = seen(children(dep(CLEAN), live=CLEAN))
    a = decide(subject(), s, NOW)
    b = decide(subject(**a.status.model_dump()), replace(s, memory=a.memory), NOW + timedelta(seconds=30))
    assert b.events == () and b.deployment == a.deployment and b.deletions == ()
    keep = ("conditions", "variant", "region", "replicas", "readyReplicas", "placedSince", "decision")
    assert {k: b.status.to_k8s()[k] for k in keep} == {k: a.status.to_k8s()[k] for k in keep}
    assert b.status.decision.time == a.status.decision.time == NOW  # nothing was decided anew


def test_a_new_decision_replaces_the_stored_one():
    s = seen(children(dep(CLEAN), live=CLEAN))
    a = decide(subject(), s, NOW)
    grown = GreenModelSpec.model_validate({**SPEC, "load": {"outputTokensPerSecond": 1000}})
    b = decide(replace(subject(**a.status.model_dump()), spec=grown), replace(s, memory=a.memory),
               NOW + timedelta(seconds=30))
    assert b.status.replicas == 3 and b.status.decision.time == NOW + timedelta(seconds=30)


def test_only_moving_an_existing_service_rereads_it_first():
    first = decide(subject(), seen(), NOW)
    assert first.service.placement == CLEAN and not first.service.verify_live  # nothing of ours to move
    move = decide(subject(), seen(children(dep(DIRTY), dep(CLEAN), live=DIRTY)), NOW)
    assert move.service.placement == CLEAN and move.service.verify_live


def test_unavailable_metrics_hold_the_last_ones_and_say_so():
    held = ServingMetrics(True, "Available", "2 pod(s) reporting", NOW - timedelta(minutes=2), 120.0,
                          output_tokens_per_second=1000.0)
    down = ServingMetrics(False, "PrometheusUnreachable", "connection refused", NOW, 120.0)
    out = decide(subject(), seen(children(dep(CLEAN), live=CLEAN), metrics=down, memory=Memory(last_metrics=held)), NOW)
    conds = {c.type: c for c in out.status.conditions}
    assert (conds["MetricsAvailable"].status.value, conds["MetricsAvailable"].reason) == ("False", "PrometheusUnreachable")
    assert "holding the metrics observed at" in conds["MetricsAvailable"].message
    assert out.deployment.replicas == 3  # sized for the held 1,000 tok/s, not dropped to the spec's 600
    assert out.memory.last_metrics is held


# ------------------------------------------------------------------------------------------------ model cache
def _cached_catalog() -> ModelCatalogSpec:
    return ModelCatalogSpec.model_validate({**CATALOG.to_k8s(), "modelCache": {"storageClassName": "fast"}})


def _cache(region: str, **kw) -> CacheState:
    fields = dict(claim_name=f"chat-weights-{region}", claim_uid="c-uid", claim_phase="Bound",
                  job_name=f"chat-fetch-{region}", job_uid="j-uid", job_started=NOW - timedelta(seconds=40))
    return CacheState(model_id="org/small", region=region, **{**fields, **kw})


def test_a_first_placement_waits_for_its_cache_and_creates_it():
    out = decide(subject(), seen(catalog=_cached_catalog()), NOW)
    assert out.deployment is None and out.service is None and len(out.caches) == 1
    c = out.caches[0]
    assert (c.claim, c.job, c.storage_class, c.placement) == (True, True, "fast", CLEAN)
    conds = {x.type: (x.status.value, x.reason) for x in out.status.conditions}
    assert conds["Reconciling"] == ("True", "WaitingForWeights") and conds["Ready"] == ("False", "WaitingForWeights")
    assert "DownloadingWeights" in [e.reason for e in out.events]


def test_a_switch_waits_for_the_target_cache_while_the_old_region_serves():
    kids = replace(children(dep(DIRTY), live=DIRTY), caches={("org/small", "r-dirty"): _cache("r-dirty", job_succeeded=True),
                                                             ("org/small", "r-clean"): _cache("r-clean", claim_phase="Pending")})
    out = decide(subject(), seen(kids, catalog=_cached_catalog()), NOW)
    assert out.deployment is None and out.caches == () and out.deletions == ()  # both exist; nothing touched
    ready = next(x for x in out.status.conditions if x.type == "Ready")
    rec = next(x for x in out.status.conditions if x.type == "Reconciling")
    assert (ready.status.value, rec.reason) == ("True", "WaitingForWeights")
    assert "for 40 s" in rec.message and "Pending" in rec.message
    assert out.status.region == "r-dirty"


def test_a_filled_cache_lets_the_deployment_mount_it_and_an_unused_one_goes_when_steady():
    kids = replace(children(dep(CLEAN), live=CLEAN), caches={("org/small", "r-clean"): _cache("r-clean", job_succeeded=True),
                                                             ("org/small", "r-dirty"): _cache("r-dirty", job_succeeded=True)})
    out = decide(subject(), seen(kids, catalog=_cached_catalog()), NOW)
    assert out.deployment is not None and out.deployment.serving.weights.source == "cache"
    assert sorted(d.kind for d in out.deletions) == ["Job", "PersistentVolumeClaim"]
    assert all("r-dirty" in d.why for d in out.deletions)


def test_a_failed_download_stalls_and_says_how_to_retry():
    kids = replace(children(), caches={("org/small", "r-clean"): _cache("r-clean", job_failed="BackoffLimitExceeded")})
    out = decide(subject(), seen(kids, catalog=_cached_catalog()), NOW)
    conds = {x.type: (x.status.value, x.reason) for x in out.status.conditions}
    assert conds["Stalled"] == ("True", "WeightsDownloadFailed") and conds["Reconciling"][0] == "False"
    warn = next(e for e in out.events if e.reason == "WeightsDownloadFailed")
    assert warn.type == "Warning" and "delete the Job to retry" in warn.message and out.requeue_seconds is None


def test_a_cache_that_lost_its_claim_drops_its_job_to_fill_a_new_one():
    lost = replace(_cache("r-clean", job_succeeded=True), claim_name="", claim_uid="", claim_phase="")
    out = decide(subject(), seen(replace(children(), caches={("org/small", "r-clean"): lost}),
                                 catalog=_cached_catalog()), NOW)
    assert [(d.kind, d.uid) for d in out.deletions] == [("Job", "j-uid")] and out.deployment is None
    again = decide(subject(), seen(catalog=_cached_catalog()), NOW)  # the Job gone: both are created anew
    assert (again.caches[0].claim, again.caches[0].job) == (True, True)
