"""The reconciler end to end: `greenmodel run` (a subprocess, as a user starts it) against the
local control plane with its simulated GPU fleet. What is asserted is what a user sees: the
GreenModel's status and Events, children, and pods on nodes of the right region.

Timings (apply -> Deployment created, apply -> Ready) are printed and appended to
$GREENMODEL_E2E_RESULTS (default /tmp/greenmodel-e2e-results.jsonl).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from greenmodel.kube import client as kc
from greenmodel.kube import names
from greenmodel.kube.client import KubeClient

from test_reconciler_support import REPO, OperatorProcess, ReadyPodWatcher, condition, wait_for, write_config

pytestmark = pytest.mark.e2e
INTERVAL = 3.0  # timer interval of the operator under test (seconds)
RESULTS = Path(os.environ.get("GREENMODEL_E2E_RESULTS", "/tmp/greenmodel-e2e-results.jsonl"))

FALLBACK_EXAMPLE = {
    "apiVersion": "greenmodel.dev/v1alpha1", "kind": "GreenModel", "metadata": {"name": "chat"},
    "spec": {"model": {"family": "general-chat"}, "quality": {"benchmark": "MMLU", "minScore": 60},
             "latency": {"ttftP95Milliseconds": 2000, "interTokenP95Milliseconds": 100},
             "load": {"outputTokensPerSecond": 500}},
}


def record(name: str, **values) -> None:
    line = {"test": name, "at": datetime.now(timezone.utc).isoformat(), **values}
    print(f"\nRESULT {json.dumps(line)}")
    with RESULTS.open("a") as f:
        f.write(json.dumps(line) + "\n")


def example_greenmodel(name: str = "chat", **spec_overrides) -> dict:
    path = REPO / "examples" / "greenmodel.yaml"
    if path.exists():
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and d.get("kind") == "GreenModel"]
        gm = copy.deepcopy(docs[0])
    else:
        gm = copy.deepcopy(FALLBACK_EXAMPLE)
    gm["metadata"] = {"name": name}
    for k, v in spec_overrides.items():
        gm["spec"][k] = v
    return gm


@pytest.fixture(scope="module")
def api(cluster) -> KubeClient:
    client = KubeClient.from_environment(cluster.kubeconfig)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/greenmodels.greenmodel.dev", "crd/modelcatalogs.greenmodel.dev")
    catalog = REPO / "examples" / "catalog.yaml"
    if not catalog.exists():
        catalog = REPO / "operator" / "greenmodel" / "data" / "default-catalog.yaml"
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(catalog))
    return client


@pytest.fixture
def config(tmp_path) -> Path:
    return write_config(tmp_path / "operator-config.yaml", interval=INTERVAL)


@pytest.fixture
def operator(cluster, api, namespace, config, tmp_path):
    procs: list[OperatorProcess] = []

    def start() -> OperatorProcess:
        op = OperatorProcess(cluster.kubeconfig, config, [namespace], tmp_path / "operator.log").start()
        procs.append(op)
        return op

    start.procs = procs  # type: ignore[attr-defined]
    yield start
    for op in procs:
        rc = op.stop()
        assert rc in (0, -signal.SIGKILL, None), f"operator exited {rc}:\n{op.tail()}"


def gm_get(api: KubeClient, ns: str, name: str) -> dict | None:
    return api.get(kc.GREENMODELS, name, ns)


def gm_apply(api: KubeClient, ns: str, gm: dict) -> dict:
    gm = copy.deepcopy(gm)
    gm["metadata"]["namespace"] = ns
    return api.apply(kc.GREENMODELS, gm, field_manager="e2e-user")


def children(api: KubeClient, ns: str, name: str) -> dict[str, list[dict]]:
    sel = names.owned_selector_string(name)
    return {"deployments": api.list(kc.DEPLOYMENTS, ns, label_selector=sel),
            "services": api.list(kc.SERVICES, ns, label_selector=sel),
            "pdbs": api.list(kc.PDBS, ns, label_selector=sel),
            "pods": api.list(kc.PODS, ns, label_selector=sel)}


def is_ready(gm: dict | None) -> bool:
    if not gm:
        return False
    c = condition(gm, "Ready")
    return bool(c and c["status"] == "True"
                and (gm.get("status") or {}).get("observedGeneration") == gm["metadata"]["generation"])


def wait_ready(api, ns, name, timeout=90, op: OperatorProcess | None = None, pred=None) -> dict:
    def check():
        gm = gm_get(api, ns, name)
        return gm if is_ready(gm) and (pred is None or pred(gm)) else None

    return wait_for(check, timeout, f"GreenModel {ns}/{name} Ready",
                    on_fail=lambda: json.dumps((gm_get(api, ns, name) or {}).get("status"), indent=1)[:4000]
                    + ("\n" + op.tail() if op else ""))


def node_regions(api: KubeClient) -> dict[str, str]:
    return {n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get(names.REGION_LABEL, "")
            for n in api.list(kc.NODES)}


def events(api: KubeClient, ns: str, name: str) -> list[dict]:
    return [e for e in api.list(kc.EVENTS, ns, field_selector=f"involvedObject.name={name}")
            if (e.get("involvedObject") or {}).get("kind") == "GreenModel"]


def rvs(api, ns, name) -> dict[str, str]:
    out = {"greenmodel": gm_get(api, ns, name)["metadata"]["resourceVersion"]}
    for kind, objs in children(api, ns, name).items():
        if kind == "pods":
            continue
        for o in objs:
            out[f"{kind}/{o['metadata']['name']}"] = o["metadata"]["resourceVersion"]
    return out


# ---------------------------------------------------------------------------------------------
def test_example_runs_only_in_the_greenest_region_with_free_gpus(api, operator, namespace):
    op = operator()
    gm = example_greenmodel()
    t0 = time.monotonic()
    gm_apply(api, namespace, gm)
    wait_for(lambda: children(api, namespace, "chat")["deployments"], 30, "Deployment created", interval=0.05,
             on_fail=op.tail)
    t_dep = time.monotonic() - t0
    ready = wait_ready(api, namespace, "chat", op=op)
    t_ready = time.monotonic() - t0
    st = ready["status"]
    # examples/operator-config.yaml: FR 89 < GB 234 < DE 474 < PL 819 g/kWh; FR has free L4 and A100.
    assert st["region"] == "europe-west9", st
    assert st["observedGeneration"] == ready["metadata"]["generation"]
    kids = children(api, namespace, "chat")
    assert len(kids["deployments"]) == 1 and len(kids["services"]) == 1 and len(kids["pdbs"]) == 1
    regions = node_regions(api)
    pods = kids["pods"]
    assert len(pods) == st["replicas"] >= 1
    for p in pods:
        assert p["status"]["phase"] == "Running"
        assert regions[p["spec"]["nodeName"]] == "europe-west9", p["spec"]["nodeName"]
    dep = kids["deployments"][0]
    assert dep["metadata"]["ownerReferences"][0]["uid"] == ready["metadata"]["uid"]
    assert any(m.get("manager") == "greenmodel-operator" for m in dep["metadata"]["managedFields"])
    evs = events(api, namespace, "chat")
    assert any(e["reason"] == "VariantSelected" and "gCO2e/Mtok" in e["message"] for e in evs), evs
    for c in ("Ready", "Reconciling", "Stalled", "CarbonDataAvailable", "CapacityAvailable", "SLOMet",
              "MetricsAvailable"):
        assert condition(ready, c) is not None, c
    assert condition(ready, "Stalled")["status"] == "False" and condition(ready, "Reconciling")["status"] == "False"
    record("apply_to_ready", apply_to_deployment_seconds=round(t_dep, 3), apply_to_ready_seconds=round(t_ready, 3),
           region=st["region"], variant=st["variant"], replicas=st["replicas"])


def test_idle_greenmodel_writes_nothing_over_several_ticks(api, operator, namespace):
    op = operator()
    gm_apply(api, namespace, example_greenmodel())
    wait_ready(api, namespace, "chat", op=op)
    time.sleep(2 * INTERVAL)  # let the last in-flight pass settle
    before = rvs(api, namespace, "chat")
    writes_before = op.metric_sum("greenmodel_child_writes_total") + op.metric_sum("greenmodel_status_writes_total")
    passes_before = op.metric_sum("greenmodel_reconcile_total")
    time.sleep(5 * INTERVAL)
    after = rvs(api, namespace, "chat")
    passes = op.metric_sum("greenmodel_reconcile_total") - passes_before
    writes = op.metric_sum("greenmodel_child_writes_total") + op.metric_sum("greenmodel_status_writes_total") \
        - writes_before
    assert passes >= 4, f"expected a pass per timer tick, saw {passes}"
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}
    assert writes == 0
    record("idle_writes", ticks=5, passes=passes, resource_version_changes=0, writes=writes)


def test_greener_region_moves_the_workload_with_no_zero_ready_moment(api, operator, namespace, config):
    op = operator()
    # Responses of at most 100 tokens: the old region drains for 100 x 50 ms + 1.5 s = 6.5 -> 7 s (+ 5 s for
    # endpoints) after the Service moved (the example's default 2,048 would hold it 109 s; test_serving.py
    # checks the drain itself).
    gm = example_greenmodel(hysteresis={"minImprovementPercent": 10, "minDwellSeconds": 0},
                            serving={"maxOutputTokens": 100})
    gm_apply(api, namespace, gm)
    first = wait_ready(api, namespace, "chat", op=op)["status"]
    assert first["region"] == "europe-west9"
    sel = names.owned_selector_string("chat")
    watcher = ReadyPodWatcher(lambda: api.list(kc.PODS, namespace, label_selector=sel), period=0.2)
    watcher.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    # The grid changes: FR becomes the dirtiest zone, GB far the cleanest (beyond hysteresis).
    write_config(config, intensities={"FR": 900.0, "GB": 20.0}, interval=INTERVAL)

    def moved():
        g = gm_get(api, namespace, "chat")
        deps = children(api, namespace, "chat")["deployments"]
        return is_ready(g) and g["status"]["region"] == "europe-west2" and len(deps) == 1 and \
            deps[0]["metadata"]["labels"][names.LABEL_REGION] == "europe-west2"

    wait_for(moved, 120, "move to europe-west2 completed", on_fail=op.tail)
    switch_seconds = time.monotonic() - t0
    time.sleep(1.0)
    watcher.stop()
    counts = [n for _, n in watcher.samples]
    assert len(counts) >= 20, f"too few samples: {len(counts)}"
    assert min(counts) > 0, f"zero Ready pods sampled during the switch: {counts}"
    regions = node_regions(api)
    pods = children(api, namespace, "chat")["pods"]
    assert pods and all(regions[p["spec"]["nodeName"]] == "europe-west2" for p in pods if p["spec"].get("nodeName"))
    evs = events(api, namespace, "chat")
    switched = [e for e in evs if e["reason"] == "RegionSwitched"]
    assert switched and "europe-west9 -> europe-west2" in switched[0]["message"] and "gCO2e/Mtok" in switched[0][
        "message"], evs
    record("region_switch", seconds=round(switch_seconds, 2), samples=len(counts), min_ready_pods=min(counts))


# A catalog made for this test so that every answer is obvious by hand (the test never asks the planner):
# two variants of one family on the L4, identical speed, "lo" draws less power (MMLU 60), "hi" more (MMLU 75).
# Each replica has two operating points: 2 concurrent streams at 150 output tok/s with p95 ITL 15 ms, or 8 at
# 400 tok/s with p95 ITL 40 ms. The planner keeps utilisation <= 0.85 at the largest batch within the ITL SLO.
OBVIOUS_CATALOG = {
    "apiVersion": "greenmodel.dev/v1alpha1", "kind": "ModelCatalog", "metadata": {"name": "e2e-obvious"},
    "spec": {
        "gpus": [{"product": "NVIDIA-L4", "memoryGiB": 24, "idleWatts": 16, "maxWatts": 72}],
        "variants": [
            {"name": f"obvious-{v}", "family": "obvious", "modelId": f"e2e/obvious-{v}", "parametersBillions": 8,
             "weightMemoryGiB": 10, "quality": {"MMLU": mmlu},
             "profiles": [{"gpuProduct": "NVIDIA-L4", "prefillTokensPerSecond": 4000,
                           "batch": [{"maxBatchSize": 2, "outputTokensPerSecond": 150,
                                      "interTokenP95Milliseconds": 15, "powerWatts": w2},
                                     {"maxBatchSize": 8, "outputTokensPerSecond": 400,
                                      "interTokenP95Milliseconds": 40, "powerWatts": w8}]}]}
            for v, mmlu, w2, w8 in (("lo", 60, 40, 55), ("hi", 75, 50, 65))],
    },
}


def test_quality_floor_switches_variant_and_tighter_latency_raises_replicas(api, operator, namespace):
    """Answers known by hand from OBVIOUS_CATALOG, at 600 output tok/s:
    - floor 55, ITL SLO 50 ms: obvious-lo (same capacity, less power), 2 replicas (600 / 800 = 0.75 <= 0.85;
      1 replica would be 1.5);
    - floor 70: obvious-hi, the only variant that meets it, still 2 replicas;
    - ITL SLO 20 ms: only the 2-stream point (15 ms) qualifies, 150 tok/s a replica: 5 replicas
      (600 / 750 = 0.8; 4 would be 1.0)."""
    api.apply(kc.MODELCATALOGS, OBVIOUS_CATALOG, field_manager="e2e-user")
    op = operator()
    base = example_greenmodel(hysteresis={"minImprovementPercent": 10, "minDwellSeconds": 0})
    spec = {"model": {"family": "obvious", "catalogName": "e2e-obvious"},
            "quality": {"benchmark": "MMLU", "minScore": 55},
            "latency": {"ttftP95Milliseconds": 5000, "interTokenP95Milliseconds": 50},
            "load": {"outputTokensPerSecond": 600}, "maxReplicas": 8,
            "hysteresis": {"minImprovementPercent": 10, "minDwellSeconds": 0},
            # Short responses: a replaced placement drains for 64 x 50 ms + 5 s = 8.2 -> 9 s (+ 5 s for endpoints).
            "serving": {"maxOutputTokens": 64}}
    try:
        gm_apply(api, namespace, dict(base, spec=spec))
        st = wait_ready(api, namespace, "chat", op=op)["status"]
        assert (st["variant"], st["gpuProduct"], st["replicas"]) == ("obvious-lo", "NVIDIA-L4", 2), st
        # 1) Raise the quality floor above obvious-lo's 60: only obvious-hi meets it.
        higher = dict(spec, quality={"benchmark": "MMLU", "minScore": 70})
        gm_apply(api, namespace, dict(base, spec=higher))
        st2 = wait_ready(api, namespace, "chat", op=op, pred=lambda g: g["status"]["variant"] != "obvious-lo",
                         timeout=120)["status"]
        assert (st2["variant"], st2["replicas"]) == ("obvious-hi", 2), st2
        assert any(e["reason"] == "VariantSelected" and "obvious-lo -> obvious-hi" in e["message"]
                   for e in events(api, namespace, "chat"))
        # 2) Tighten the inter-token SLO: only more replicas at the smaller batch can answer.
        tight = dict(higher, latency={"ttftP95Milliseconds": 5000, "interTokenP95Milliseconds": 20})
        gm_apply(api, namespace, dict(base, spec=tight))
        st3 = wait_ready(api, namespace, "chat", op=op, timeout=120, pred=lambda g: g["status"]["replicas"] != 2)["status"]
        assert (st3["variant"], st3["replicas"]) == ("obvious-hi", 5), st3
        dep = wait_for(lambda: (lambda d: d if len(d) == 1 else None)(children(api, namespace, "chat")["deployments"]),
                       30, "old placement drained")
        assert dep[0]["spec"]["replicas"] == 5
        assert "--max-num-seqs" in dep[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        args = dep[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--max-num-seqs") + 1] == "2"  # the 2-stream operating point
        assert any(e["reason"] == "Rescaled" and "replicas 2 -> 5" in e["message"] for e in events(api, namespace, "chat"))
        record("variant_and_replicas", variant_before=st["variant"], variant_after=st2["variant"],
               replicas_before=st2["replicas"], replicas_after=st3["replicas"], itl_slo_ms=20)
    finally:
        api.delete(kc.MODELCATALOGS, "e2e-obvious")


def _fill_region(api: KubeClient, ns: str, region: str) -> list[str]:
    """Run pods that take every GPU of every node in ``region`` (not ours: plain pods)."""
    created = []
    for n in api.list(kc.NODES, label_selector=f"{names.REGION_LABEL}={region}"):
        gpus = n["status"]["allocatable"].get(names.GPU_RESOURCE, "0")
        name = f"filler-{n['metadata']['name']}"
        api.create(kc.PODS, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "gpu-filler"}},
            "spec": {"nodeName": n["metadata"]["name"], "containers": [{
                "name": "c", "image": "busybox", "resources": {"limits": {names.GPU_RESOURCE: gpus}}}],
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000}},
        }, ns)
        created.append(name)
    return created


def test_full_region_places_elsewhere_and_says_why(api, operator, namespace):
    fillers = _fill_region(api, namespace, "europe-west9")
    wait_for(lambda: all(p["status"].get("phase") == "Running"
                         for p in api.list(kc.PODS, namespace, label_selector="app=gpu-filler")), 60, "fillers Running")
    op = operator()
    gm_apply(api, namespace, example_greenmodel())
    g = wait_ready(api, namespace, "chat", op=op)
    st = g["status"]
    assert st["region"] != "europe-west9"
    assert st["region"] == "europe-west2"  # next greenest (GB 234 g/kWh) with free GPUs
    cap = condition(g, "CapacityAvailable")
    assert cap["status"] == "False" and "europe-west9" in cap["message"], cap
    assert any(a.get("reason") == "InsufficientGPUs" and a.get("region") == "europe-west9"
               for a in st.get("alternatives") or []), st.get("alternatives")
    record("capacity", fillers=len(fillers), placed=st["region"], message=cap["message"][:200])


def test_drift_is_restored_and_suspend_stops_changes_and_delete_cascades(api, operator, namespace):
    op = operator()
    gm_apply(api, namespace, example_greenmodel())
    wait_ready(api, namespace, "chat", op=op)
    kids = children(api, namespace, "chat")
    dep = kids["deployments"][0]
    want_replicas = dep["spec"]["replicas"]
    # hand edits: scale the Deployment, change the Service selector, delete the PDB
    api._request("PATCH", kc.DEPLOYMENTS.path(namespace, dep["metadata"]["name"]),
                 body={"spec": {"replicas": want_replicas + 3}}, content_type=kc.MERGE_CONTENT_TYPE)
    svc = kids["services"][0]
    api._request("PATCH", kc.SERVICES.path(namespace, svc["metadata"]["name"]),
                 body={"spec": {"selector": {names.LABEL_COMPONENT: "hijacked"}}}, content_type=kc.MERGE_CONTENT_TYPE)
    api.delete(kc.PDBS, kids["pdbs"][0]["metadata"]["name"], namespace)

    def restored():
        k = children(api, namespace, "chat")
        return (len(k["deployments"]) == 1 and k["deployments"][0]["spec"]["replicas"] == want_replicas
                and k["services"][0]["spec"]["selector"].get(names.LABEL_COMPONENT) == dep["spec"]["selector"][
                    "matchLabels"][names.LABEL_COMPONENT] and len(k["pdbs"]) == 1)

    wait_for(restored, 3 * INTERVAL + 10, "drift restored", on_fail=op.tail)
    # deleting the Deployment by hand: recreated under the same name
    api.delete(kc.DEPLOYMENTS, dep["metadata"]["name"], namespace)
    wait_for(lambda: [d for d in children(api, namespace, "chat")["deployments"]
                      if d["metadata"]["uid"] != dep["metadata"]["uid"]
                      and d["metadata"]["name"] == dep["metadata"]["name"]], 3 * INTERVAL + 10, "Deployment recreated")
    wait_ready(api, namespace, "chat", op=op)
    # suspend: a spec change that would rescale changes nothing
    gm = example_greenmodel(suspend=True)
    gm["spec"]["load"] = {"outputTokensPerSecond": 5000}
    gm_apply(api, namespace, gm)
    wait_for(lambda: (condition(gm_get(api, namespace, "chat"), "Reconciling") or {}).get("reason") == "Suspended",
             30, "Suspended condition")
    before = {d["metadata"]["name"]: d["spec"]["replicas"] for d in children(api, namespace, "chat")["deployments"]}
    time.sleep(3 * INTERVAL)
    after = {d["metadata"]["name"]: d["spec"]["replicas"] for d in children(api, namespace, "chat")["deployments"]}
    assert after == before
    # delete: children go with it (owner references; the GreenModel has no finalizer)
    g = gm_get(api, namespace, "chat")
    assert not g["metadata"].get("finalizers")
    api.delete(kc.GREENMODELS, "chat", namespace)
    wait_for(lambda: not any(children(api, namespace, "chat")[k] for k in ("deployments", "services", "pdbs")),
             60, "children garbage-collected")
