"""The CRDs against a real API server: they install, `kubectl explain` works, defaults are applied by the
server, and every invalid example in examples/invalid/ is rejected with its message."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INVALID = sorted((REPO / "examples" / "invalid").glob("*.yaml"))

pytestmark = pytest.mark.e2e


def _header(path: Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(f"# {key}: "):
            return line.split(": ", 1)[1]
    raise AssertionError(f"{path.name} has no '# {key}:' header")


@pytest.fixture(scope="module")
def crds(cluster):
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    for name in ("greenmodels.greenmodel.dev", "modelcatalogs.greenmodel.dev"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    # kubectl caches discovery on disk: refresh it, so names/categories changed by a new CRD are seen
    cluster.kubectl("api-resources", "--api-group=greenmodel.dev")
    # discovery can lag Established by a moment
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "greenmodels", "-A", check=False).returncode != 0:
        assert time.monotonic() < deadline, "greenmodels not served 30 s after Established"
        time.sleep(0.5)
    return cluster


def test_crds_install_and_are_structural(crds):
    for name in ("greenmodels.greenmodel.dev", "modelcatalogs.greenmodel.dev"):
        crd = json.loads(crds.kubectl("get", "crd", name, "-o", "json").stdout)
        conds = {c["type"]: c for c in crd["status"]["conditions"]}
        assert conds["Established"]["status"] == "True"
        assert conds.get("NonStructuralSchema", {}).get("status") != "True", conds
        assert conds["NamesAccepted"]["status"] == "True"


def test_kubectl_explain_greenmodel_spec(crds):
    out = crds.kubectl("explain", "greenmodel.spec").stdout
    for word in ("model", "quality", "latency", "carbon", "placement", "minReplicas", "maxReplicas", "policy",
                 "hysteresis", "missingData", "suspend"):
        assert word in out, out
    out = crds.kubectl("explain", "greenmodel.spec.latency.ttftP95Milliseconds").stdout
    assert "p95 time to first token" in out
    out = crds.kubectl("explain", "modelcatalog.spec.variants.profiles.batch").stdout
    assert "maxBatchSize" in out


def test_example_and_default_catalog_are_accepted_and_defaulted(crds, namespace):
    crds.kubectl("apply", "--server-side", "--field-manager=e2e-user", "-f", str(REPO / "examples" / "catalog.yaml"))
    gm = yaml.safe_load((REPO / "examples" / "greenmodel.yaml").read_text())
    gm["metadata"]["namespace"] = namespace
    crds.kubectl("apply", "--server-side", "--field-manager=e2e-user", "-f", "-", input=yaml.safe_dump(gm))
    minimal = {"apiVersion": "greenmodel.dev/v1alpha1", "kind": "GreenModel",
               "metadata": {"name": "minimal", "namespace": namespace}, "spec": {"model": {"family": "general-chat"}}}
    crds.kubectl("apply", "--server-side", "--field-manager=e2e-user", "-f", "-", input=json.dumps(minimal))
    got = json.loads(crds.kubectl("get", "greenmodel", "minimal", "-n", namespace, "-o", "json").stdout)["spec"]
    # schema defaults applied by the API server, nested ones included
    assert got["policy"] == "Balanced" and got["minReplicas"] == 1 and got["maxReplicas"] == 8
    assert got["latency"] == {"ttftP95Milliseconds": 2000, "interTokenP95Milliseconds": 100}
    assert got["hysteresis"]["minDwellSeconds"] == 900
    assert got["model"]["catalogName"] == "default"
    # short name, category and printer columns
    out = crds.kubectl("get", "gm", "-n", namespace).stdout
    header = out.splitlines()[0].split()
    for col in ("NAME", "READY", "VARIANT", "REGION", "REPLICAS", "GCO2E/MTOK", "AGE"):
        assert col in header, out
    assert "minimal" in crds.kubectl("get", "greenmodel", "-n", namespace).stdout
    # the category lists both kinds (it must not shadow the singular name `greenmodel`)
    out = crds.kubectl("get", "green", "-A").stdout
    assert "greenmodel.greenmodel.dev/minimal" in out and "modelcatalog.greenmodel.dev/default" in out


def test_status_subresource_is_separate_from_spec(crds, namespace):
    body = {"apiVersion": "greenmodel.dev/v1alpha1", "kind": "GreenModel",
            "metadata": {"name": "with-status", "namespace": namespace}, "spec": {"model": {"family": "general-chat"}},
            "status": {"variant": "sneaky"}}
    crds.kubectl("apply", "--server-side", "--field-manager=e2e-user", "-f", "-", input=json.dumps(body))
    got = json.loads(crds.kubectl("get", "gm", "with-status", "-n", namespace, "-o", "json").stdout)
    assert "status" not in got or got["status"].get("variant") != "sneaky"  # status only via /status


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_examples_are_rejected_with_their_message(crds, namespace, path):
    body = yaml.safe_load(path.read_text())
    if body["kind"] == "GreenModel":
        body["metadata"]["namespace"] = namespace
    p = crds.kubectl("create", "-f", "-", "-o", "name", input=json.dumps(body), check=False)
    assert p.returncode != 0, f"{path.name} was accepted: {p.stdout}"
    expect = _header(path, "expect")
    assert expect in p.stderr, f"{path.name}: expected {expect!r} in:\n{p.stderr}"
