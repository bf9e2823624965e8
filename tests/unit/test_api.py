"""The typed API boundary: parse_greenmodel / parse_modelcatalog and the models' own rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from greenmodel.api.v1alpha1 import (
    DNS_LABEL,
    GreenModelSpec,
    GreenModelStatus,
    InvalidObject,
    Policy,
    parse_greenmodel,
    parse_modelcatalog,
    parse_status,
)

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "examples" / "invalid").glob("*.yaml"))


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _header(path: Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(f"# {key}: "):
            return line.split(": ", 1)[1]
    raise AssertionError(f"{path.name} has no '# {key}:' header")


def test_example_greenmodel_parses_with_defaults_filled():
    gm = parse_greenmodel(_load(ROOT / "examples" / "greenmodel.yaml"))
    s = gm.spec
    assert s.model.family == "general-chat" and s.policy is Policy.CARBON_FIRST
    assert s.placement.regions is None  # no region restriction, as the README and demo rely on
    assert s.load.tokens_per_second() == 4 * 350
    assert s.suspend is False and s.missing_data.max_hold_seconds == 3600


def test_minimal_spec_gets_the_same_defaults_as_the_crd():
    s = parse_greenmodel({"kind": "GreenModel", "spec": {"model": {"family": "x"}}}).spec
    assert (s.min_replicas, s.max_replicas, s.policy) == (1, 8, Policy.BALANCED)
    assert (s.latency.ttft_p95_milliseconds, s.latency.inter_token_p95_milliseconds) == (2000, 100)
    assert (s.hysteresis.min_improvement_percent, s.hysteresis.min_dwell_seconds) == (10, 900)
    assert s.model.catalog_name == "default"


def test_round_trip_through_the_wire_form():
    gm = parse_greenmodel(_load(ROOT / "examples" / "greenmodel.yaml"))
    again = parse_greenmodel(gm.to_k8s())
    assert again == gm


def test_default_catalog_parses_and_every_profile_has_sources():
    text = (ROOT / "examples" / "catalog.yaml").read_text()
    assert "DEFAULTS TO REPLACE WITH YOUR OWN MEASUREMENTS" in text
    cat = parse_modelcatalog(yaml.safe_load(text)).spec
    products = {g.product for g in cat.gpus}
    assert products == {"NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"}
    families = {v.family for v in cat.variants}
    assert {"general-chat", "qwen3-30b-class"} <= families
    names = {v.name for v in cat.variants}
    for must in ("llama-3.2-3b-bf16", "phi-4-mini-bf16", "mistral-7b-v0.3-bf16", "gemma-3-12b-bf16",
                 "mixtral-8x7b-bf16", "llama-3.1-8b-fp8", "llama-3.1-8b-int4-awq", "qwen3-30b-a3b-bf16"):
        assert must in names
    mixtral = next(v for v in cat.variants if v.name == "mixtral-8x7b-bf16")
    assert (mixtral.parameters_billions, mixtral.active_parameters_billions) == (46.7, 12.9)
    # every L4 profile is marked as derived, never passed off as measured
    for v in cat.variants:
        for p in v.profiles:
            if p.gpu_product == "NVIDIA-L4":
                assert p.derived and "bandwidth" in p.derived
    # every batch row line carries a source: the profile's comment or its `derived` field
    assert text.count("derived:") + text.count("# measured:") >= sum(len(v.profiles) for v in cat.variants)


@pytest.mark.parametrize("body,field,words", [
    ({"kind": "Deployment", "spec": {}}, "kind", "expected 'GreenModel'"),
    ({"apiVersion": "greenmodel.dev/v1", "kind": "GreenModel", "spec": {}}, "apiVersion", "expected"),
    ({"kind": "GreenModel"}, "spec", "required"),
    ({"kind": "GreenModel", "spec": {"model": {"family": "x"}, "replicas": 3}}, "spec.replicas", "unknown field"),
    ({"kind": "GreenModel", "spec": {"model": {"family": "x"}, "latency": {"ttftP95Millis": 3}}},
     "spec.latency.ttftP95Millis", "unknown field"),
    ({"kind": "GreenModel", "spec": {"model": {"family": "x"}, "minReplicas": 4, "maxReplicas": 2}}, "spec",
     "`minReplicas` must be less than or equal to `maxReplicas`"),
    ({"kind": "GreenModel", "spec": {"model": {"family": "x"}, "policy": "Fast"}}, "spec.policy", "CarbonFirst"),
    ({"kind": "GreenModel", "spec": {"model": {"family": "x"}, "suspend": "maybe"}}, "spec.suspend", "boolean"),
    ("just a string", "", "expected a GreenModel object"),
])
def test_invalid_bodies_name_the_field(body, field, words):
    with pytest.raises(InvalidObject) as e:
        parse_greenmodel(body)
    assert e.value.field == field
    assert words in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_examples_are_rejected_by_the_models_too(path):
    """The same table the API server rejects (e2e/test_crds.py) is rejected at the CLI boundary, naming the same
    field (or its parent object, for rules on a whole object); CEL rules use the same words. A transition rule
    (`# on: update`) needs the stored object, which only the API server has: both documents parse here."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    parse = parse_greenmodel if docs[-1]["kind"] == "GreenModel" else parse_modelcatalog
    field, message = _header(path, "field"), _header(path, "message")
    if "# on: update" in path.read_text():
        assert len(docs) == 2 and "immutable" in message
        for d in docs:
            parse(d)
        return
    with pytest.raises(InvalidObject) as e:
        parse(docs[-1])
    assert e.value.field == field or field.startswith(e.value.field) or e.value.field.startswith(field), str(e.value)
    if "`" in message:  # CEL-style rules: the models use the same words
        assert message.removeprefix("Invalid value: ") in str(e.value)
    if message.startswith("unknown field"):
        assert "unknown field" in str(e.value)


def test_invalid_table_covers_every_kind_of_bad_input():
    heads = [(p.name, p.read_text()) for p in INVALID]
    kinds = {
        "wrong type": "must be of type", "out of range": "should be less than or equal to",
        "below range": "should be greater than", "bad enum": "Unsupported value", "pattern": "should match",
        "CEL min > max": "`minReplicas` must be less than or equal to `maxReplicas`", "required": "Required value",
        "unknown field": "unknown field", "too many items": "Too many:", "too long": "Too long:",
        "duplicate": "Duplicate value", "immutable": "is immutable",
    }
    for what, words in kinds.items():
        assert any(words in text.split("\napiVersion")[0] for _n, text in heads), f"no {what} case in examples/invalid"
    for kind in ("GreenModel", "ModelCatalog"):
        assert sum(f"kind: {kind}" in text for _n, text in heads) >= 10, kind


def test_spec_holds_no_urls_credentials_or_cross_namespace_references():
    """A tenant names no address, no credential and nothing in another namespace. The one Secret it may name is
    `serving.huggingFaceTokenSecretName`: a name in its own namespace, passed to its pods by secretKeyRef (the
    operator never reads it)."""
    schema = GreenModelSpec.model_json_schema(by_alias=True)
    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.get("properties", {}).items():
                names.update(w.lower() for w in re.findall(r"[a-z]+|[A-Z]+[a-z]*", k))
                walk(v)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    serving = schema["$defs"]["ServingOptions"]["properties"]
    secret_fields = [k for k in serving if "secret" in k.lower()]
    assert secret_fields == ["huggingFaceTokenSecretName"]
    assert serving["huggingFaceTokenSecretName"]["anyOf"][0]["pattern"] == DNS_LABEL  # a name, not a path
    schema["$defs"]["ServingOptions"]["properties"] = {k: v for k, v in serving.items() if k not in secret_fields}
    walk(schema)
    assert {"average", "output", "tokens", "family"} <= names  # the walk sees camelCase words
    for bad in ("url", "uri", "endpoint", "secret", "credentials", "auth", "password", "namespace", "host", "address", "ref"):
        assert bad not in names, (bad, sorted(names))


def test_status_parsing_ignores_kopf_bookkeeping_and_bad_status():
    st = parse_status({"status": {"kopf": {"progress": {}}, "variant": "a", "replicas": 2}})
    assert isinstance(st, GreenModelStatus) and st.variant == "a" and st.replicas == 2
    assert parse_status({"status": {"replicas": "many"}}) is None
    assert parse_status({}) is None


def test_catalog_rules():
    base = next(yaml.safe_load_all((ROOT / "examples" / "invalid" / "catalog-unknown-gpu.yaml").read_text()))
    base["spec"]["variants"][0]["profiles"][0]["gpuProduct"] = "NVIDIA-L4"
    parse_modelcatalog(base)  # valid once the product is listed
    dup = {**base, "spec": {**base["spec"], "variants": base["spec"]["variants"] * 2}}
    with pytest.raises(InvalidObject, match="duplicate variant"):
        parse_modelcatalog(dup)
