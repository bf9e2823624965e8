"""The CRDs against a real API server: they install, `kubectl explain` works, defaults are applied by the
server, and every invalid example in examples/invalid/ (43 cases) is rejected on create and on update with
exactly its field path and message (the Status cause); unknown fields are rejected under fieldValidation=Strict
(kubectl's default) and pruned, never stored, without it."""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
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


# ------------------------------------------------------------------------------------ the invalid table
# Each examples/invalid/*.yaml is one case: headers `# field:` and `# message:` (the exact field path and message
# of the API server's cause), optional `# fieldValidation: Strict` (unknown fields) and `# on: update` (a
# transition rule: the file holds two documents, the stored object and the rejected update). Every other case is
# rejected both on create and on update of a valid object. Requests are dry runs except the bases they update.
BASE_GM = {"model": {"family": "general-chat"}}
BASE_CATALOG = yaml.safe_load((REPO / "examples" / "invalid" / "catalog-immutable-family.yaml").read_text().split("---")[0])
UNKNOWN = re.compile(r'unknown field "([^"]+)"')


def _case(path: Path) -> tuple[dict[str, str], list[dict]]:
    heads = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^# ([A-Za-z]+): (.*)$", line)
        if m:
            heads[m.group(1)] = m.group(2)
    for key in ("field", "message"):
        assert key in heads, f"{path.name} has no '# {key}:' header"
    return heads, [d for d in yaml.safe_load_all(path.read_text()) if d]


def _url(kind: str, namespace: str, name: str | None = None) -> str:
    base = "/apis/greenmodel.dev/v1alpha1"
    path = f"{base}/namespaces/{namespace}/greenmodels" if kind == "GreenModel" else f"{base}/modelcatalogs"
    return f"{path}/{name}" if name else path


def _call(k8s, method: str, url: str, body: dict, **params: str) -> tuple[int, dict]:
    """One raw request; returns (HTTP status, the object or the API Status)."""
    from urllib.parse import urlencode

    resp = k8s.call_api(method, k8s.configuration.host + url + ("?" + urlencode(params) if params else ""),
                        header_params={"Content-Type": "application/json", "Accept": "application/json"},
                        body=body)
    resp.read()
    return resp.status, json.loads(resp.data or b"{}")


def _causes(status: dict) -> list[tuple[str, str]]:
    """(field, message) of each rejection cause. CEL's "some validation rules were not checked" companion
    (field `<nil>`) is left out; strict decoding errors carry no causes, only `unknown field "PATH"` in the
    message."""
    causes = [(c.get("field", ""), c.get("message", "")) for c in (status.get("details") or {}).get("causes") or []
              if c.get("field") != "<nil>"]
    if not causes and "strict decoding error" in status.get("message", ""):
        causes = [(f, f'unknown field "{f}"') for f in UNKNOWN.findall(status["message"])]
    return causes


@pytest.fixture(scope="module")
def update_bases(crds, k8s, request):
    """A stored GreenModel and ModelCatalog that each table case tries to update into its invalid form."""
    from kubernetes.client.exceptions import ApiException

    suffix = uuid.uuid4().hex[:6]
    ns = f"e2e-invalid-updates-{suffix}"
    crds.kubectl("create", "namespace", ns)
    gm = {"apiVersion": "greenmodel.dev/v1alpha1", "kind": "GreenModel",
          "metadata": {"name": "base", "namespace": ns}, "spec": BASE_GM}
    cat = copy.deepcopy(BASE_CATALOG)
    cat["metadata"] = {"name": f"e2e-invalid-base-{suffix}"}
    made = []
    try:
        for obj in (gm, cat):
            code, got = _call(k8s, "POST", _url(obj["kind"], ns), obj)
            assert code == 201, got
            made.append(obj)
        yield {"namespace": ns, "GreenModel": "base", "ModelCatalog": cat["metadata"]["name"]}
    finally:
        try:
            crds.kubectl("delete", "modelcatalog", cat["metadata"]["name"], "--ignore-not-found", "--wait=false")
        except (ApiException, AssertionError):  # pragma: no cover - cleanup best effort
            pass
        crds.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _rejected(k8s, method, url, body, heads, what):
    params = {"dryRun": "All"}
    if heads.get("fieldValidation"):
        params["fieldValidation"] = heads["fieldValidation"]
    code, status = _call(k8s, method, url, body, **params)
    assert code in (400, 422), f"{what} was accepted ({code})"
    assert _causes(status) == [(heads["field"], heads["message"])], f"{what}: {status.get('message')}"
    return status


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_examples_are_rejected_with_their_message_and_field(crds, k8s, update_bases, path):
    """The exact field path and message, on create and on update (or only on update for a transition rule)."""
    heads, docs = _case(path)
    ns = update_bases["namespace"]
    body = copy.deepcopy(docs[-1])
    kind = body["kind"]
    if kind == "GreenModel":
        body["metadata"]["namespace"] = ns
    if heads.get("on", "create, update") != "update":
        _rejected(k8s, "POST", _url(kind, ns), body, heads, f"create {path.name}")
    if len(docs) == 2:  # its own stored object: created for real, then the update is tried
        before = copy.deepcopy(docs[0])
        name = f"{before['metadata']['name']}-{uuid.uuid4().hex[:6]}"
        before["metadata"]["name"] = name
        code, stored = _call(k8s, "POST", _url(kind, ns), before)
        assert code == 201, stored
        try:
            body["metadata"] = {"name": name, "resourceVersion": stored["metadata"]["resourceVersion"]}
            _rejected(k8s, "PUT", _url(kind, ns, name), body, heads, f"update {path.name}")
            # the same change under a new variant name is fine: only re-pointing a stored name is refused
            if kind == "ModelCatalog":
                renamed = copy.deepcopy(body)
                renamed["spec"]["variants"][0]["name"] = "tiny-v2"
                code, got = _call(k8s, "PUT", _url(kind, ns, name), renamed, dryRun="All")
                assert code == 200, got
        finally:
            crds.kubectl("delete", "modelcatalog" if kind == "ModelCatalog" else "greenmodel", name,
                         *([] if kind == "ModelCatalog" else ["-n", ns]), "--wait=false", check=False)
    else:
        name = update_bases[kind]
        code, stored = _call(k8s, "GET", _url(kind, ns, name), None)
        assert code == 200, stored
        body["metadata"] = {**({"namespace": ns} if kind == "GreenModel" else {}), "name": name,
                            "resourceVersion": stored["metadata"]["resourceVersion"]}
        _rejected(k8s, "PUT", _url(kind, ns, name), body, heads, f"update {path.name}")
    if heads.get("fieldValidation") == "Strict":
        # Without strict validation the unknown field is pruned: it is never stored, so no operator can see it.
        code, got = _call(k8s, "POST", _url(kind, ns), {**body, "metadata": {"name": f"pruned-{uuid.uuid4().hex[:6]}",
                                                                           **({"namespace": ns} if kind == "GreenModel" else {})}},
                          dryRun="All", fieldValidation="Ignore")
        assert code == 201, got
        node = got
        *parents, leaf = heads["field"].split(".")
        for part in parents:
            m = re.match(r"^(\w+)\[(\d+)\]$", part)
            node = node[m.group(1)][int(m.group(2))] if m else node[part]
        assert leaf not in node, f"{heads['field']} was stored: {node}"


def test_kubectl_rejects_unknown_fields_by_default_and_prunes_them_when_told_not_to_validate(crds, update_bases):
    """kubectl's default --validate=strict asks the server for fieldValidation=Strict; --validate=false prunes."""
    heads, docs = _case(REPO / "examples" / "invalid" / "unknown-field-replicas.yaml")
    body = copy.deepcopy(docs[0])
    body["metadata"]["namespace"] = update_bases["namespace"]
    for args in (["create"], ["apply", "--server-side"], ["apply", "--server-side", "--validate=strict"]):
        p = crds.kubectl(*args, "--dry-run=server", "-f", "-", input=json.dumps(body), check=False)
        assert p.returncode != 0 and "spec.replicas" in p.stderr, (args, p.stdout, p.stderr)
    p = crds.kubectl("create", "--validate=false", "--dry-run=server", "-f", "-", "-o", "json",
                     input=json.dumps(body))
    assert "replicas" not in json.loads(p.stdout)["spec"]
