"""Serving pods a real cluster would run, proven on the local control plane (kwok runs no containers, so what
is asserted is what the API server admits and what the operator writes and waits for).

- Every variant x GPU product of the default catalog that the planner can choose renders a pod that the API
  server admits in a namespace that enforces the `restricted` Pod Security Standard.
- With a model cache in the catalog and a token Secret named by the GreenModel: a PVC and a download Job come
  first (the Job gets the token by secretKeyRef), the Deployment only once the Job completed, mounting the
  cache with the hub offline.
- A region switch prepares the target's cache first (the old region keeps serving while it waits), then keeps
  the old placement for the longest request the SLO allows after the Service moved, and never has zero Ready
  pods. The drain is checked against the formula of the issue, worked out here by hand, and observed on the
  API server (the Service's move and the old Deployment's disappearance).
"""

from __future__ import annotations

import copy
import json
import math
import time

import pytest
import yaml

from greenmodel.kube import builders
from greenmodel.kube import client as kc
from greenmodel.kube import names
from greenmodel.testing.serving import choosable_pods, default_catalog_body

from test_reconciler import api, config, operator  # noqa: F401  (fixtures: CRDs + default catalog, `greenmodel run`)
from test_reconciler import children, events, example_greenmodel, gm_apply, gm_get, record, wait_ready
from test_reconciler_support import ReadyPodWatcher, condition, wait_for

pytestmark = pytest.mark.e2e

STORAGE_CLASS = "greenmodel-e2e-cache"  # no provisioner: the test binds each claim to a PV it creates


def test_every_choosable_pod_is_admitted_under_restricted_pod_security(api, cluster, namespace):
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest", "--overwrite")
    pods = choosable_pods()
    assert len(pods) >= 30, [(p.variant, p.gpu_product) for p in pods]  # 16 variants, most on 2-3 GPU products
    for rp in pods:
        variant, gpu, template = rp.variant, rp.gpu_product, rp.deployment["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"probe-{names.short_hash(variant, gpu)}", "labels": template["metadata"]["labels"]},
               "spec": template["spec"]}
        # Pod Security admission enforces on pods (only warns on Deployments): a server-side dry run of the pod
        # itself is what the namespace would admit. The API server also validates every field of the spec.
        res = cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
                              input=json.dumps(pod), check=False)
        assert res.returncode == 0, f"{variant} on {gpu}: {res.stderr}"
        admitted = json.loads(res.stdout)["spec"]
        c = admitted["containers"][0]
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], (variant, gpu)
        env = {e["name"]: e.get("value") for e in c["env"]}
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert env["HOME"].startswith("/scratch/") and "/scratch" in mounts, (variant, gpu)
        assert env["HF_HOME"].startswith("/models/") and "/models" in mounts, (variant, gpu)
    record("restricted_pods_admitted", pods=len(pods))


# ------------------------------------------------------------------------------------------------ the cache
def _cache_catalog(api) -> str:
    cat = copy.deepcopy(default_catalog_body())
    cat["metadata"] = {"name": "e2e-cache"}
    cat["spec"]["modelCache"] = {"storageClassName": STORAGE_CLASS, "accessMode": "ReadWriteOnce"}
    api.apply(kc.MODELCATALOGS, cat, field_manager="e2e-user")
    return "e2e-cache"


def _ensure_storage_class(cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": STORAGE_CLASS},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"}))


def _bind(cluster, namespace: str, claim: dict) -> None:
    """A volume for exactly this claim (what a provisioner would make), so the PV controller binds it."""
    name = f"pv-{names.short_hash(namespace, claim['metadata']['name'])}"
    cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": {"greenmodel.dev/e2e": "true"}},
        "spec": {"capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
                 "accessModes": claim["spec"]["accessModes"], "storageClassName": STORAGE_CLASS,
                 "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": f"/tmp/{name}"},
                 "claimRef": {"namespace": namespace, "name": claim["metadata"]["name"]}}}))


def _caches(api, namespace: str, name: str) -> tuple[list[dict], list[dict]]:
    sel = names.owned_selector_string(name)
    return api.list(kc.PVCS, namespace, label_selector=sel), api.list(kc.JOBS, namespace, label_selector=sel)


def _in_region(objs: list[dict], region: str) -> dict | None:
    return next((o for o in objs if (o["metadata"].get("annotations") or {}).get("greenmodel.dev/region") == region),
                None)


def test_cache_then_serve_and_a_switch_waits_for_the_target_cache_and_drains(api, cluster, operator, namespace):
    _ensure_storage_class(cluster)
    catalog = _cache_catalog(api)
    cluster.kubectl("create", "secret", "generic", "hf-token", "-n", namespace, "--from-literal=HF_TOKEN=hf_e2e")
    op = operator()
    # Short responses so the drain is short enough to watch: the longest request the SLO allows is
    # maxOutputTokens x ITL SLO + TTFT SLO = 150 x 100 ms + 2,000 ms = 17 s.
    spec = {"model": {"family": "general-chat", "catalogName": catalog}, "quality": {"benchmark": "MMLU", "minScore": 60},
            "latency": {"ttftP95Milliseconds": 2000, "interTokenP95Milliseconds": 100},
            "load": {"outputTokensPerSecond": 300}, "placement": {"regions": ["europe-west2"]},
            "hysteresis": {"minImprovementPercent": 10, "minDwellSeconds": 0},
            "serving": {"maxOutputTokens": 150, "huggingFaceTokenSecretName": "hf-token"}}
    drain = math.ceil((150 * 100 + 2000) / 1000)
    gm = example_greenmodel()
    gm["spec"] = spec
    gm_apply(api, namespace, gm)

    # 1) The cache comes first: a PVC (unbound: no volume yet) and its download Job; no Deployment.
    claims, jobs = wait_for(lambda: (lambda c, j: (c, j) if c and j else None)(*_caches(api, namespace, "chat")),
                            30, "cache PVC and download Job", on_fail=op.tail)
    claim, job = claims[0], jobs[0]
    pod_spec = job["spec"]["template"]["spec"]
    token = next(e for e in pod_spec["containers"][0]["env"] if e["name"] == "HF_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN", "optional": False}
    assert pod_spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["storageClassName"] == STORAGE_CLASS
    waiting = wait_for(lambda: (lambda g: g if g and condition(g, "Reconciling") and
                                condition(g, "Reconciling")["reason"] == "WaitingForWeights" else None)(
        gm_get(api, namespace, "chat")), 30, "Reconciling=WaitingForWeights", on_fail=op.tail)
    assert condition(waiting, "Ready")["status"] == "False"
    time.sleep(3)
    assert not children(api, namespace, "chat")["deployments"], "a Deployment before its weights"

    # 2) The volume appears: the Job runs (kwok completes it), then the Deployment mounts the cache, hub offline.
    _bind(cluster, namespace, claim)
    st = wait_ready(api, namespace, "chat", op=op, timeout=90)["status"]
    assert st["region"] == "europe-west2"
    dep = children(api, namespace, "chat")["deployments"][0]
    pod = dep["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if v["name"] == "models")
    assert vol["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN" not in env  # the Job downloaded; the server only reads
    assert any(e["reason"] == "DownloadingWeights" for e in events(api, namespace, "chat"))
    # The grace period covers the preStop (10 s), the drain and 30 s for the engine's shutdown.
    assert pod["terminationGracePeriodSeconds"] == 10 + drain + 30
    args = pod["containers"][0]["args"]
    assert args[args.index("--shutdown-timeout") + 1] == str(drain)

    # 3) Move it: only europe-west3 is allowed now. Its cache is prepared first; London keeps serving.
    watcher = ReadyPodWatcher(lambda: children(api, namespace, "chat")["pods"])
    watcher.start()
    t_move = time.monotonic()
    gm["spec"] = dict(spec, placement={"regions": ["europe-west3"]})
    gm_apply(api, namespace, gm)
    target = wait_for(lambda: _in_region(_caches(api, namespace, "chat")[0], "europe-west3"), 30,
                      "the target region's cache PVC", on_fail=op.tail)
    wait_for(lambda: (lambda g: condition(g, "Reconciling")["reason"] == "WaitingForWeights")(
        gm_get(api, namespace, "chat")), 30, "switch waits for weights", on_fail=op.tail)
    time.sleep(3)
    deps = children(api, namespace, "chat")["deployments"]
    assert [d["metadata"]["labels"][names.LABEL_REGION] for d in deps] == ["europe-west2"], "target before weights"
    _bind(cluster, namespace, target)
    wait_for(lambda: (lambda s: s if s and (s[0]["metadata"].get("annotations") or {}).get(builders.ANNOTATION_PLACEMENT, "")
                      .find("europe-west3") >= 0 else None)(children(api, namespace, "chat")["services"]),
             120, "the Service moved to europe-west3", on_fail=op.tail)
    moved = time.monotonic()
    # The old placement stays, out of the Service, for the drain (+ the operator's 5 s for endpoints).
    gone = wait_for(lambda: time.monotonic() if [d["metadata"]["labels"][names.LABEL_REGION]
                                                 for d in children(api, namespace, "chat")["deployments"]]
                    == ["europe-west3"] else None, 120, "the old placement deleted", interval=0.2, on_fail=op.tail)
    watcher.stop()
    held = gone - moved
    assert held >= drain, f"old placement deleted {held:.1f} s after the Service moved, drain is {drain} s"
    assert min(n for _, n in watcher.samples) >= 1, "zero Ready pods during the switch"
    # The unused cache goes once the switch is over.
    wait_for(lambda: _in_region(_caches(api, namespace, "chat")[0], "europe-west2") is None, 60,
             "London's cache deleted", on_fail=op.tail)
    record("cache_switch", switch_seconds=round(moved - t_move, 1), old_held_seconds=round(held, 1), drain=drain,
           min_ready=min(n for _, n in watcher.samples), samples=len(watcher.samples))
