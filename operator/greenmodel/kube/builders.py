"""Pure builders of the children of a GreenModel: Deployment per placement, Service, PDB.

No I/O here: each function turns typed inputs into the exact object we server-side apply.
The same output is compared against the live object (`kube.diff.is_subset`) so a pass that
finds nothing to change sends nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from greenmodel.api import quantity
from greenmodel.kube import names
from greenmodel.api.state import Placement, ServingSpec, intent_hash

ANNOTATION_PLACEMENT = "greenmodel.dev/placement"


@dataclass(frozen=True)
class OwnerRef:
    """The GreenModel that owns the children (garbage collection deletes them with it)."""

    name: str
    namespace: str
    uid: str
    api_version: str = "greenmodel.dev/v1alpha1"
    kind: str = "GreenModel"

    def as_owner_reference(self) -> dict:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def _placement_annotation(placement: Placement) -> str:
    return json.dumps({"variant": placement.variant, "region": placement.region,
                       "gpuProduct": placement.gpu_product}, sort_keys=True, separators=(",", ":"))


def parse_placement_annotation(annotations: dict | None) -> Placement | None:
    raw = (annotations or {}).get(ANNOTATION_PLACEMENT)
    if not raw:
        return None
    try:
        d = json.loads(raw)
        return Placement(str(d["variant"]), str(d["region"]), str(d["gpuProduct"]))
    except (ValueError, KeyError, TypeError):
        return None


def _metadata(name: str, owner: OwnerRef, labels: dict, annotations: dict | None = None) -> dict:
    meta = {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner.as_owner_reference()],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def restricted_container_security_context() -> dict:
    """Pod Security Standard `restricted`: non-root, no escalation, drop ALL, RuntimeDefault."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security_context() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


MODELS_MOUNT = "/models"
SCRATCH_MOUNT = "/scratch"
PRESTOP_SECONDS = 10  # endpoint removal propagates before the engine is told to stop
DRAIN_MARGIN_SECONDS = 30  # grace beyond preStop + drain: the engine's own shutdown
PROBE_TIMEOUT_SECONDS = 5  # a loaded engine may take seconds to answer /health (never the 1 s default)
SCRAPE_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics"}


def _weights_volume(owner: OwnerRef, serving: ServingSpec) -> dict:
    w = serving.weights
    if w.source == "preloaded":
        return {"name": "models", "persistentVolumeClaim": {"claimName": w.claim_name, "readOnly": True}}
    if w.source == "cache":
        return {"name": "models", "persistentVolumeClaim": {
            "claimName": names.cache_claim_name(owner.name, w.model_id, w.region)}}
    vol: dict = {"name": "models", "emptyDir": {}}
    if w.size_gib:
        vol["emptyDir"]["sizeLimit"] = quantity.from_gib(w.size_gib)
    return vol


def _secret_env(serving: ServingSpec) -> list[dict]:
    return [{"name": n, "valueFrom": {"secretKeyRef": {"name": sec, "key": key, "optional": opt}}}
            for n, sec, key, opt in serving.secret_env]


def _tolerations(serving: ServingSpec) -> list[dict]:
    return json.loads(serving.tolerations_json)


def build_deployment(owner: OwnerRef, placement: Placement, replicas: int, serving: ServingSpec) -> dict:
    """One Deployment per placement: GPU limits, node affinity to region and GPU product, requests, probes,
    writable HOME and caches for a non-root UID, the weights volume, and a drain on every stop."""
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    if serving.gpus_per_replica < 1:
        raise ValueError(f"gpus_per_replica must be >= 1, got {serving.gpus_per_replica}")
    labels = names.child_labels(owner.name, placement)
    selector = names.placement_selector(owner.name, placement)
    requests = {}
    if serving.cpu_request:
        requests["cpu"] = serving.cpu_request
    if serving.memory_request:
        requests["memory"] = serving.memory_request
    if serving.ephemeral_storage_request:
        requests["ephemeral-storage"] = serving.ephemeral_storage_request
    limits = {names.GPU_RESOURCE: str(serving.gpus_per_replica)}
    if serving.memory_request:
        limits["memory"] = serving.memory_request  # a pod that outgrows it is OOM-killed, not its node
    resources: dict = {"limits": limits}
    if requests:
        resources["requests"] = requests
    env = [{"name": k, "value": v} for k, v in serving.env]
    if not any(k == "HF_HOME" for k, _ in serving.env):
        env.append({"name": "HF_HOME", "value": f"{MODELS_MOUNT}/huggingface"})
    if serving.weights.source == "download":
        env += _secret_env(serving)  # the pod downloads; with a cache, the download Job does
    probe_get = {"path": serving.health_path, "port": "http"}
    container = {
        "name": "server",
        "image": serving.image,
        "args": list(serving.args),
        "ports": [{"name": "http", "containerPort": serving.port, "protocol": "TCP"}],
        "env": env,
        "resources": resources,
        "startupProbe": {"httpGet": probe_get, "periodSeconds": 10, "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
                         "failureThreshold": max(1, -(-serving.startup_seconds // 10))},
        "readinessProbe": {"httpGet": probe_get, "periodSeconds": 5, "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": probe_get, "periodSeconds": 10, "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
                          "failureThreshold": 6},
        "securityContext": restricted_container_security_context(),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_MOUNT, **({"readOnly": True}
                                                            if serving.weights.source == "preloaded" else {})},
            {"name": "scratch", "mountPath": SCRATCH_MOUNT},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }
    if serving.command:
        container["command"] = list(serving.command)
    # A stopping pod leaves the Service's endpoints while it sleeps here (kube-proxy and gateways catch up),
    # then SIGTERM: the engine finishes in-flight streams for up to drain_seconds (vLLM --shutdown-timeout).
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{
                    "matchExpressions": [
                        {"key": names.REGION_LABEL, "operator": "In", "values": [placement.region]},
                        {"key": names.GPU_PRODUCT_LABEL, "operator": "In", "values": [placement.gpu_product]},
                    ]
                }]
            }
        }
    }
    shm: dict = {"medium": "Memory"}
    if serving.shm_size_gib:
        shm["sizeLimit"] = quantity.from_gib(serving.shm_size_gib)
    pod_spec: dict = {
        "containers": [container],
        "affinity": affinity,
        "securityContext": restricted_pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": PRESTOP_SECONDS + serving.drain_seconds + DRAIN_MARGIN_SECONDS,
        "tolerations": _tolerations(serving),
        "volumes": [
            _weights_volume(owner, serving),
            {"name": "scratch", "emptyDir": {}},
            {"name": "shm", "emptyDir": shm},
        ],
    }
    if serving.runtime_class_name:
        pod_spec["runtimeClassName"] = serving.runtime_class_name
    if serving.priority_class_name:
        pod_spec["priorityClassName"] = serving.priority_class_name
    if serving.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in serving.image_pull_secrets]
    if serving.pod_spec_overrides_json:
        pod_spec.update(json.loads(serving.pod_spec_overrides_json))  # an allow-list (api.PodSpecOverrides)
    pod_labels = {**dict(serving.pod_labels), **labels}  # ours win: the selectors depend on them
    pod_annotations = {**dict(serving.pod_annotations), **SCRAPE_ANNOTATIONS,
                       "prometheus.io/port": str(serving.port),
                       ANNOTATION_PLACEMENT: _placement_annotation(placement)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(names.deployment_name(owner.name, placement), owner, labels,
                              {ANNOTATION_PLACEMENT: _placement_annotation(placement),
                               names.ANNOTATION_INTENT: intent_hash(placement, replicas, serving)}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": serving.startup_seconds + 120,
            # Surge, never unavailable: a rescale or argument change keeps serving meanwhile.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }


def build_cache_claim(owner: OwnerRef, serving: ServingSpec, storage_class: str | None, access_mode: str) -> dict:
    """The model cache of one model in one region: filled once by the download Job, mounted by every pod."""
    w = serving.weights
    name = names.cache_claim_name(owner.name, w.model_id, w.region)
    spec: dict = {"accessModes": [access_mode],
                  "resources": {"requests": {"storage": quantity.from_gib(w.size_gib)}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    labels = {**names.child_labels(owner.name), names.LABEL_MODEL_CACHE: name}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _metadata(name, owner, labels, {names.ANNOTATION_MODEL_ID: w.model_id,
                                                        names.ANNOTATION_REGION: w.region}),
            "spec": spec}


def build_download_job(owner: OwnerRef, placement: Placement, serving: ServingSpec) -> dict:
    """Fill the cache once (the NIMCache / KubeAI cacheProfile pattern): ``hf download`` of the checkpoint into
    HF_HOME on the cache PVC, in the region it serves from, with the token by secretKeyRef."""
    w = serving.weights
    claim = names.cache_claim_name(owner.name, w.model_id, w.region)
    env = [{"name": "HOME", "value": f"{SCRATCH_MOUNT}/home"},
           {"name": "HF_HOME", "value": f"{MODELS_MOUNT}/huggingface"},
           {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}] + _secret_env(serving)
    container = {
        "name": "download",
        "image": serving.image,
        "command": ["hf", "download", w.model_id],
        "env": env,
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
        "securityContext": restricted_container_security_context(),
        "volumeMounts": [{"name": "models", "mountPath": MODELS_MOUNT},
                         {"name": "scratch", "mountPath": SCRATCH_MOUNT}],
    }
    labels = {**names.child_labels(owner.name), names.LABEL_MODEL_CACHE: claim}
    pod_spec: dict = {
        "restartPolicy": "OnFailure",
        "containers": [container],
        "securityContext": restricted_pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # Where the weights will be read: a zonal volume binds in the region that serves (no GPU asked).
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
            "matchExpressions": [{"key": names.REGION_LABEL, "operator": "In", "values": [placement.region]}]}]}}},
        "tolerations": _tolerations(serving),
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": claim}},
                    {"name": "scratch", "emptyDir": {}}],
    }
    if serving.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in serving.image_pull_secrets]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": _metadata(names.download_job_name(owner.name, w.model_id, w.region), owner, labels,
                                  {names.ANNOTATION_MODEL_ID: w.model_id, names.ANNOTATION_REGION: w.region}),
            "spec": {"backoffLimit": 6,
                     # Not our serving pods' name: the PDB, the Service and the scrape config select those.
                     "template": {"metadata": {"labels": {**labels, names.LABEL_NAME: names.CACHE_APP_NAME}},
                                  "spec": pod_spec}}}


def format_since(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_service(owner: OwnerRef, live_placement: Placement, since: datetime, port: int = 8000) -> dict:
    """The Service selects exactly one placement: the live one. Moving it is the switch."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            names.service_name(owner.name), owner, names.child_labels(owner.name),
            {ANNOTATION_PLACEMENT: _placement_annotation(live_placement),
             names.ANNOTATION_PLACEMENT_SINCE: format_since(since)}),
        "spec": {
            "type": "ClusterIP",
            "selector": names.placement_selector(owner.name, live_placement),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_pdb(owner: OwnerRef) -> dict:
    """At most one serving pod of the GreenModel voluntarily disrupted at a time (any placement)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(names.pdb_name(owner.name), owner, names.child_labels(owner.name)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": names.instance_selector(owner.name)},
        },
    }
