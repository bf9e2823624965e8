"""The Helm chart for real: the helm binary against the local control plane.

- `helm lint --strict`, the values schema rejecting typos, `helm template | kubectl apply --dry-run=server`;
- `helm install --wait` into a namespace that enforces the restricted Pod Security Standard (the operator
  pod is admitted; kwok marks it Running), `helm upgrade` (Recreate: a new pod, one at a time), `helm uninstall`;
- the operator process run locally with the chart ServiceAccount's token (TokenRequest), not an admin
  identity, doing its whole job on the example GreenModel with zero Forbidden errors;
- a `kubectl auth can-i` matrix for that ServiceAccount and for tenants bound to view/edit, compared exactly
  with e2e/rbac-matrix.yaml.
Durations of each helm step are written to out/e2e-helm-timings.json and printed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "greenmodel-operator"
MATRIX = yaml.safe_load((Path(__file__).parent / "rbac-matrix.yaml").read_text())
# Unique per run: cluster-scoped objects (ClusterRoles) of a release aborted by a crash cannot block the next run,
# and two sessions sharing the cluster do not collide.
RUN = uuid.uuid4().hex[:5]
RELEASE = f"gm{RUN}"
RELEASE_NS_SCOPED = f"gmns{RUN}"
TIMINGS: dict[str, float] = {}


# ----------------------------------------------------------------------------------------------- helpers
class Tools:
    def __init__(self, cluster):
        self.cluster = cluster
        self.helm = cluster.helm_bin
        self.kubectl_bin = str(Path(cluster.bin_dir) / "kubectl")
        self.env = {**cluster.env, "KUBECONFIG": str(cluster.kubeconfig)}
        self.env.setdefault("HELM_CACHE_HOME", str(REPO / "out" / "helm-cache"))
        self.env.setdefault("HELM_CONFIG_HOME", str(REPO / "out" / "helm-config"))
        self.env.setdefault("HELM_DATA_HOME", str(REPO / "out" / "helm-data"))

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300,
            env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=timeout,
                              env=env or self.env, cwd=REPO)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args[:6])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def helm_(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(self.helm, *args, **kw)

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(self.kubectl_bin, *args, **kw)

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def timed(self, label: str, fn, *args, **kw):
        t0 = time.monotonic()
        try:
            return fn(*args, **kw)
        finally:
            TIMINGS[label] = round(time.monotonic() - t0, 2)


def wait_until(pred, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except (AssertionError, subprocess.SubprocessError, json.JSONDecodeError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last}")


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def remove_orphans(t: "Tools") -> None:
    """Cluster-scoped objects left by earlier runs whose release namespace is gone (a crash mid-test)."""
    namespaces = set(t.kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}").stdout.split())
    for kind in ("clusterroles", "clusterrolebindings"):
        items = t.get(kind, "-l", "app.kubernetes.io/part-of=greenmodel-operator,app.kubernetes.io/managed-by=Helm")["items"]
        for obj in items:
            owner_ns = (obj["metadata"].get("annotations") or {}).get("meta.helm.sh/release-namespace", "")
            if owner_ns.startswith(("gm-system-", "gm-nsscope-")) and owner_ns not in namespaces:
                t.kubectl("delete", kind, obj["metadata"]["name"], "--wait=false", check=False)


@pytest.fixture(scope="module")
def tools(cluster):
    t = Tools(cluster)
    remove_orphans(t)
    yield t
    out = REPO / "out"
    out.mkdir(exist_ok=True)
    (out / "e2e-helm-timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
    print("\nhelm e2e timings (s): " + ", ".join(f"{k}={v}" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def crds(tools):
    """The chart's CRDs installed (what `helm install` does on a fresh cluster); left in place."""
    tools.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    for crd in (CHART / "crds").glob("*.yaml"):
        name = yaml.safe_load(crd.read_text())["metadata"]["name"]
        tools.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@pytest.fixture(scope="module")
def operator_ns(tools):
    ns = f"gm-system-{uuid.uuid4().hex[:6]}"
    tools.kubectl("create", "namespace", ns)
    tools.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted",
                  "pod-security.kubernetes.io/enforce-version=latest")
    yield ns
    tools.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def tenant_ns(tools):
    ns = f"gm-tenant-{uuid.uuid4().hex[:6]}"
    tools.kubectl("create", "namespace", ns)
    # The serving pods the operator generates must be admitted under the restricted standard as well.
    tools.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted",
                  "pod-security.kubernetes.io/enforce-version=latest")
    yield ns
    tools.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ------------------------------------------------------------------------------------ lint and template
def test_lint_strict(tools):
    tools.timed("lint", tools.helm_, "lint", "--strict", str(CHART))
    # Every optional part switched on, and the namespaced RBAC variant, lint clean as well.
    tools.helm_("lint", "--strict", str(CHART), "--set", "rbac.scope=namespace", "--set", "watchNamespaces={a,b}",
                "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
                "--set", "metrics.dashboard.enabled=true")


@pytest.mark.parametrize("bad, message", [
    ("confg.carbon.refreshIntervalSeconds=60", "additional properties 'confg' not allowed"),
    ("config.carbon.refreshIntervalSecond=60", "additional properties 'refreshIntervalSecond' not allowed"),
    ("replicaCount=2", "/replicaCount"),
    ("securityContext.allowPrivilegeEscalation=true", "/securityContext/allowPrivilegeEscalation"),
    ("securityContext.readOnlyRootFilesystem=false", "/securityContext/readOnlyRootFilesystem"),
    ("podSecurityContext.runAsUser=0", "/podSecurityContext/runAsUser"),
    ("rbac.scope=everywhere", "/rbac/scope"),
    ("config.carbon.providers.x.type=carbonoracle", "/config/carbon/providers/x"),
    ("image.digest=latest", "/image/digest"),
])
def test_schema_rejects(tools, bad, message):
    proc = tools.helm_("template", RELEASE, str(CHART), "--set", bad, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def render(tools, namespace: str, *sets: str) -> list[dict]:
    args = ["template", RELEASE, str(CHART), "-n", namespace]
    for s in sets:
        args += ["--set", s]
    return docs(tools.helm_(*args).stdout)


def test_rendered_deployment_and_config(tools):
    objs = render(tools, "greenmodel-system")
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "greenmodel-operator"
        assert labels["app.kubernetes.io/instance"] == RELEASE and labels["app.kubernetes.io/managed-by"] == "Helm"
    (dep,) = by_kind["Deployment"]
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    (ctr,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    sc = ctr["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp and {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The rendered ConfigMap is a config file the operator itself accepts.
    from greenmodel.settings import Settings

    (cm,) = [c for c in by_kind["ConfigMap"] if c["metadata"]["name"].endswith("-config")]
    settings = Settings.model_validate(yaml.safe_load(cm["data"]["config.yaml"]))
    assert settings.zone_for_region("europe-west9") == "FR"
    assert "--config=/etc/greenmodel/config.yaml" in ctr["args"] and "--all-namespaces" in ctr["args"]
    # The image's ENTRYPOINT is `greenmodel run`: the chart's args must be what that command accepts, and the
    # probes must hit the port it serves /healthz on.
    from greenmodel.cli.main import build_parser

    parsed = build_parser().parse_args(["run", *ctr["args"]])
    assert parsed.config == "/etc/greenmodel/config.yaml" and parsed.metrics_address == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert parsed.metrics_port == ports["metrics"] and parsed.health_port == ports["health"]
    assert ctr["livenessProbe"]["httpGet"]["port"] == "health" and ctr["readinessProbe"]["httpGet"]["port"] == "health"
    # Optional parts are off by default.
    assert not {"ServiceMonitor", "PrometheusRule"} & set(by_kind)


def test_namespaced_scope_keeps_only_cluster_wide_needs_in_the_cluster_role(tools):
    """With rbac.scope=namespace nothing that a namespaced Role could grant is granted cluster-wide,
    except listing pods: free GPUs per node count every pod on it, whichever namespace it is in."""
    namespaced = set()
    for line in tools.kubectl("api-resources", "--namespaced=true", "-o", "name").stdout.split():
        namespaced.add(line)
    objs = render(tools, "greenmodel-system", "rbac.scope=namespace", "watchNamespaces={team-a,team-b}")
    (cr,) = [o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == f"{RELEASE}-greenmodel-operator"]
    cluster_wide = []
    for rule in cr["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                full = res if not group else f"{res}.{group}"
                if full.split("/")[0] in namespaced:
                    cluster_wide.append((full, tuple(rule["verbs"])))
    assert cluster_wide == [("pods", ("list", "watch"))]
    roles = [o for o in objs if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args


def test_credentials_reach_the_operator_without_broad_secret_access(tools, tmp_path):
    """`credentials` become env vars from Secrets (no RBAC at all); a secretKeyRef in `config` gets `get` on
    exactly that Secret, in its namespace, and nothing else."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "credentials": {"WT_USER": {"secretName": "wt", "key": "user"}},
        "config": {"carbon": {
            "providers": {
                "electricitymaps": {"type": "electricitymaps", "credentials": {"secretKeyRef": {"name": "em-token", "key": "token"}}},
                "watttime": {"type": "watttime", "credentials": {
                    "username": {"env": "WT_USER"},
                    "password": {"secretKeyRef": {"name": "wt-pass", "key": "password", "namespace": "vault-sync"}}}},
                "static": {"type": "static", "gramsPerKilowattHour": {"GB": 200}}},
            "regions": {"europe-west2": {"zone": "GB", "providers": ["electricitymaps", "watttime", "static"]}}}}}))
    objs = docs(tools.helm_("template", RELEASE, str(CHART), "-n", "gs", "-f", str(values)).stdout)
    secret_rules = {(o["metadata"]["namespace"], json.dumps(r, sort_keys=True))
                    for o in objs if o["kind"] == "Role" for r in o["rules"]}
    assert secret_rules == {
        ("gs", json.dumps({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["em-token"], "verbs": ["get"]}, sort_keys=True)),
        ("vault-sync", json.dumps({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["wt-pass"], "verbs": ["get"]}, sort_keys=True)),
    }
    for o in objs:
        if o["kind"] == "ClusterRole":
            assert all("secrets" not in r["resources"] for r in o["rules"]), o["metadata"]["name"]
    ctr = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in ctr["env"]}
    assert env["WT_USER"]["valueFrom"]["secretKeyRef"] == {"name": "wt", "key": "user", "optional": False}
    # The default values reference no Secret at all.
    assert not [o for o in render(tools, "gs") if o["kind"] == "Role"]


def test_template_applies_with_server_side_dry_run(tools, crds, operator_ns):
    manifest = tools.helm_("template", RELEASE, str(CHART), "-n", operator_ns).stdout
    proc = tools.timed("template|apply --dry-run=server", tools.kubectl,
                       "apply", "--dry-run=server", "-n", operator_ns, "-f", "-", input=manifest)
    assert "created (server dry run)" in proc.stdout
    # Pod Security admission checks the Deployment's pod template at dry run too (warnings on stderr).
    assert "violate PodSecurity" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------- install and operate
@pytest.fixture(scope="module")
def release(tools, crds, operator_ns):
    extra = []
    # A catalog another test (or the session) already applied cannot be adopted by Helm ("invalid ownership
    # metadata"); then install without it and leave it alone.
    catalog = next(d for d in yaml.safe_load_all((CHART / "files" / "modelcatalog-default.yaml").read_text()) if d)
    if tools.kubectl("get", "modelcatalogs.greenmodel.dev", catalog["metadata"]["name"], check=False).returncode == 0:
        extra += ["--set", "defaultCatalog.enabled=false"]
    tools.timed("install --wait", tools.helm_, "install", RELEASE, str(CHART), "-n", operator_ns,
                "--wait", "--timeout", "180s", *extra, timeout=240)
    yield {"namespace": operator_ns, "sa": f"{RELEASE}-greenmodel-operator", "extra": extra}
    tools.helm_("uninstall", RELEASE, "-n", operator_ns, "--wait", check=False)


def test_install_admits_pod_under_restricted_pss(tools, release):
    ns = release["namespace"]
    pods = tools.get("pods", "-n", ns, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    assert len(pods) == 1
    assert pods[0]["status"]["phase"] == "Running"
    labels = tools.get("namespace", ns)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The default catalog came with the chart.
    assert tools.get("modelcatalogs.greenmodel.dev")["items"], "default ModelCatalog not installed"


def test_restricted_namespace_rejects_a_weakened_pod(tools, release):
    """The admission check is real: the same pod with privilege escalation allowed is refused."""
    ns = release["namespace"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "weak", "namespace": ns},
           "spec": {"containers": [{"name": "c", "image": "x", "securityContext": {"allowPrivilegeEscalation": True}}]}}
    proc = tools.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert proc.returncode != 0 and "violates PodSecurity" in proc.stderr


def sa_kubeconfig(tools, release, path: Path) -> Path:
    """A kubeconfig holding only a TokenRequest token of the chart's ServiceAccount."""
    token = tools.kubectl("create", "token", release["sa"], "-n", release["namespace"], "--duration=1h").stdout.strip()
    admin = json.loads(tools.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cl = admin["clusters"][0]["cluster"]
    cluster = {"server": cl["server"]}
    if cl.get("certificate-authority-data"):
        cluster["certificate-authority-data"] = cl["certificate-authority-data"]
    elif cl.get("certificate-authority"):
        cluster["certificate-authority-data"] = base64.b64encode(Path(cl["certificate-authority"]).read_bytes()).decode()
    elif cl.get("insecure-skip-tls-verify"):
        cluster["insecure-skip-tls-verify"] = True
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "sa",
           "clusters": [{"name": "local", "cluster": cluster}],
           "users": [{"name": "sa", "user": {"token": token}}],
           "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "sa"}}]}
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


def _health_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("health_lua", REPO / "tests" / "unit" / "test_health_lua.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def operator_does_its_job(tools, release_ns: str, sa: str, release_name: str, tenant_ns: str, tmp_path: Path,
                          namespaces: list[str], label: str) -> None:
    """Run `greenmodel run` locally with only the chart ServiceAccount's token and the chart's rendered config;
    apply the example GreenModel; expect children, Ready=True, an Event, and not one Forbidden in the log."""
    from test_reconciler_support import OperatorProcess

    kubeconfig = sa_kubeconfig(tools, {"sa": sa, "namespace": release_ns}, tmp_path / f"{label}.kubeconfig")
    who = tools.run(tools.kubectl_bin, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
                    env={**tools.env, "KUBECONFIG": str(kubeconfig)}).stdout
    assert who == f"system:serviceaccount:{release_ns}:{sa}"
    # The config the chart rendered, exactly as the pod would mount it.
    cm = tools.get("configmap", f"{release_name}-greenmodel-operator-config", "-n", release_ns)
    config = tmp_path / f"{label}-config.yaml"
    config.write_text(cm["data"]["config.yaml"])
    log = tmp_path / f"{label}-operator.log"
    op = OperatorProcess(str(kubeconfig), config, namespaces, log)
    op.start()
    try:
        gm = yaml.safe_load((REPO / "examples" / "greenmodel.yaml").read_text())
        gm["metadata"]["namespace"] = tenant_ns
        name = gm["metadata"]["name"]
        t0 = time.monotonic()
        tools.kubectl("apply", "-f", "-", input=json.dumps(gm))
        sel = f"app.kubernetes.io/instance={name},app.kubernetes.io/managed-by=greenmodel-operator"
        wait_until(lambda: tools.get("deployments", "-n", tenant_ns, "-l", sel)["items"], 90, "child Deployment")
        TIMINGS[f"{label}: apply -> Deployment"] = round(time.monotonic() - t0, 2)

        def ready():
            obj = tools.get("greenmodels.greenmodel.dev", name, "-n", tenant_ns)
            conds = {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}
            return conds.get("Ready") == "True" and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]

        wait_until(ready, 180, "GreenModel Ready=True")
        TIMINGS[f"{label}: apply -> Ready"] = round(time.monotonic() - t0, 2)
        pods = tools.get("pods", "-n", tenant_ns, "-l", sel)["items"]
        assert pods and all(p["status"]["phase"] == "Running" for p in pods), "serving pods admitted and running"
        assert tools.get("namespace", tenant_ns)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        # GitOps tools read the live object as intended: the Argo CD Lua check says Healthy, kstatus Current,
        # and the conditions follow the contract the fixtures of tests/unit/test_health_lua.py assume.
        health = _health_module()
        live = tools.get("greenmodels.greenmodel.dev", name, "-n", tenant_ns)
        assert health.argo_health(live)[0] == "Healthy"
        assert health.kstatus_compute(live) == "Current" and health.follows_contract(live)
        assert tools.get("services", "-n", tenant_ns, "-l", sel)["items"], "child Service"
        events = tools.get("events", "-n", tenant_ns, "--field-selector", f"involvedObject.name={name}")["items"]
        assert events, "the operator posted no Event (events create denied?)"
    finally:
        op.stop()
    text = log.read_text(errors="replace")
    # RBAC denials only ('... is forbidden: User "system:serviceaccount:..." cannot <verb> resource ...'); a 403
    # for writing into a namespace that is being deleted (another test's leftovers) is not about permissions.
    denied = [line for line in text.splitlines() if re.search(r'forbidden: User \\?"[^"\\]+\\?" cannot', line)]
    assert denied == [], "\n".join(denied[:20])


def test_operator_does_its_job_with_the_chart_service_account(tools, release, tenant_ns, tmp_path):
    # All namespaces, as the chart runs it by default (rbac.scope=cluster).
    operator_does_its_job(tools, release["namespace"], release["sa"], RELEASE, tenant_ns, tmp_path, [], "sa operator")


def test_namespaced_rbac_is_enough_for_a_namespaced_operator(tools, release, tmp_path):
    """rbac.scope=namespace: Roles only in the watched namespace (plus the cluster-wide reads of nodes, pods and
    catalogs); the operator started with --namespace does the same job under that ServiceAccount."""
    ns = f"gm-nsscope-{uuid.uuid4().hex[:6]}"
    tenant = f"gm-nstenant-{uuid.uuid4().hex[:6]}"
    for n in (ns, tenant):
        tools.kubectl("create", "namespace", n)
        tools.kubectl("label", "namespace", n, "pod-security.kubernetes.io/enforce=restricted")
    try:
        tools.timed("install --wait (rbac.scope=namespace)", tools.helm_, "install", RELEASE_NS_SCOPED, str(CHART), "-n", ns,
                    "--set", "rbac.scope=namespace", "--set", f"watchNamespaces={{{tenant}}}",
                    "--set", "rbac.aggregateToTenantRoles=false", "--set", "defaultCatalog.enabled=false",
                    "--wait", "--timeout", "180s", timeout=240)
        roles = tools.get("roles", "-A", "-l", f"app.kubernetes.io/instance={RELEASE_NS_SCOPED}")["items"]
        assert [r["metadata"]["namespace"] for r in roles] == [tenant]
        operator_does_its_job(tools, ns, f"{RELEASE_NS_SCOPED}-greenmodel-operator", RELEASE_NS_SCOPED, tenant, tmp_path, [tenant], "ns-scoped operator")
        # Outside its namespaces it can do nothing namespaced but list pods.
        sa = f"system:serviceaccount:{ns}:{RELEASE_NS_SCOPED}-greenmodel-operator"
        other = release["namespace"]
        for verb, res in (("get", "greenmodels.greenmodel.dev"), ("patch", "deployments.apps"), ("create", "events")):
            assert tools.kubectl("auth", "can-i", verb, res, "-n", other, f"--as={sa}", check=False).stdout.strip() == "no"
    finally:
        tools.helm_("uninstall", RELEASE_NS_SCOPED, "-n", ns, "--wait", check=False)
        for n in (ns, tenant):
            tools.kubectl("delete", "namespace", n, "--wait=false", check=False)


# --------------------------------------------------------------------------------------- RBAC matrix
def can_i_matrix(tools, release, tenant_ns) -> dict[str, list[str]]:
    subjects = {
        "operator": f"system:serviceaccount:{release['namespace']}:{release['sa']}",
        "tenant-view": "gm-tenant-viewer",
        "tenant-edit": "gm-tenant-editor",
    }
    scopes = {"tenant": ["-n", tenant_ns], "operator-ns": ["-n", release["namespace"]], "cluster": ["--all-namespaces"]}
    checks = []
    for key in MATRIX["checks"]:
        verb, resource, scope = key.split()
        resource, _, sub = resource.partition("/")
        extra = [f"--subresource={sub}"] if sub else []
        for subj in MATRIX["subjects"]:
            checks.append((key, subj, [tools.kubectl_bin, "auth", "can-i", verb, resource, *extra, *scopes[scope],
                                       f"--as={subjects[subj]}"]))

    def one(check):
        key, subj, args = check
        proc = tools.run(*args, check=False, timeout=60)
        answer = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()
        assert answer in ("yes", "no"), f"{' '.join(args)}: {proc.stdout} {proc.stderr}"
        return key, subj, answer

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, checks))
    table: dict[str, list[str]] = {}
    order = MATRIX["subjects"]
    for key, subj, answer in results:
        table.setdefault(key, ["?"] * len(order))[order.index(subj)] = answer
    return table


def test_rbac_matrix(tools, release, tenant_ns):
    for user, role in (("gm-tenant-viewer", "view"), ("gm-tenant-editor", "edit")):
        tools.kubectl("create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}", "-n", tenant_ns)
    # The built-in roles pick up the chart's rules through aggregation (kube-controller-manager).
    wait_until(lambda: tools.kubectl("auth", "can-i", "create", "greenmodels.greenmodel.dev", "-n", tenant_ns,
                                     "--as=gm-tenant-editor", check=False).stdout.strip() == "yes", 60,
               "aggregation of GreenModel rules into the edit role")
    t0 = time.monotonic()
    actual = can_i_matrix(tools, release, tenant_ns)
    TIMINGS["can-i matrix"] = round(time.monotonic() - t0, 2)
    # YAML reads yes/no as booleans; the table means kubectl's literal answers.
    expected = {k: ["yes" if a is True else "no" if a is False else a for a in v] for k, v in MATRIX["checks"].items()}
    diff = [f"{k}: expected {expected[k]} got {actual[k]}" for k in expected if actual[k] != expected[k]]
    assert diff == [], "RBAC differs from e2e/rbac-matrix.yaml (subjects " + ", ".join(MATRIX["subjects"]) + "):\n" + "\n".join(diff)


# ----------------------------------------------------------------------------------- upgrade, uninstall
def test_upgrade_recreates_the_pod_and_uninstall_removes_everything(tools, release):
    ns = release["namespace"]
    sel = f"app.kubernetes.io/instance={RELEASE}"
    before = {p["metadata"]["uid"] for p in tools.get("pods", "-n", ns, "-l", sel)["items"]}
    tools.timed("upgrade --wait", tools.helm_, "upgrade", RELEASE, str(CHART), "-n", ns, "--reuse-values",
                "--set", "config.reconcile.timerIntervalSeconds=45", "--wait", "--timeout", "180s", timeout=240)
    status = json.loads(tools.helm_("status", RELEASE, "-n", ns, "-o", "json").stdout)
    assert status["version"] == 2 and status["info"]["status"] == "deployed"
    cm = tools.get("configmap", f"{RELEASE}-greenmodel-operator-config", "-n", ns)
    assert yaml.safe_load(cm["data"]["config.yaml"])["reconcile"]["timerIntervalSeconds"] == 45
    # A config change rolls the pod (checksum annotation); Recreate leaves exactly one pod in the end.
    pods = wait_until(lambda: [p for p in tools.get("pods", "-n", ns, "-l", sel)["items"]
                               if not p["metadata"].get("deletionTimestamp")] or None, 60, "new operator pod")
    assert len(pods) == 1 and pods[0]["metadata"]["uid"] not in before
    dep = tools.get("deployment", f"{RELEASE}-greenmodel-operator", "-n", ns)
    assert dep["spec"]["strategy"]["type"] == "Recreate"

    tools.timed("uninstall --wait", tools.helm_, "uninstall", RELEASE, "-n", ns, "--wait")
    left = tools.kubectl("get", "deployments,services,configmaps,serviceaccounts,roles,rolebindings", "-n", ns,
                         "-l", sel, "-o", "name").stdout.split()
    assert left == []
    cluster_left = tools.kubectl("get", "clusterroles,clusterrolebindings", "-l", sel, "-o", "name").stdout.split()
    assert cluster_left == []
    # Helm never deletes CRDs (documented in docs/install.md): the API and any GreenModels stay.
    assert tools.kubectl("get", "crd", "greenmodels.greenmodel.dev", check=False).returncode == 0
