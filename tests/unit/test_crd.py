"""crds/ is exactly what the generator makes from the models, and it is a valid structural schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from greenmodel.api import crdgen

ROOT = Path(__file__).resolve().parents[2]
FILES = crdgen.files()


@pytest.mark.parametrize("name", sorted(FILES))
def test_crds_equal_generator_output(name):
    path = ROOT / "crds" / name
    assert path.exists(), f"{path} missing: run `make crds`"
    assert path.read_text() == FILES[name], "crds/ differ from the models: run `make crds`"


def test_check_mode_agrees(capsys):
    assert crdgen.main(["--check"]) == 0


def _walk(node, path="$"):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.get("properties", {}).items():
            yield from _walk(v, f"{path}.{k}")
        if isinstance(node.get("items"), dict):
            yield from _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("name", sorted(FILES))
def test_schema_is_structural(name):
    crd = yaml.safe_load(FILES[name])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "type" in node, f"{path} has no type"
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "const", "title", "nullable", "$defs"):
            assert banned not in node, f"{path} has {banned}"
        if node["type"] == "object" and path != "$.metadata":
            assert ("properties" in node or "additionalProperties" in node
                    or node.get("x-kubernetes-preserve-unknown-fields") is True), path
        if "exclusiveMinimum" in node:
            assert isinstance(node["exclusiveMinimum"], bool) and "minimum" in node, path
        if node["type"] == "array":
            assert "maxItems" in node, f"{path}: CEL cost estimation needs maxItems"
        if "default" in node and node["type"] == "object":
            assert node["default"] == {}, path


def test_greenmodel_crd_shape():
    crd = yaml.safe_load(FILES["greenmodel.dev_greenmodels.yaml"])
    spec = crd["spec"]
    assert spec["group"] == "greenmodel.dev" and spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["gm"] and spec["names"]["categories"] == ["green"]
    v = spec["versions"][0]
    assert v["name"] == "v1alpha1" and v["subresources"] == {"status": {}}
    cols = [c["name"] for c in v["additionalPrinterColumns"]]
    for c in ("Ready", "Variant", "Region", "Replicas", "gCO2e/Mtok", "Age"):
        assert c in cols
    schema = v["schema"]["openAPIV3Schema"]
    s = schema["properties"]["spec"]
    rules = {r["message"]: r["rule"] for r in s["x-kubernetes-validations"]}
    assert rules["`minReplicas` must be less than or equal to `maxReplicas`"] == "self.minReplicas <= self.maxReplicas"
    assert s["properties"]["policy"]["enum"] == ["LatencyFirst", "Balanced", "CarbonFirst"]
    assert s["properties"]["policy"]["default"] == "Balanced"
    assert s["properties"]["latency"]["default"] == {}  # so the server fills the nested defaults
    assert s["properties"]["latency"]["properties"]["ttftP95Milliseconds"]["default"] == 2000
    assert s["required"] == ["model"]
    st = schema["properties"]["status"]
    assert st["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert st["properties"]["alternatives"]["maxItems"] == 10
    for path, node in _walk(st):
        assert "default" not in node, f"status default at {path}"
    for name in ("energyJoules", "energySource", "scope2Grams", "scope3Grams", "outputTokens",
                 "sciGramsPerThousandTokens", "since", "updated"):
        assert name in st["properties"]["emissions"]["properties"]
    for name in ("gramsPerKilowattHour", "source", "zone", "timestamp", "kind"):
        assert name in st["properties"]["intensity"]["properties"]


def test_modelcatalog_crd_shape():
    crd = yaml.safe_load(FILES["greenmodel.dev_modelcatalogs.yaml"])
    spec = crd["spec"]
    assert spec["scope"] == "Cluster" and spec["names"]["kind"] == "ModelCatalog"
    s = spec["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert s["properties"]["variants"]["x-kubernetes-list-map-keys"] == ["name"]
    v = s["properties"]["variants"]["items"]
    assert v["properties"]["quality"]["additionalProperties"]["type"] == "number"
    assert v["properties"]["precision"]["enum"] == ["bf16", "fp16", "fp8", "int8", "int4-awq", "int4-gptq"]
    msgs = [r["message"] for r in v["x-kubernetes-validations"]]
    assert "`activeParametersBillions` is required when `architecture` is `MoE`" in msgs
    # transition rules: a stored variant name keeps its family and weights (list-map items correlate by name)
    rules = {r["message"]: r["rule"] for r in v["x-kubernetes-validations"]}
    assert rules["`family` is immutable: add a variant with a new name instead"] == "self.family == oldSelf.family"
    assert rules["`modelId` is immutable: add a variant with a new name instead"] == "self.modelId == oldSelf.modelId"


def test_default_catalog_validates_against_generated_schema_types():
    """A light structural check of the packaged catalog against the CRD (types, enums, required)."""
    crd = yaml.safe_load(FILES["greenmodel.dev_modelcatalogs.yaml"])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    doc = yaml.safe_load((ROOT / "examples" / "catalog.yaml").read_text())

    def check(node, sch, path):
        t = sch["type"]
        py = {"object": dict, "array": list, "string": str, "boolean": bool}.get(t)
        if t in ("number", "integer"):
            assert isinstance(node, (int, float)) and not isinstance(node, bool), path
            if t == "integer":
                assert isinstance(node, int), path
        else:
            assert isinstance(node, py), path
        if "enum" in sch:
            assert node in sch["enum"], path
        if t == "object":
            for r in sch.get("required", []):
                assert r in node, f"{path}.{r} required"
            for k, v in node.items():
                if "properties" in sch:
                    assert k in sch["properties"], f"{path}.{k} unknown (would be pruned)"
                    check(v, sch["properties"][k], f"{path}.{k}")
                else:
                    check(v, sch["additionalProperties"], f"{path}.{k}")
        if t == "array":
            assert len(node) <= sch["maxItems"], path
            for i, x in enumerate(node):
                check(x, sch["items"], f"{path}[{i}]")

    check(doc["spec"], schema["properties"]["spec"], "spec")


def test_model_cache_is_not_defaulted_into_existence():
    """spec.modelCache is the switch for caches: an API-server default of {} would turn them on for every
    catalog (a present, empty modelCache means "cache with the defaults")."""
    crd = yaml.safe_load(FILES["greenmodel.dev_modelcatalogs.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "default" not in spec["properties"]["modelCache"]
    assert "x-greenmodel-absent-means-off" not in yaml.safe_dump(crd)
