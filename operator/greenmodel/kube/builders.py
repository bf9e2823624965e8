"""Pure builders of the children of a GreenModel: Deployment per placement, Service, PDB.

No I/O here: each function turns typed inputs into the exact object we server-side apply.
The same output is compared against the live object (`kube.diff.is_subset`) so a pass that
finds nothing to change sends nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

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


def build_deployment(owner: OwnerRef, placement: Placement, replicas: int, serving: ServingSpec) -> dict:
    """One Deployment per placement: GPU limits, node affinity to region and GPU product, probes."""
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    if serving.gpus_per_replica < 1:
        raise ValueError(f"gpus_per_replica must be >= 1, got {serving.gpus_per_replica}")
    labels = names.child_labels(owner.name, placement)
    selector = names.placement_selector(owner.name, placement)
    resources: dict = {"limits": {names.GPU_RESOURCE: str(serving.gpus_per_replica)}}
    requests = {}
    if serving.cpu_request:
        requests["cpu"] = serving.cpu_request
    if serving.memory_request:
        requests["memory"] = serving.memory_request
    if requests:
        resources["requests"] = requests
    env = [{"name": k, "value": v} for k, v in serving.env]
    env.append({"name": "HF_HOME", "value": "/cache/huggingface"})
    probe_get = {"path": serving.health_path, "port": "http"}
    container = {
        "name": "server",
        "image": serving.image,
        "args": list(serving.args),
        "ports": [{"name": "http", "containerPort": serving.port, "protocol": "TCP"}],
        "env": env,
        "resources": resources,
        "startupProbe": {"httpGet": probe_get, "periodSeconds": 10,
                         "failureThreshold": max(1, serving.startup_seconds // 10)},
        "readinessProbe": {"httpGet": probe_get, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": probe_get, "periodSeconds": 10, "failureThreshold": 6},
        "securityContext": restricted_container_security_context(),
        "volumeMounts": [
            {"name": "cache", "mountPath": "/cache"},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }
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
    pod_spec = {
        "containers": [container],
        "affinity": affinity,
        "securityContext": restricted_pod_security_context(),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "tolerations": [{"key": k, "operator": op, "effect": eff} for k, op, eff in serving.tolerations],
        "volumes": [
            {"name": "cache", "emptyDir": {}},
            {"name": "shm", "emptyDir": {"medium": "Memory"}},
        ],
    }
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
                "metadata": {"labels": labels,
                             "annotations": {ANNOTATION_PLACEMENT: _placement_annotation(placement)}},
                "spec": pod_spec,
            },
        },
    }


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
