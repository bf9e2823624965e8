"""A whole reconcile pass against an in-memory fake API: placement, idle = no writes, switch, capacity.

Drives ``handlers.reconcile_pass`` with the shipped default catalog and example operator config,
simulating the Deployment controller and kubelet by editing child status between passes.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from greenmodel import handlers
from greenmodel.reconcile import apply as rapply
from greenmodel.reconcile import observe as robserve
from greenmodel.kube import names
from greenmodel.observability import EventRecorder
from greenmodel.settings import load_settings

from test_handlers_io import FakeKube

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class ClusterFake(FakeKube):
    def __init__(self, nodes):
        super().__init__()
        self.nodes = nodes
        self.pods: list[dict] = []

    def list(self, kind, namespace=None, **_):
        self.calls.append(("LIST", kind.plural))
        if kind.plural == "nodes":
            return copy.deepcopy(self.nodes)
        if kind.plural == "pods":
            return copy.deepcopy(self.pods)
        return [copy.deepcopy(o) for (plural, ns, _), o in self.objects.items() if plural == kind.plural]


def node(name, region, product, gpus):
    return {"metadata": {"name": name, "labels": {"topology.kubernetes.io/region": region,
                                                   "nvidia.com/gpu.product": product}},
            "spec": {}, "status": {"allocatable": {"nvidia.com/gpu": str(gpus)},
                                   "conditions": [{"type": "Ready", "status": "True"}]}}


FLEET = [node(f"{r}-{p[-4:]}", r, p, 8) for r in ("europe-west2", "europe-west3", "europe-west9", "europe-central2")
         for p in ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4")]

SPEC = {"model": {"family": "general-chat"}, "quality": {"benchmark": "MMLU", "minScore": 60},
        "load": {"outputTokensPerSecond": 500}, "hysteresis": {"minImprovementPercent": 10, "minDwellSeconds": 0}}


def assert_kstatus_contract(gm: dict) -> None:
    """Every status we publish: observedGeneration set; not Ready means Reconciling or Stalled, never both."""
    st = gm.get("status") or {}
    assert "observedGeneration" in st
    conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
    assert not (conds.get("Reconciling") == "True" and conds.get("Stalled") == "True"), conds
    if conds.get("Ready") != "True":
        assert "True" in (conds.get("Reconciling"), conds.get("Stalled")), conds


class World:
    def __init__(self, nodes=FLEET, intensities=None, spec=None):
        self.fake = ClusterFake(copy.deepcopy(nodes))
        settings = load_settings(REPO / "examples" / "operator-config.yaml")
        if intensities:
            data = settings.model_dump(by_alias=True)
            data["carbon"]["providers"]["static"]["gramsPerKilowattHour"].update(intensities)
            settings = type(settings).model_validate(data)
        self.now = T0
        self.events: list[dict] = []
        rt = handlers.Runtime(client=self.fake, settings=settings, clock=lambda: self.now)
        rt.recorder = EventRecorder(self.events.append, suppress_seconds=0)
        rt.carbon = handlers.build_carbon(settings)
        rt.serving_metrics = None
        rt.inventory_ttl_seconds = -1
        self.rt = rt
        body = {"apiVersion": "greenmodel.dev/v1alpha1", "kind": "GreenModel",
                "metadata": {"name": "chat", "namespace": "team", "uid": "gm-uid", "generation": 1,
                             "resourceVersion": "1"},
                "spec": copy.deepcopy(spec or SPEC)}
        self.fake.objects[("greenmodels", "team", "chat")] = body
        rt.greenmodels.upsert(copy.deepcopy(body))

    def gm(self):
        return self.rt.greenmodels.get("team", "chat")

    def run(self):
        result = handlers.reconcile_pass(self.rt, self.gm())
        assert_kstatus_contract(self.gm())
        return result

    def deployments(self):
        return [o for (pl, _, _), o in self.fake.objects.items() if pl == "deployments"]

    def service(self):
        return self.fake.objects.get(("services", "team", "chat"))

    def settle(self, ready=True, unschedulable=False):
        """Play the Deployment controller + kubelet: every Deployment's pods become (un)ready."""
        self.rt.pods.replace_all([])
        self.fake.pods = []
        for d in self.deployments():
            n = d["spec"]["replicas"]
            d["metadata"]["generation"] = d["metadata"].get("generation", 1)
            d["status"] = {"observedGeneration": d["metadata"]["generation"], "replicas": n, "updatedReplicas": n,
                           "readyReplicas": n if ready else 0}
            d["metadata"]["resourceVersion"] = str(int(d["metadata"]["resourceVersion"]) + 1000)
            self.rt.deployments.upsert(copy.deepcopy(d))
            labels = d["spec"]["template"]["metadata"]["labels"]
            for i in range(n):
                pod = {"metadata": {"name": f"{d['metadata']['name']}-{i}", "namespace": "team", "labels": labels,
                                    "uid": f"{d['metadata']['name']}-{i}", "resourceVersion": "1"},
                       "spec": {"nodeName": "x"} if not unschedulable else {},
                       "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
                       if ready else {"phase": "Pending", "conditions": [
                           {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/12 nodes are available: 12 Insufficient nvidia.com/gpu."}]}}
                self.rt.pods.upsert(pod)

    def cond(self, type_):
        for c in (self.gm().get("status") or {}).get("conditions") or []:
            if c["type"] == type_:
                return c
        return None


def test_first_pass_places_in_the_greenest_region_and_becomes_ready():
    w = World()
    w.run()
    deps = w.deployments()
    assert len(deps) == 1
    st = w.gm()["status"]
    assert st["region"] == "europe-west9"  # FR, 89 g/kWh in the example config
    assert deps[0]["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["europe-west9"]
    assert w.cond("Ready")["status"] == "False" and w.cond("Reconciling")["status"] == "True"
    assert st["observedGeneration"] == 1
    assert any(e["reason"] == "VariantSelected" for e in w.events)
    w.settle()
    w.run()
    assert w.cond("Ready")["status"] == "True", w.cond("Ready")
    assert w.cond("Reconciling")["status"] == "False" and w.cond("Stalled")["status"] == "False"
    assert w.cond("CarbonDataAvailable")["status"] == "True"
    args = deps[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert deps[0]["spec"]["template"]["spec"]["containers"][0]["command"] == ["vllm", "serve"]
    assert "/" in args[0] and "--tensor-parallel-size" in args and "--max-model-len" in args  # model positional


def test_idle_passes_write_nothing():
    w = World()
    w.run()
    w.settle()
    w.run()
    before = len(w.fake.writes())
    for i in range(5):
        w.now += timedelta(seconds=30)
        w.run()
    assert w.fake.writes()[before:] == []


def test_greener_region_moves_the_workload_without_dropping_the_old_one_first():
    w = World()
    w.run()
    w.settle()
    w.run()
    first = w.gm()["status"]["region"]
    # The grid changes: FR becomes the dirtiest, GB the cleanest.
    w.rt.settings = w.rt.settings.model_validate(
        {**w.rt.settings.model_dump(by_alias=True),
         "carbon": {**w.rt.settings.model_dump(by_alias=True)["carbon"],
                    "providers": {"static": {"type": "static", "gramsPerKilowattHour":
                                             {"GB": 20, "DE": 474.3, "FR": 900, "PL": 818.9}}}}})
    w.rt.carbon = handlers.build_carbon(w.rt.settings)
    w.now += timedelta(hours=1)
    w.run()
    regions = sorted(d["metadata"]["labels"][names.LABEL_REGION] for d in w.deployments())
    assert regions == sorted([first, "europe-west2"])  # new beside old
    assert names.LABEL_COMPONENT in w.service()["spec"]["selector"]
    old_component = w.service()["spec"]["selector"][names.LABEL_COMPONENT]
    # new not ready yet: the Service stays on the old placement
    w.run()
    assert w.service()["spec"]["selector"][names.LABEL_COMPONENT] == old_component
    w.settle()
    w.run()  # new is Ready: the Service moves; the old one drains
    assert w.service()["spec"]["selector"][names.LABEL_COMPONENT] != old_component
    assert len(w.deployments()) == 2
    switched = [e["message"] for e in w.events if e["reason"] == "RegionSwitched"]
    assert len(switched) == 1 and "europe-west9 -> europe-west2" in switched[0], switched
    # The placement left is priced at its own region's intensity (FR 900 g/kWh), the target at GB's 20:
    # 45x the intensity; the embodied share and the GPU choice cannot close a gap like that.
    before, after = map(float, re.search(r": ([\d.]+) -> ([\d.]+) gCO2e/Mtok", switched[0]).groups())
    assert before > 5 * after, switched[0]
    # The old placement, out of the Service, stays while a stream it started may run: the longest the SLO
    # allows is 2048 tokens (spec.serving.maxOutputTokens default) x 100 ms + 2 s TTFT = 206.8 -> 207 s, after
    # the operator's 5 s for the endpoints to catch up.
    w.now += timedelta(seconds=200)
    w.run()
    assert len(w.deployments()) == 2
    w.now += timedelta(seconds=13)
    w.run()
    assert [d["metadata"]["labels"][names.LABEL_REGION] for d in w.deployments()] == ["europe-west2"]


def test_unschedulable_pods_exclude_the_region_and_say_so():
    w = World()
    w.run()
    first = (w.gm()["status"]["region"], w.gm()["status"]["gpuProduct"])
    w.settle(ready=False, unschedulable=True)
    w.run()
    cap = w.cond("CapacityAvailable")
    assert cap["status"] == "False" and "Insufficient nvidia.com/gpu" in cap["message"]
    assert (w.gm()["status"]["region"], w.gm()["status"]["gpuProduct"]) != first
    assert any(e["reason"] == "CapacityUnavailable" for e in w.events)


def test_full_region_is_skipped_by_inventory():
    nodes = [n for n in FLEET if n["metadata"]["labels"]["topology.kubernetes.io/region"] != "europe-west9"]
    nodes += [node("fr-full", "europe-west9", p, 0) for p in ("NVIDIA-L4",)]
    w = World(nodes=nodes)
    w.run()
    assert w.gm()["status"]["region"] == "europe-west2"  # GB is the next greenest


def test_infeasible_spec_keeps_children_and_warns():
    w = World(spec={**SPEC, "quality": {"benchmark": "MMLU", "minScore": 99.9}})
    w.run()
    assert w.deployments() == []
    assert w.cond("Stalled")["status"] == "True" and w.cond("Ready")["status"] == "False"
    assert any(e["reason"] == "PlanInfeasible" and e["type"] == "Warning" for e in w.events)
    n = len(w.fake.writes())
    w.run()
    assert len(w.fake.writes()) == n  # repeated infeasible passes write nothing new


def test_suspend_changes_nothing():
    w = World()
    w.run()
    w.settle()
    w.run()
    body = w.gm()
    body = copy.deepcopy(body)
    body["spec"]["suspend"] = True
    body["spec"]["load"] = {"outputTokensPerSecond": 50000}
    body["metadata"]["generation"] = 2
    w.rt.greenmodels.upsert(body)
    before = [c for c in w.fake.writes() if c[1] != "greenmodels"]
    w.run()
    assert [c for c in w.fake.writes() if c[1] != "greenmodels"] == before
    assert w.cond("Reconciling")["reason"] == "Suspended"


def test_deleted_child_is_restored():
    w = World()
    w.run()
    w.settle()
    w.run()
    d = w.deployments()[0]
    del w.fake.objects[("deployments", "team", d["metadata"]["name"])]
    w.rt.deployments.remove(d)
    w.run()
    assert len(w.deployments()) == 1


def test_emissions_accumulate_in_memory_and_reach_status_hourly():
    w = World()
    w.run()
    w.settle()
    w.run()
    first = w.gm()["status"]["emissions"]
    assert first["scope2Grams"] == 0
    writes = len(w.fake.writes())
    for _ in range(10):  # 10 passes, 5 minutes: totals advance in memory only
        w.now += timedelta(seconds=30)
        w.run()
    assert len(w.fake.writes()) == writes
    w.now += timedelta(minutes=56)
    w.run()
    em = w.gm()["status"]["emissions"]
    c = w.gm()["status"]
    hours = (w.now - T0).total_seconds() / 3600
    assert em["energySource"] == "Estimated"
    assert em["outputTokens"] == pytest.approx(500 * 3600 * hours, rel=0.01)
    # Scope 2 = predicted IT power x hours x PUE x intensity (FR 89.1 g/kWh, PUE 1.1)
    power_w = c["predicted"]["powerWatts"]
    assert em["scope2Grams"] == pytest.approx(power_w / 1000 * hours * 1.1 * 89.1, rel=0.02)
    assert em["scope3Grams"] > 0 and em["sciGramsPerThousandTokens"] > 0
    # a repeated pass at the same instant changes nothing
    n = len(w.fake.writes())
    w.run()
    assert len(w.fake.writes()) == n


class _OneZone:
    """A ZoneCache stand-in: the real one, with one zone's status rewritten by ``rewrite``."""

    def __init__(self, real, zone: str, rewrite):
        self.real, self.zone, self.rewrite = real, zone, rewrite

    def zones(self):
        return self.real.zones()

    def status(self, zone):
        st = self.real.status(zone)
        return self.rewrite(st) if zone == self.zone else st


def held(age_seconds: float):
    """The zone's reading is the last good value, ``age_seconds`` old, and no fresh one exists."""
    return lambda st: dataclasses.replace(st, usable=False, reading=dataclasses.replace(
        st.reading, timestamp=T0 - timedelta(seconds=age_seconds), kind="measured"))


def static_link(age_seconds: float):
    """A chain `electricitymaps, static` whose primary failed: the cache answers with the static link's annual
    mean, and its last live reading (40 g/kWh) is ``age_seconds`` old."""
    return lambda st: dataclasses.replace(st, primary="electricitymaps", live_reading=dataclasses.replace(
        st.reading, value=40.0, source="electricitymaps", kind="measured", timestamp=T0 - timedelta(seconds=age_seconds)))


@pytest.mark.parametrize("age, reason", [(5400, "HoldingLastReading"), (7 * 3600, "StaticFallback")])
def test_missing_carbon_data_holds_then_falls_back_and_says_so(age, reason):
    w = World(spec={**SPEC, "missingData": {"maxHoldSeconds": 7200, "carbonFallback": "StaticIntensity"}})
    w.rt.carbon = _OneZone(w.rt.carbon, "FR", held(age))
    w.run()
    cond = w.cond("CarbonDataAvailable")
    assert cond["status"] == "False" and cond["reason"] == reason, cond
    assert w.gm()["status"]["region"] == "europe-west9"  # still placed: missing data is not zero
    assert w.deployments() and w.deployments()[0]["spec"]["replicas"] >= 1


def test_a_static_only_config_is_available_as_configured():
    w = World()
    w.run()
    cond = w.cond("CarbonDataAvailable")
    assert (cond["status"], cond["reason"]) == ("True", "StaticConfigured"), cond
    assert w.gm()["status"]["intensity"]["kind"] == "Static"
    assert not [e for e in w.events if e["reason"].startswith("CarbonData")]


@pytest.mark.parametrize("age, reason, grams", [(600, "HoldingLastReading", 40), (5400, "HoldingLastReading", 40),
                                                (7 * 3600, "StaticFallback", 89)])
def test_a_chain_down_to_its_static_link_holds_the_live_reading_then_falls_back(age, reason, grams):
    """The chain's static link is not live data: the planner holds the last live reading for
    missingData.maxHoldSeconds, then uses the static intensity, and the condition says which."""
    w = World(spec={**SPEC, "missingData": {"maxHoldSeconds": 7200, "carbonFallback": "StaticIntensity"}})
    w.rt.carbon = _OneZone(w.rt.carbon, "FR", static_link(age))
    w.run()
    cond = w.cond("CarbonDataAvailable")
    assert cond["status"] == "False" and cond["reason"] == reason, cond
    assert "electricitymaps unavailable" in cond["message"], cond
    st = w.gm()["status"]
    assert st["region"] == "europe-west9" and round(st["intensity"]["gramsPerKilowattHour"]) == grams, st
    assert [e["reason"] for e in w.events if e["reason"].startswith("CarbonData")] == [f"CarbonData{reason}"]


def test_a_chain_down_to_its_static_link_with_exclude_region_moves_away():
    w = World(spec={**SPEC, "missingData": {"maxHoldSeconds": 600, "carbonFallback": "ExcludeRegion"}})
    w.rt.carbon = _OneZone(w.rt.carbon, "FR", static_link(3600))
    w.run()
    assert w.gm()["status"]["region"] == "europe-west2"
    assert any(a.get("reason") == "CarbonDataMissing" for a in w.gm()["status"]["alternatives"])


def test_missing_carbon_data_with_exclude_region_moves_away():
    w = World(spec={**SPEC, "missingData": {"maxHoldSeconds": 600, "carbonFallback": "ExcludeRegion"}})
    w.rt.carbon = _OneZone(w.rt.carbon, "FR", held(3600))
    w.run()
    assert w.gm()["status"]["region"] == "europe-west2"
    assert any(a.get("reason") == "CarbonDataMissing" for a in w.gm()["status"]["alternatives"])


class _FakeMetrics:
    def __init__(self):
        self.value = None  # None: Prometheus unreachable

    def get(self, namespace, instance, model_name=None):
        from greenmodel.api.state import ServingMetrics

        if self.value is None:
            return ServingMetrics(False, "PrometheusUnreachable", "connection refused", T0, 120.0)
        return ServingMetrics(True, "Available", f"{self.value} tok/s", self.now, 120.0,
                              output_tokens_per_second=self.value, request_rate_per_second=self.value / 256)


def test_prometheus_gone_holds_replicas_and_says_so():
    w = World(spec={**SPEC, "maxReplicas": 32, "missingData": {"maxHoldSeconds": 600}})
    fake = _FakeMetrics()
    w.rt.serving_metrics = fake
    fake.value, fake.now = 20000.0, T0
    w.run()
    w.settle()
    w.run()
    busy = w.gm()["status"]["replicas"]
    assert w.cond("MetricsAvailable")["status"] == "True"
    assert busy > 1
    fake.value = None  # Prometheus stops
    w.now += timedelta(seconds=60)
    w.run()
    assert w.gm()["status"]["replicas"] == busy  # held, not dropped to the spec prior
    cond = w.cond("MetricsAvailable")
    assert cond["status"] == "False" and "holding" in cond["message"]
    w.now += timedelta(seconds=1200)  # beyond maxHoldSeconds: back to the spec prior (500 tok/s)
    w.run()
    assert 1 <= w.gm()["status"]["replicas"] < busy


def test_prediction_wobble_below_the_tolerance_writes_no_status():
    base = {"replicas": 2, "predicted": {"powerWatts": 500.0, "outputTokensPerSecond": 1000.0, "gpus": 2},
            "alternatives": [{"variant": "a", "replicas": 3, "gramsPerMillionTokens": 12.0}]}
    wobble = copy.deepcopy(base)
    wobble["predicted"].update(powerWatts=530.0, outputTokensPerSecond=960.0)
    wobble["alternatives"][0]["gramsPerMillionTokens"] = 12.9
    assert rapply._unchanged(rapply._stable(base), rapply._stable(wobble))
    moved = copy.deepcopy(base)
    moved["predicted"]["outputTokensPerSecond"] = 1200.0  # 17 % more load: worth a write
    assert not rapply._unchanged(rapply._stable(base), rapply._stable(moved))
    rescaled = copy.deepcopy(base)
    rescaled["replicas"] = 3  # exact fields stay exact
    assert not rapply._unchanged(rapply._stable(base), rapply._stable(rescaled))
    other = copy.deepcopy(base)
    other["alternatives"][0]["variant"] = "b"
    assert not rapply._unchanged(rapply._stable(base), rapply._stable(other))


def test_gpu_demand_and_catalog_are_derived_once_per_change_not_per_pass():
    """An idle pass re-derives neither our Deployments' GPU demand nor the parsed catalog; a change
    to either is seen by the next pass."""
    w = World()
    w.run()
    w.settle()
    w.run()
    (dep,) = w.deployments()
    pool = (w.gm()["status"]["region"], w.gm()["status"]["gpuProduct"])
    totals, by_owner = w.rt.demand_totals()
    per_pod = totals[pool] // dep["spec"]["replicas"]
    assert by_owner["gm-uid"] == {pool: totals[pool]}
    assert w.rt.demand_totals()[0] is totals  # unchanged cache: the same derived object
    # Another GreenModel's Deployment appears in the same pool: counted, and not free to us.
    other = copy.deepcopy(dep)
    other["metadata"].update(name="other", uid="other-dep", resourceVersion="7")
    other["metadata"]["ownerReferences"][0]["uid"] = "other-uid"
    other["spec"]["replicas"] = 3
    other.pop("status")  # (a scale-down counts the larger of spec and status replicas until it is done)
    w.rt.deployments.upsert(other)
    totals2, by_owner2 = w.rt.demand_totals()
    assert totals2[pool] == totals[pool] + 3 * per_pod and by_owner2["other-uid"] == {pool: 3 * per_pod}
    other = copy.deepcopy(other)
    other["metadata"]["resourceVersion"] = "8"
    other["spec"]["replicas"] = 1
    w.rt.deployments.upsert(other)
    assert w.rt.demand_totals()[0][pool] == totals[pool] + per_pod
    w.rt.deployments.remove(other)
    assert w.rt.demand_totals()[0] == totals

    catalog, err = robserve.resolve_catalog(w.rt, "default")
    assert err is None and robserve.resolve_catalog(w.rt, "default")[0] is catalog
    body = copy.deepcopy(robserve.packaged_default_catalog())
    body["metadata"].update(uid="cat-uid", resourceVersion="1")
    w.rt.catalogs.upsert(body)
    from_cluster, _ = robserve.resolve_catalog(w.rt, "default")
    assert from_cluster is not catalog and robserve.resolve_catalog(w.rt, "default")[0] is from_cluster
    changed = copy.deepcopy(body)
    changed["metadata"]["resourceVersion"] = "2"
    changed["spec"]["variants"] = changed["spec"]["variants"][:1]
    w.rt.catalogs.upsert(changed)
    assert len(robserve.resolve_catalog(w.rt, "default")[0].spec.variants) == 1


def test_a_status_write_says_which_fields_it_changes():
    old = {"replicas": 1, "conditions": [{"type": "Ready", "status": "False"}, {"type": "SLOMet", "status": "True"}],
           "predicted": {"gramsPerMillionTokens": 10.0}}
    new = {"replicas": 2, "conditions": [{"type": "Ready", "status": "True"}, {"type": "SLOMet", "status": "True"}],
           "predicted": {"gramsPerMillionTokens": 10.5}}  # within PREDICTION_TOLERANCE: not a change
    assert rapply._what_changed(old, new) == "conditions[Ready], replicas"
    assert rapply._what_changed(old, old) == ""
