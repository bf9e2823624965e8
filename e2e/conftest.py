"""pytest fixtures for end-to-end tests against the local control plane of e2e/cluster.sh.

Fixtures (other e2e tests depend on these names):

- ``cluster`` (session): brings the cluster up once (``e2e/cluster.sh up``, idempotent; reuses one that is up)
  and returns a :class:`Cluster` with
    ``.kubeconfig``  path of the admin (system:masters, client-certificate) kubeconfig
    ``.env``         dict: os.environ + KUBECONFIG + PATH with the built kubectl/helm first (for subprocesses)
    ``.bin_dir``     directory of the built kubectl, kube-apiserver, ...; ``.helm_bin`` path of the built helm
    ``.state_dir``   the cluster's state directory (pki/, logs/, pids/)
    ``.log_paths``   {component: log file} for etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
    ``.kubectl(*args, input=None, check=True, timeout=60)`` -> subprocess.CompletedProcess (text, captured)
    ``.helm(*args, ...)`` the same for helm
    ``.server``      https://127.0.0.1:<port>; ``.ca_file`` the cluster CA (for token-based clients)
    ``.topology``    the parsed topology file the nodes were created from
- ``k8s`` (session): a ``kubernetes.client.ApiClient`` configured for the admin user.
- ``namespace`` (function): a fresh namespace (name starts with ``e2e-``) whose ``default`` ServiceAccount exists;
  deleted after the test (without waiting).

Only tests that use these fixtures start the cluster; unit tests in tests/ never do. Mark e2e tests
``@pytest.mark.e2e``. If the cluster cannot come up (binaries not built, a component failing), the tests fail
under CI=true and are skipped otherwise, with the reason. A failing e2e test's report gets the last lines of
every component log. The cluster is left running after the session (the next one reuses it in ~1 s); set
GREENMODEL_CLUSTER_TEARDOWN=1 to run ``e2e/cluster.sh down`` at the end of a session that started it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from greenmodel.testing.ci import require

E2E_DIR = Path(__file__).resolve().parent
CLUSTER_SH = E2E_DIR / "cluster.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
LOG_TAIL_LINES = 30
_STASH_CLUSTER = pytest.StashKey["Cluster"]()


@dataclass
class Cluster:
    kubeconfig: str
    env: dict[str, str]
    bin_dir: str
    helm_bin: str
    state_dir: str
    server: str
    ca_file: str
    topology: dict
    log_paths: dict[str, str] = field(default_factory=dict)

    def _run(self, argv: list[str], input: str | None, check: bool, timeout: float) -> subprocess.CompletedProcess:
        p = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{shlex.join(argv)} exited {p.returncode}:\n{p.stderr}{p.stdout}")
        return p

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return self._run([os.path.join(self.bin_dir, "kubectl"), *args], input, check, timeout)

    def helm(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return self._run([self.helm_bin, *args], input, check, timeout)


def _state_dir() -> Path:
    return Path(os.environ.get("GREENMODEL_CLUSTER_DIR", "/tmp/greenmodel-cluster"))


def _log_paths(state: Path) -> dict[str, str]:
    return {c: str(state / "logs" / f"{c}.log") for c in COMPONENTS}


def _tail(path: str, n: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"(no log: {e})"


def _parse_env(text: str) -> dict[str, str]:
    """The `export K=V` lines of `e2e/cluster.sh env`, with "$PATH" expanded from this process."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^export ([A-Z_]+)=(.*)$", line.strip())
        if m:
            value = "".join(shlex.split(m.group(2).replace('"$PATH"', shlex.quote(os.environ.get("PATH", "")))))
            out[m.group(1)] = value
    return out


def _cannot_start(msg: str) -> None:
    require(False, f"local cluster unavailable: {msg}")


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    state = _state_dir()
    env = dict(os.environ, GREENMODEL_NO_BUILD=os.environ.get("GREENMODEL_NO_BUILD", "1"))
    was_up = (state / "pids" / "kube-apiserver.pid").exists()
    t0 = time.monotonic()
    try:
        up = subprocess.run([str(CLUSTER_SH), "up"], capture_output=True, text=True, env=env, timeout=900)
    except subprocess.TimeoutExpired:
        _cannot_start("e2e/cluster.sh up did not finish within 900 s")
    if up.returncode != 0:
        _cannot_start(f"e2e/cluster.sh up exited {up.returncode}:\n{up.stderr[-6000:]}")
    exports = _parse_env(subprocess.run([str(CLUSTER_SH), "env"], capture_output=True, text=True, check=True).stdout)
    kubectl_dir = exports["PATH"].split(":")[0]
    helm_dir = exports["PATH"].split(":")[1]
    kubeconfig = exports["KUBECONFIG"]
    server = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    topo_path = os.environ.get("GREENMODEL_TOPOLOGY", str(E2E_DIR / "topology.yaml"))
    c = Cluster(
        kubeconfig=kubeconfig,
        env={**os.environ, **exports},
        bin_dir=kubectl_dir,
        helm_bin=os.path.join(helm_dir, "helm"),
        state_dir=exports.get("GREENMODEL_CLUSTER_DIR", str(state)),
        server=server,
        ca_file=str(Path(exports.get("GREENMODEL_CLUSTER_DIR", str(state))) / "pki" / "ca.crt"),
        topology=yaml.safe_load(Path(topo_path).read_text()),
        log_paths=_log_paths(Path(exports.get("GREENMODEL_CLUSTER_DIR", str(state)))),
    )
    request.config.stash[_STASH_CLUSTER] = c
    print(f"\ncluster: {'reused' if was_up else 'started'} in {time.monotonic() - t0:.1f}s, {server}")
    yield c
    if not was_up and os.environ.get("GREENMODEL_CLUSTER_TEARDOWN") == "1":
        subprocess.run([str(CLUSTER_SH), "down"], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def k8s(cluster: Cluster):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    yield api
    api.close()


def _ns_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", nodeid.split("::")[-1].lower()).strip("-")[:40].strip("-")
    return f"e2e-{base}-{uuid.uuid4().hex[:5]}"


def _simulated_nodes_not_ready(core) -> list[str]:
    """The topology's nodes whose Ready condition is not True, each with its lease's last renewal."""
    from kubernetes import client

    leases = {ls.metadata.name: ls.spec.renew_time for ls in
              client.CoordinationV1Api(core.api_client).list_namespaced_lease("kube-node-lease").items}
    out = []
    for n in core.list_node(label_selector="greenmodel.dev/simulated=true").items:
        ready = next((c for c in n.status.conditions or [] if c.type == "Ready"), None)
        if ready is None or ready.status != "True":
            out.append(f"{n.metadata.name}: Ready={ready.status if ready else None} ({ready.reason if ready else ''}), "
                       f"lease renewed {leases.get(n.metadata.name)}")
    return out


@pytest.fixture
def namespace(request: pytest.FixtureRequest, cluster: Cluster, k8s) -> str:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    if request.node.get_closest_marker("e2e") is None:
        pytest.fail("tests using the cluster fixtures must be marked @pytest.mark.e2e", pytrace=False)
    core = client.CoreV1Api(k8s)
    # Every test needs the simulated nodes Ready; when kwok stops renewing their leases (see
    # greenmodel.testing.kwok) every later test fails in its own way, so say it once, plainly.
    deadline = time.monotonic() + 30
    while (not_ready := _simulated_nodes_not_ready(core)) and time.monotonic() < deadline:
        time.sleep(1)
    if not_ready:
        pytest.fail("simulated nodes not Ready before the test (kwok renews their leases; its log: "
                    f"{cluster.log_paths.get('kwok')}):\n  " + "\n  ".join(not_ready), pytrace=False)
    name = _ns_name(request.node.nodeid)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={"greenmodel.dev/e2e": "true"})))
    # Pods are rejected until the controller-manager has created the namespace's default ServiceAccount.
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield name
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as e:
        if e.status != 404:
            raise


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or item.get_closest_marker("e2e") is None:
        return
    c = item.config.stash.get(_STASH_CLUSTER, None)
    paths = c.log_paths if c else _log_paths(_state_dir())
    for component, path in paths.items():
        report.sections.append((f"{component} log (last {LOG_TAIL_LINES} lines of {path})", _tail(path)))
