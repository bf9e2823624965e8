"""Helm chart checks that need no helm binary and no cluster (rendering, install and RBAC against a real
API server are in e2e/test_helm.py): generated files up to date, chart copies equal to their sources,
values accepted by the operator's own settings model, a comment on every RBAC rule."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/greenmodel-operator"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, CHART / "hack" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_values_schema_is_generated_from_settings():
    assert (CHART / "values.schema.json").read_text() == _load("gen_schema").render(), "run `make chart`"


def test_dashboard_is_up_to_date():
    assert (CHART / "dashboards/greenmodel-operator.json").read_text() == _load("gen_dashboard").render(), "run `make chart`"


def _walk_schema(values, schema, path="") -> list[str]:
    """Keys in values that the schema does not declare (what additionalProperties:false will reject)."""
    if "$ref" in schema:
        schema = SCHEMA["definitions"][schema["$ref"].split("/")[-1]]
    for alt in schema.get("anyOf", []) + schema.get("oneOf", []):
        if alt.get("type") == "object" or "$ref" in alt:
            return _walk_schema(values, alt, path) if not isinstance(values, type(None)) else []
    problems = []
    if isinstance(values, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in values.items():
            if key in props:
                problems += _walk_schema(value, props[key], f"{path}.{key}")
            elif extra is False:
                problems.append(f"{path}.{key}")
            elif isinstance(extra, dict):
                problems += _walk_schema(value, extra, f"{path}.{key}")
    return problems


def test_every_default_value_is_declared_in_the_schema():
    assert _walk_schema(VALUES, SCHEMA) == []


def test_schema_rejects_typos_everywhere():
    """Every object in the schema closes its properties (additionalProperties false or a typed map)."""
    def objects(node, path="$"):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                yield path, node
            for k, v in node.items():
                yield from objects(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from objects(v, f"{path}[{i}]")
    open_objects = [p for p, n in objects(SCHEMA) if n.get("additionalProperties", True) is not False]
    assert open_objects == []
    assert _walk_schema({"image": {"repo": "x"}}, SCHEMA) == [".image.repo"]
    assert _walk_schema({"config": {"carbon": {"refreshIntervalSecond": 5}}}, SCHEMA) == [".config.carbon.refreshIntervalSecond"]


def test_default_config_is_valid_for_the_operator_and_equals_the_example():
    from greenmodel.settings import Settings

    settings = Settings.model_validate(VALUES["config"])
    assert set(settings.carbon.regions) == {"europe-west2", "europe-west3", "europe-west9", "europe-central2"}
    assert VALUES["config"] == yaml.safe_load((ROOT / "examples/operator-config.yaml").read_text())


def test_restricted_pod_security_defaults():
    pod, ctr = VALUES["podSecurityContext"], VALUES["securityContext"]
    assert pod["runAsNonRoot"] is True and isinstance(pod["runAsUser"], int) and pod["runAsUser"] > 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctr["allowPrivilegeEscalation"] is False and ctr["readOnlyRootFilesystem"] is True
    assert ctr["capabilities"] == {"drop": ["ALL"]}
    # The same numeric user as the image, so runAsNonRoot holds with or without the pod override.
    assert f"USER {pod['runAsUser']}:{pod['runAsGroup']}" in (ROOT / "Dockerfile").read_text()
    assert SCHEMA["properties"]["replicaCount"] == {"const": 1, "description": SCHEMA["properties"]["replicaCount"]["description"]}


def test_every_rbac_rule_has_a_comment():
    for tpl in ["templates/_rbac.tpl", "templates/rbac.yaml", "templates/secret-reader-rbac.yaml"]:
        lines = (CHART / tpl).read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                assert lines[i - 1].strip().startswith("#"), f"{tpl}:{i + 1}: RBAC rule without a comment"


def test_no_wildcards_in_rbac():
    for tpl in (CHART / "templates").glob("*rbac*"):
        assert '"*"' not in tpl.read_text() and "'*'" not in tpl.read_text(), tpl


def test_chart_crds_equal_repo_crds():
    repo = sorted((ROOT / "crds").glob("*.yaml"))
    assert repo, "crds/ is empty: run `make crds`"
    chart = sorted((CHART / "crds").glob("*.yaml"))
    assert [p.name for p in chart] == [p.name for p in repo], "run `make chart`"
    for a, b in zip(repo, chart):
        assert a.read_bytes() == b.read_bytes(), f"{b} differs from {a}: run `make chart`"


def test_chart_default_catalog_equals_example():
    example = ROOT / "examples/catalog.yaml"
    assert (CHART / "files/modelcatalog-default.yaml").read_bytes() == example.read_bytes(), "run `make chart`"


def test_dashboard_queries_are_valid_promql_on_exported_metrics(tmp_path):
    from greenmodel.observability import REGISTRY

    exported = set(REGISTRY._names_to_collectors)
    dash = json.loads((CHART / "dashboards/greenmodel-operator.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(greenmodel_[a-z_]+)", e)}
    assert used <= exported, sorted(used - exported)
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: run `make system-deps`"
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "5m").replace("$namespace", ".*")}
        for i, e in enumerate(exprs)]}]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    proc = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
