"""Writes ../values.schema.json: the chart's own keys (written here by hand) plus `config`, generated from
the operator's settings model (greenmodel.settings.Settings), so the chart accepts exactly what the
operator loads. Every object has additionalProperties: false, so a typo fails `helm install/upgrade`.

    python charts/greenmodel-operator/hack/gen_schema.py          # write
    python charts/greenmodel-operator/hack/gen_schema.py --check  # exit 1 if the file is out of date
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "values.schema.json"
DEF_PREFIX = "settings."


def _obj(properties: dict, required: list[str] | None = None, description: str | None = None) -> dict:
    out: dict = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = required
    if description:
        out["description"] = description
    return out


def _str(description: str | None = None, **kw) -> dict:
    return {"type": "string", **({"description": description} if description else {}), **kw}


def _map_of_str(description: str) -> dict:
    return {"type": "object", "additionalProperties": {"type": "string"}, "description": description}


K8S_OBJECT = {"type": "object", "description": "A Kubernetes object fragment, passed through as is."}
K8S_LIST = {"type": "array", "items": {"type": "object"}, "description": "A list of Kubernetes objects, passed through."}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
ID = {"type": "integer", "minimum": 1, "description": "A numeric, non-root ID (restricted Pod Security Standard)."}
SECCOMP = _obj({"type": {"enum": ["RuntimeDefault", "Localhost"]}, "localhostProfile": _str()}, ["type"])


def _settings_schema() -> tuple[dict, dict]:
    """(schema of `config`, definitions) from the pydantic model, with titles and discriminators dropped."""
    from greenmodel.settings import Settings

    raw = Settings.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})

    def clean(node):
        if isinstance(node, dict):
            node = {k: clean(v) for k, v in node.items() if k not in ("title", "discriminator")}
            if "$ref" in node:
                node["$ref"] = node["$ref"].replace("#/$defs/", f"#/definitions/{DEF_PREFIX}")
            # Field(default_factory=...) gives no default; pydantic defaults are informative only.
            return node
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    config = clean(raw)
    config["description"] = (
        "Operator configuration (greenmodel.settings.Settings), rendered into the ConfigMap as YAML. "
        "Credentials are references (env, file or secretKeyRef), never values."
    )
    return config, {DEF_PREFIX + name: clean(d) for name, d in sorted(defs.items())}


def build() -> dict:
    config, definitions = _settings_schema()
    credential = _obj(
        {
            "secretName": _str("Name of an existing Secret in the release namespace.", minLength=1),
            "key": _str("Key in that Secret.", minLength=1),
            "optional": {"type": "boolean", "default": False},
        },
        ["secretName", "key"],
    )
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "greenmodel-operator chart values",
        **_obj(
            {
                "image": _obj(
                    {
                        "repository": _str(minLength=1),
                        "tag": _str("Defaults to the chart appVersion."),
                        "digest": _str("sha256 digest; wins over tag.", pattern="^(sha256:[a-f0-9]{64})?$"),
                        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                    },
                    ["repository"],
                ),
                "imagePullSecrets": K8S_LIST,
                "nameOverride": _str(maxLength=63),
                "fullnameOverride": _str(maxLength=63),
                "commonLabels": _map_of_str("Extra labels on every object."),
                "serviceAccount": _obj(
                    {
                        "create": {"type": "boolean"},
                        "name": _str(),
                        "annotations": _map_of_str("ServiceAccount annotations."),
                        "automountServiceAccountToken": {"type": "boolean"},
                    }
                ),
                "rbac": _obj(
                    {
                        "create": {"type": "boolean"},
                        "scope": {"enum": ["cluster", "namespace"]},
                        "aggregateToTenantRoles": {"type": "boolean"},
                    }
                ),
                "watchNamespaces": {
                    "type": "array",
                    "items": _str(pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength=63),
                    "uniqueItems": True,
                },
                "operator": _obj(
                    {
                        "logLevel": {"enum": ["debug", "info", "warning", "error"]},
                        "logFormat": {"enum": ["json", "text"]},
                        "metricsPort": PORT,
                        "healthPort": PORT,
                        "extraArgs": {"type": "array", "items": {"type": "string"}},
                        "extraEnv": K8S_LIST,
                    }
                ),
                "config": config,
                "credentials": {
                    "type": "object",
                    "description": "Environment variable name -> Secret key it is read from.",
                    "propertyNames": {"pattern": "^[A-Z_][A-Z0-9_]*$"},
                    "additionalProperties": credential,
                },
                "defaultCatalog": _obj({"enabled": {"type": "boolean"}}),
                "replicaCount": {
                    "const": 1,
                    "description": "Exactly one: kopf has no leader election (two replicas double-process).",
                },
                "resources": K8S_OBJECT,
                "podAnnotations": _map_of_str("Pod annotations."),
                "podLabels": _map_of_str("Pod labels."),
                "priorityClassName": _str(),
                "nodeSelector": _map_of_str("Node selector."),
                "tolerations": K8S_LIST,
                "affinity": K8S_OBJECT,
                "terminationGracePeriodSeconds": {"type": "integer", "minimum": 1, "maximum": 600},
                "podSecurityContext": _obj(
                    {
                        "runAsNonRoot": {"const": True},
                        "runAsUser": ID,
                        "runAsGroup": ID,
                        "fsGroup": ID,
                        "seccompProfile": SECCOMP,
                    },
                    ["runAsNonRoot", "runAsUser", "seccompProfile"],
                    "Pod securityContext; the schema keeps it within the restricted Pod Security Standard.",
                ),
                "securityContext": _obj(
                    {
                        "allowPrivilegeEscalation": {"const": False},
                        "readOnlyRootFilesystem": {"const": True},
                        "runAsNonRoot": {"const": True},
                        "runAsUser": ID,
                        "runAsGroup": ID,
                        "capabilities": _obj(
                            {
                                "drop": {"type": "array", "contains": {"const": "ALL"}, "items": {"type": "string"}},
                                "add": {"type": "array", "maxItems": 0},
                            },
                            ["drop"],
                        ),
                        "seccompProfile": SECCOMP,
                    },
                    ["allowPrivilegeEscalation", "readOnlyRootFilesystem", "runAsNonRoot", "capabilities"],
                    "Container securityContext; restricted Pod Security Standard.",
                ),
                "metrics": _obj(
                    {
                        "service": _obj(
                            {
                                "enabled": {"type": "boolean"},
                                "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                                "port": PORT,
                                "annotations": _map_of_str("Service annotations."),
                            }
                        ),
                        "serviceMonitor": _obj(
                            {
                                "enabled": {"type": "boolean"},
                                "interval": _str(pattern="^[0-9]+(ms|s|m|h)$"),
                                "scrapeTimeout": _str(pattern="^[0-9]+(ms|s|m|h)$"),
                                "labels": _map_of_str("ServiceMonitor labels (e.g. the Prometheus selector)."),
                            }
                        ),
                        "servingPodMonitor": _obj(
                            {
                                "enabled": {"type": "boolean"},
                                "interval": _str(pattern="^[0-9]+(ms|s|m|h)$"),
                                "labels": _map_of_str("PodMonitor labels (e.g. the Prometheus selector)."),
                            }
                        ),
                        "prometheusRule": _obj(
                            {
                                "enabled": {"type": "boolean"},
                                "labels": _map_of_str("PrometheusRule labels."),
                                "carbonDataMaxAgeSeconds": {"type": "number", "exclusiveMinimum": 0},
                            }
                        ),
                        "dashboard": _obj(
                            {
                                "enabled": {"type": "boolean"},
                                "labels": _map_of_str("ConfigMap labels the Grafana sidecar selects on."),
                                "annotations": _map_of_str("ConfigMap annotations (e.g. grafana_folder)."),
                            }
                        ),
                    }
                ),
            }
        ),
        "definitions": definitions,
    }
    return copy.deepcopy(schema)


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        if SCHEMA_PATH.read_text() != text:
            print(f"{SCHEMA_PATH} is out of date: run make chart", file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    SCHEMA_PATH.write_text(text)
    print(f"wrote {SCHEMA_PATH}")
