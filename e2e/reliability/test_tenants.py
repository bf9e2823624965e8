"""Tenant isolation (issue 8, "Bad input and tenants"), with real requests, not only `kubectl auth can-i`.

e2e/rbac-matrix.yaml + e2e/test_helm.py::test_rbac_matrix already prove what the tenant `view`/`edit` roles are
*authorised* to do; examples/invalid/unknown-field-{namespace,url,secret}.yaml (e2e/test_crds.py) prove a
GreenModel cannot even carry a namespace, URL or Secret field under strict validation, and
tests/unit/test_api.py walks the schema for such names. What is added here:

- a tenant user bound to the built-in `edit` ClusterRole in namespace A (the chart's aggregated ClusterRoles
  installed, as `helm install` does) really is refused, by the API server, when it writes a ModelCatalog,
  reads or patches the operator's ConfigMap/Secret, writes GreenModel status, or creates a GreenModel in
  namespace B; and it can create one in A (the positive control that the binding works);
- a GreenModel smuggling `spec.model.namespace: B`, a URL and a `secretRef` past kubectl (`--validate=false`)
  is stored without them, and an operator that watches both A and B puts every child in A, owned by that
  GreenModel, and nothing in B; a GreenModel of the same name in B gets its own children, and deleting one
  leaves the other's alone.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
import yaml

from test_reconciler import REPO, children, example_greenmodel, gm_apply, gm_get, record  # noqa: F401
from test_reconciler import api  # noqa: F401  (module fixture: CRDs + default catalog)
from test_reconciler_support import OperatorProcess, wait_for, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
INTERVAL = 2.0
CHART = REPO / "charts" / "greenmodel-operator"


@pytest.fixture(scope="module")
def tenancy(cluster):
    """Namespaces A (the tenant's), B (another team's) and OP (the operator's, with its ConfigMap and Secret), a
    user with `edit` in A only, and the chart's aggregated tenant ClusterRoles."""
    run = uuid.uuid4().hex[:6]
    t = {"a": f"e2e-tenant-a-{run}", "b": f"e2e-tenant-b-{run}", "op": f"e2e-tenant-op-{run}",
         "user": f"gm-tenant-{run}", "release": f"gmt{run}"}
    rendered = cluster.helm("template", t["release"], str(CHART), "-n", t["op"],
                            "--show-only", "templates/rbac.yaml").stdout
    roles = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ClusterRole"
             and "rbac.authorization.k8s.io/aggregate-to-edit" in (d["metadata"].get("labels") or {})]
    assert roles, "the chart renders no ClusterRole aggregated into `edit`"
    t["roles"] = [r["metadata"]["name"] for r in roles]
    try:
        for ns in (t["a"], t["b"], t["op"]):
            cluster.kubectl("create", "namespace", ns)
        cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": roles}))
        cluster.kubectl("create", "configmap", "greenmodel-operator-config", "-n", t["op"],
                        "--from-literal=config.yaml=carbon: {}")
        cluster.kubectl("create", "secret", "generic", "greenmodel-operator-credentials", "-n", t["op"],
                        "--from-literal=ELECTRICITYMAPS_TOKEN=not-a-real-token")
        cluster.kubectl("create", "rolebinding", "tenant-edit", "--clusterrole=edit", f"--user={t['user']}", "-n", t["a"])
        # aggregation is done by kube-controller-manager, a moment after the ClusterRoles appear
        wait_for(lambda: cluster.kubectl("auth", "can-i", "create", "greenmodels.greenmodel.dev", "-n", t["a"],
                                         f"--as={t['user']}", check=False).stdout.strip() == "yes",
                 60, "GreenModel rules aggregated into `edit`")
        yield t
    finally:
        for ns in (t["a"], t["b"], t["op"]):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
        for name in t["roles"]:
            cluster.kubectl("delete", "clusterrole", name, "--ignore-not-found", check=False)


def _as(cluster, t, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return cluster.kubectl(*args, f"--as={t['user']}", input=input, check=False)


def _gm(name: str, ns: str, **extra) -> dict:
    gm = example_greenmodel(name)
    gm["metadata"]["namespace"] = ns
    gm["spec"]["maxReplicas"] = 1
    gm["spec"]["load"] = {"outputTokensPerSecond": 50}
    gm["spec"].update(extra)
    return gm


def test_edit_tenant_is_refused_everything_outside_its_greenmodels(cluster, api, tenancy):
    t = tenancy
    t0 = time.monotonic()
    # positive control: the binding works, the tenant manages GreenModels in its own namespace
    ok = _as(cluster, t, "create", "-f", "-", "-o", "name", input=json.dumps(_gm("mine", t["a"])))
    assert ok.returncode == 0, ok.stderr
    catalog = {"apiVersion": "greenmodel.dev/v1alpha1", "kind": "ModelCatalog", "metadata": {"name": f"evil-{t['user']}"},
               "spec": yaml.safe_load((REPO / "examples" / "invalid" / "catalog-immutable-family.yaml")
                                      .read_text().split("---")[0])["spec"]}
    attempts = {
        "create a GreenModel in another namespace": ("create", "-f", "-", _gm("theirs", t["b"])),
        "create a ModelCatalog": ("create", "-f", "-", catalog),
        "patch the default ModelCatalog": ("patch", "modelcatalog", "default", "--type=merge",
                                          "-p", '{"metadata":{"labels":{"owned":"tenant"}}}'),
        "delete the default ModelCatalog": ("delete", "modelcatalog", "default", "--dry-run=server"),
        "read the operator's ConfigMap": ("get", "configmap", "greenmodel-operator-config", "-n", t["op"]),
        "patch the operator's ConfigMap": ("patch", "configmap", "greenmodel-operator-config", "-n", t["op"],
                                           "--type=merge", "-p", '{"data":{"config.yaml":"carbon: {evil: 1}"}}'),
        "read the operator's Secret": ("get", "secret", "greenmodel-operator-credentials", "-n", t["op"]),
        "list Secrets in every namespace": ("get", "secrets", "-A"),
        "write its GreenModel's status": ("patch", "greenmodel", "mine", "-n", t["a"], "--subresource=status",
                                          "--type=merge", "-p", '{"status":{"variant":"forged","replicas":99}}'),
        "bind itself a wider role": ("create", "rolebinding", "escalate", "--clusterrole=admin",
                                     f"--user={t['user']}", "-n", t["b"]),
    }
    refused = {}
    for what, args in attempts.items():
        body = json.dumps(args[-1]) if isinstance(args[-1], dict) else None
        p = _as(cluster, t, *(args[:-1] if body else args), input=body)
        assert p.returncode != 0, f"tenant could {what}: {p.stdout}"
        assert "Forbidden" in p.stderr or "forbidden" in p.stderr, f"{what}: not refused by RBAC: {p.stderr}"
        refused[what] = True
    # nothing changed behind the refusals
    assert cluster.kubectl("get", "greenmodel", "theirs", "-n", t["b"], check=False).returncode != 0
    cm = json.loads(cluster.kubectl("get", "configmap", "greenmodel-operator-config", "-n", t["op"], "-o", "json").stdout)
    assert cm["data"]["config.yaml"] == "carbon: {}"
    assert "variant" not in (gm_get(api, t["a"], "mine").get("status") or {})
    record("tenant_refusals", attempts=len(attempts), refused=len(refused), seconds=round(time.monotonic() - t0, 2))


def test_smuggled_fields_are_pruned_and_children_stay_in_the_greenmodel_namespace(cluster, api, tenancy, tmp_path):
    t = tenancy
    op = OperatorProcess(cluster.kubeconfig, write_config(tmp_path / "config.yaml", interval=INTERVAL),
                         [t["a"], t["b"]], tmp_path / "operator.log").start()
    try:
        t0 = time.monotonic()
        smuggled = _gm("chat", t["a"], secretRef={"name": "greenmodel-operator-credentials", "namespace": t["op"]})
        smuggled["spec"]["model"]["namespace"] = t["b"]
        smuggled["spec"]["carbon"] = {"providerURL": "http://169.254.169.254/latest/meta-data/"}
        p = _as(cluster, t, "apply", "--validate=false", "-f", "-", input=json.dumps(smuggled))
        assert p.returncode == 0, p.stderr
        stored = gm_get(api, t["a"], "chat")["spec"]
        assert "secretRef" not in stored and "namespace" not in stored["model"] and "providerURL" not in stored["carbon"]
        # another team's GreenModel of the same name, created by its own admin
        gm_apply(api, t["b"], _gm("chat", t["b"]))

        def placed(ns):
            got = children(api, ns, "chat")
            uid = gm_get(api, ns, "chat")["metadata"]["uid"]
            deps = got["deployments"]
            if len(deps) != 1 or not got["services"]:
                return None
            for obj in deps + got["services"]:
                assert obj["metadata"]["namespace"] == ns
                assert [o["uid"] for o in obj["metadata"].get("ownerReferences") or []] == [uid], obj["metadata"]
            return deps

        wait_for(lambda: placed(t["a"]), 30, "children of A/chat", on_fail=op.tail)
        wait_for(lambda: placed(t["b"]), 30, "children of B/chat", on_fail=op.tail)
        settle = time.monotonic() - t0
        # every object the operator manages for a GreenModel named chat, cluster-wide, is in A or B, one set each
        sel = "app.kubernetes.io/managed-by=greenmodel-operator,app.kubernetes.io/instance=chat"
        everywhere = json.loads(cluster.kubectl("get", "deployments,services,poddisruptionbudgets", "-A", "-l", sel,
                                                "-o", "json").stdout)["items"]
        by_ns: dict[str, int] = {}
        for obj in everywhere:
            by_ns[obj["metadata"]["namespace"]] = by_ns.get(obj["metadata"]["namespace"], 0) + 1
        mine = {ns: n for ns, n in by_ns.items() if ns in (t["a"], t["b"])}
        assert mine.get(t["a"]) == mine.get(t["b"]) and mine[t["a"]] >= 2, by_ns
        # deleting B's GreenModel takes B's children (garbage collector, owner references) and leaves A's alone
        a_uids = {o["metadata"]["uid"] for o in children(api, t["a"], "chat")["deployments"]}
        cluster.kubectl("delete", "greenmodel", "chat", "-n", t["b"], "--wait=true", "--timeout=30s")
        wait_for(lambda: not children(api, t["b"], "chat")["deployments"], 30, "B's children collected")
        time.sleep(INTERVAL)  # one operator pass after the deletion
        assert {o["metadata"]["uid"] for o in children(api, t["a"], "chat")["deployments"]} == a_uids
        assert "Forbidden" not in op.tail(400) and "Traceback" not in op.tail(400), op.tail()
        record("tenant_isolation", seconds_to_children=round(settle, 2), objects_per_namespace=mine,
               total_seconds=round(time.monotonic() - t0, 2))
    finally:
        op.stop()
