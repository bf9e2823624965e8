"""Generate the CRDs in ``crds/`` from the pydantic models of ``greenmodel.api.v1alpha1``.

    python -m greenmodel.api.crdgen --write   # (re)write crds/*.yaml
    python -m greenmodel.api.crdgen --check   # exit 1 and show a diff if crds/ differ from the models

The pydantic JSON Schema is turned into a Kubernetes *structural* OpenAPI v3 schema: ``$ref``s
inlined, ``anyOf [X, null]`` collapsed to X, ``const`` to a one-value enum, numeric
``exclusiveMinimum`` to the OpenAPI 3.0 boolean form, titles dropped, optional nested objects
defaulted to ``{}`` so the API server fills their defaults, list types declared for
server-side apply, and CEL ``x-kubernetes-validations`` added from :data:`CEL_RULES`.
Defaults are never put into the status schema.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

from greenmodel.api import v1alpha1 as api

# CEL rules with Kubernetes-style messages, by JSON path of the object they sit on.
CEL_RULES: dict[str, dict[str, list[dict[str, str]]]] = {
    "GreenModel": {
        "spec": [
            {"rule": "self.minReplicas <= self.maxReplicas",
             "message": "`minReplicas` must be less than or equal to `maxReplicas`"},
        ],
        "spec.load": [
            {"rule": "!(has(self.outputTokensPerSecond) && has(self.requestsPerSecond))",
             "message": "set at most one of `outputTokensPerSecond` and `requestsPerSecond`"},
        ],
    },
    "ModelCatalog": {
        "spec": [
            {"rule": "self.variants.all(v, v.profiles.all(p, self.gpus.exists(g, g.product == p.gpuProduct)))",
             "message": "every `variants[].profiles[].gpuProduct` must be listed in `gpus`"},
        ],
        "spec.gpus[]": [
            {"rule": "self.idleWatts <= self.maxWatts",
             "message": "`idleWatts` must be less than or equal to `maxWatts`"},
        ],
        "spec.variants[]": [
            {"rule": "!has(self.activeParametersBillions) || self.activeParametersBillions <= self.parametersBillions",
             "message": "`activeParametersBillions` must be less than or equal to `parametersBillions`"},
            {"rule": "self.architecture != 'MoE' || has(self.activeParametersBillions)",
             "message": "`activeParametersBillions` is required when `architecture` is `MoE`"},
            # Transition rules (list-map items are correlated by `name`): a variant name stands for one set of
            # weights. GreenModels' status, Events and child Deployments name the variant; re-pointing a name at
            # another family or model would swap what runs under a GreenModel without the planner choosing it
            # (and could break its quality floor). Add a variant with a new name instead (docs/api.md).
            {"rule": "self.family == oldSelf.family",
             "message": "`family` is immutable: add a variant with a new name instead"},
            {"rule": "self.modelId == oldSelf.modelId",
             "message": "`modelId` is immutable: add a variant with a new name instead"},
        ],
    },
}

# Arrays: how server-side apply merges them.
LIST_TYPES: dict[str, dict[str, dict[str, Any]]] = {
    "GreenModel": {
        "spec.model.variants": {"x-kubernetes-list-type": "set"},
        "spec.placement.regions": {"x-kubernetes-list-type": "set"},
        "spec.placement.gpuProducts": {"x-kubernetes-list-type": "set"},
        "status.conditions": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        "status.alternatives": {"x-kubernetes-list-type": "atomic"},
    },
    "ModelCatalog": {
        "spec.gpus": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["product"]},
        "spec.variants": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        "spec.variants[].profiles": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["gpuProduct"]},
        "spec.variants[].profiles[].batch": {"x-kubernetes-list-type": "atomic"},
        "spec.runtimes": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        "spec.runtimes[].resourcesByGpuProduct": {"x-kubernetes-list-type": "map",
                                                  "x-kubernetes-list-map-keys": ["gpuProduct"]},
        "spec.runtimes[].env": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        "spec.runtimes[].tolerations": {"x-kubernetes-list-type": "atomic"},
    },
}

DESCRIPTIONS = {
    "GreenModel": "GreenModel asks the operator to serve a model family with the least energy and carbon that "
                  "keeps the quality floor and the latency SLO; the operator chooses variant, region, GPU product "
                  "and replicas and reports why in status.",
    "ModelCatalog": "ModelCatalog lists the model variants a platform team offers, with their quality scores and "
                    "measured performance and power per GPU product.",
}

REPO_ROOT = Path(__file__).resolve().parents[3]
CRD_DIR = REPO_ROOT / "crds"


# Marks an optional object whose presence is the switch (spec.modelCache): no `default: {}` for it.
ABSENT_MEANS_OFF = "x-greenmodel-absent-means-off"


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            target.update(extra)
            return _resolve(target, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _structural(node: Any, *, in_status: bool) -> Any:
    if isinstance(node, list):
        return [_structural(v, in_status=in_status) for v in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    # anyOf [X, {type: null}] -> X (absent means unset; we never serialise null)
    if "anyOf" in node:
        opts = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(opts) == 1:
            merged = dict(opts[0])
            for k, v in node.items():
                if k != "anyOf":
                    merged.setdefault(k, v)
            node = merged
    node.pop("title", None)
    if isinstance(node.get("description"), str):
        node["description"] = " ".join(node["description"].split())
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True
    if node.get("default", 0) is None or in_status:
        node.pop("default", None)
    if node.get("x-kubernetes-preserve-unknown-fields") and node.get("additionalProperties") is True:
        node.pop("additionalProperties")  # an open object is said by preserve-unknown-fields alone
    if node.get("type") == "object" and "additionalProperties" in node and node["additionalProperties"] is False:
        node.pop("additionalProperties")  # structural schemas prune unknown fields instead
    for key in ("properties",):
        if key in node:
            node[key] = {k: _structural(v, in_status=in_status) for k, v in node[key].items()}
            if not in_status:
                required = set(node.get("required", []))
                for name, prop in node[key].items():
                    if prop.pop(ABSENT_MEANS_OFF, False):
                        continue  # present, even empty, turns it on: the API server must not default it
                    if (prop.get("type") == "object" and "properties" in prop and name not in required
                            and not prop.get("required") and "default" not in prop):
                        prop["default"] = {}
    for key in ("items", "additionalProperties"):
        if key in node and isinstance(node[key], dict):
            node[key] = _structural(node[key], in_status=in_status)
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    return node


def _at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        if part.endswith("[]"):
            node = node["properties"][part[:-2]]["items"]
        else:
            node = node["properties"][part]
    return node


def _schema(model: type, *, in_status: bool) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation" if not in_status else "serialization")
    defs = raw.pop("$defs", {})
    return _structural(_resolve(raw, defs), in_status=in_status)


def _kind_schema(kind: str) -> dict[str, Any]:
    if kind == "GreenModel":
        spec, status = _schema(api.GreenModelSpec, in_status=False), _schema(api.GreenModelStatus, in_status=True)
    else:
        spec, status = _schema(api.ModelCatalogSpec, in_status=False), None
    top: dict[str, Any] = {
        "type": "object",
        "description": DESCRIPTIONS[kind],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
        "required": ["spec"],
    }
    if status is not None:
        top["properties"]["status"] = status
    for path, rules in CEL_RULES[kind].items():
        _at(top, path).setdefault("x-kubernetes-validations", []).extend(copy.deepcopy(rules))
    for path, extra in LIST_TYPES[kind].items():
        _at(top, path).update(copy.deepcopy(extra))
    return top


def crd(kind: str) -> dict[str, Any]:
    if kind == "GreenModel":
        names = {"kind": "GreenModel", "listKind": "GreenModelList", "plural": "greenmodels",
                 "singular": "greenmodel", "shortNames": ["gm"], "categories": ["green"]}
        scope = "Namespaced"
        columns = [
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            {"name": "Variant", "type": "string", "jsonPath": ".status.variant"},
            {"name": "Region", "type": "string", "jsonPath": ".status.region"},
            {"name": "GPU", "type": "string", "jsonPath": ".status.gpuProduct", "priority": 1},
            {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
            {"name": "gCO2e/Mtok", "type": "number", "jsonPath": ".status.predicted.gramsPerMillionTokens",
             "description": "Predicted grams CO2e per million output tokens (Scope 2 + embodied)"},
            {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
             "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ]
        subresources: dict[str, Any] = {"status": {}}
    else:
        names = {"kind": "ModelCatalog", "listKind": "ModelCatalogList", "plural": "modelcatalogs",
                 "singular": "modelcatalog", "shortNames": ["mcat"], "categories": ["green"]}
        scope = "Cluster"
        columns = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        subresources = {}
    version: dict[str, Any] = {
        "name": api.VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _kind_schema(kind)},
        "additionalPrinterColumns": columns,
    }
    if subresources:
        version["subresources"] = subresources
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names['plural']}.{api.GROUP}",
                     "labels": {"app.kubernetes.io/name": "greenmodel-operator",
                                "app.kubernetes.io/part-of": "greenmodel-operator"}},
        "spec": {"group": api.GROUP, "names": names, "scope": scope, "versions": [version]},
    }


HEADER = "# Generated by `python -m greenmodel.api.crdgen --write` from greenmodel/api/v1alpha1.py. Do not edit.\n"


def render(kind: str) -> str:
    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=120, allow_unicode=True)


def files() -> dict[str, str]:
    return {f"{api.GROUP}_{k.lower()}s.yaml": render(k) for k in ("GreenModel", "ModelCatalog")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m greenmodel.api.crdgen", description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="write crds/*.yaml")
    g.add_argument("--check", action="store_true", help="fail if crds/ differ from the models")
    g.add_argument("--print", action="store_true", help="print the CRDs to stdout")
    ap.add_argument("--dir", type=Path, default=CRD_DIR)
    args = ap.parse_args(argv)
    out = files()
    if args.print:
        sys.stdout.write("---\n".join(out.values()))
        return 0
    if args.write:
        args.dir.mkdir(parents=True, exist_ok=True)
        for name, text in out.items():
            (args.dir / name).write_text(text)
            print(f"wrote {args.dir / name}")
        return 0
    bad = 0
    for name, text in out.items():
        path = args.dir / name
        have = path.read_text() if path.exists() else ""
        if have != text:
            bad += 1
            sys.stdout.writelines(difflib.unified_diff(have.splitlines(True), text.splitlines(True),
                                                       str(path), "generated"))
    if bad:
        print(f"{bad} CRD file(s) differ from the models; run `make crds`", file=sys.stderr)
        return 1
    print("crds/ match the models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
