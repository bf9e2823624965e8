"""Deterministic names and labels of the children of a GreenModel.

kopf is at-least-once: a crash may repeat a pass, so every child name is a pure function of
(GreenModel name, placement). A repeated pass applies to the same names and creates no duplicates.
"""

from __future__ import annotations

import hashlib
import re

from greenmodel.api.state import Placement

# Our fixed label set (docs/design.md, CONVENTIONS.md §9): never copied from the parent.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
APP_NAME = "greenmodel-serving"
CACHE_APP_NAME = "greenmodel-model-cache"  # the download Jobs' pods (never selected as serving pods)
MANAGED_BY = "greenmodel-operator"

# Readable copies of the placement, for `kubectl get -L` and for observing children.
LABEL_VARIANT = "greenmodel.dev/variant"
LABEL_REGION = "greenmodel.dev/region"
LABEL_GPU_PRODUCT = "greenmodel.dev/gpu-product"

# Annotations on the Service: which placement it serves since when (hysteresis dwell input).
ANNOTATION_PLACEMENT_SINCE = "greenmodel.dev/placement-since"
# On each Deployment: the fingerprint of what we asked it to be (api.state.intent_hash).
ANNOTATION_INTENT = "greenmodel.dev/intent"

REGION_LABEL = "topology.kubernetes.io/region"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"

_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def short_hash(*parts: str, length: int = 10) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return digest[:length]


def component(placement: Placement) -> str:
    """The `app.kubernetes.io/component` value of a placement: stable, short, label-safe."""
    return "p-" + short_hash(placement.variant, placement.region, placement.gpu_product)


def _dns_label(name: str, limit: int, salt: str) -> str:
    """Fit ``name`` into an RFC 1035 label of at most ``limit`` characters, stably."""
    name = name.lower()
    if not name[:1].isalpha():
        name = "gm-" + name
    if len(name) <= limit:
        return name
    return name[: limit - 11].rstrip("-.") + "-" + short_hash(salt)


def deployment_name(gm_name: str, placement: Placement) -> str:
    """``<greenmodel>-<placement hash>``; at most 63 characters (it prefixes pod and ReplicaSet names)."""
    suffix = short_hash(gm_name, placement.variant, placement.region, placement.gpu_product)
    base = gm_name.lower()
    # ReplicaSet adds "-<10 chars>" and pods "-<5 chars>"; keep the Deployment name <= 47.
    room = 47 - len(suffix) - 1
    if len(base) > room:
        base = base[:room].rstrip("-.")
    return f"{base}-{suffix}"


def cache_claim_name(gm_name: str, model_id: str, region: str) -> str:
    """The model-cache PVC of one GreenModel, model and region: ``<greenmodel>-weights-<hash>`` (<= 63)."""
    suffix = short_hash(gm_name, model_id, region)
    base = gm_name.lower()
    room = 63 - len(suffix) - len("-weights-")
    if len(base) > room:
        base = base[:room].rstrip("-.")
    return f"{base}-weights-{suffix}"


def download_job_name(gm_name: str, model_id: str, region: str) -> str:
    """The Job that fills that cache (<= 63: the Job controller labels its pods with it)."""
    return cache_claim_name(gm_name, model_id, region).replace("-weights-", "-fetch-", 1)


def service_name(gm_name: str) -> str:
    """Service names are RFC 1035 labels (<= 63, start with a letter)."""
    return _dns_label(gm_name, 63, gm_name)


def pdb_name(gm_name: str) -> str:
    return _dns_label(gm_name, 253, gm_name)


def label_value(value: str) -> str:
    """A label-safe rendering of a free-form value (<= 63 chars, alphanumeric ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value).strip("-_.")
    if len(cleaned) > 63:
        cleaned = cleaned[:52].rstrip("-_.") + "-" + short_hash(value)
    assert _LABEL_VALUE_RE.match(cleaned), cleaned
    return cleaned


def instance_selector(gm_name: str) -> dict[str, str]:
    """Selects every serving pod of a GreenModel, whatever its placement."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: label_value(gm_name)}


def placement_selector(gm_name: str, placement: Placement) -> dict[str, str]:
    return {**instance_selector(gm_name), LABEL_COMPONENT: component(placement)}


LABEL_MODEL_CACHE = "greenmodel.dev/model-cache"  # on a cache PVC and its Job: the claim name
ANNOTATION_MODEL_ID = "greenmodel.dev/model-id"  # on a cache PVC and its Job: what it holds, and where
ANNOTATION_REGION = "greenmodel.dev/region"


def child_labels(gm_name: str, placement: Placement | None = None) -> dict[str, str]:
    labels = {**instance_selector(gm_name), LABEL_MANAGED_BY: MANAGED_BY}
    if placement is not None:
        labels[LABEL_COMPONENT] = component(placement)
        labels[LABEL_VARIANT] = label_value(placement.variant)
        labels[LABEL_REGION] = label_value(placement.region)
        labels[LABEL_GPU_PRODUCT] = label_value(placement.gpu_product)
    return labels


def owned_selector_string(gm_name: str) -> str:
    """Label selector (string form) for listing the children of one GreenModel."""
    sel = {**instance_selector(gm_name), LABEL_MANAGED_BY: MANAGED_BY}
    return ",".join(f"{k}={v}" for k, v in sel.items())


ALL_OWNED_SELECTOR = f"{LABEL_NAME}={APP_NAME},{LABEL_MANAGED_BY}={MANAGED_BY}"
