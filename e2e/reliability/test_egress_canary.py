"""The operator connects only to addresses in its own configuration (issue 8, "Bad input and tenants").

The operator runs with an Electricity Maps provider at a local replay server that answers with
redirects to a canary listener (another loopback port), to 169.254.169.254 (cloud metadata), to a
10.x and a 192.168.x address; GreenModels try to carry URLs, other namespaces and Secret names.
Every ``connect()`` the operator process makes is recorded by a Python audit hook (installed through
a ``sitecustomize`` on its PYTHONPATH), and the canary counts accepted connections. Pass: the canary
saw nothing, and every recorded connection went to the API server or the configured provider.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

import pytest
import yaml

from greenmodel.cli.demo import REGIONS, operator_config
from greenmodel.kube import client as kc
from greenmodel.testing.electricitymaps import ElectricityMapsServer
from greenmodel.testing.replay import GridReplay

from test_reconciler import api, example_greenmodel, gm_apply, gm_get, is_ready, record  # noqa: F401
from test_reconciler_support import OperatorProcess, condition, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AUDIT_HOOK = '''
import json, os, sys
_out = os.environ.get("GREENMODEL_CONNECT_LOG")
def _hook(event, args):
    if event == "socket.connect" and _out:
        addr = args[1]
        if isinstance(addr, tuple):
            with open(_out, "a") as f:
                f.write(json.dumps([str(addr[0]), int(addr[1])]) + "\\n")
if _out:
    sys.addaudithook(_hook)
'''


class Canary:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def test_no_connection_leaves_for_an_address_outside_the_configuration(cluster, api, namespace, tmp_path):  # noqa: F811
    canary = Canary()
    replay = GridReplay(tuple(REGIONS.values()), start="2022-10-06T18:00:00Z", hours_per_second=0.5)
    server = ElectricityMapsServer(replay, token="canary-token").start()
    hook_dir = tmp_path / "hook"
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(AUDIT_HOOK)
    connect_log = tmp_path / "connects.jsonl"
    cfg = operator_config(server.url)
    cfg["reconcile"]["timerIntervalSeconds"] = 2
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    op = OperatorProcess(cluster.kubeconfig, config, [namespace], tmp_path / "operator.log",
                         extra_env={"GREENMODEL_DEMO_TOKEN": "canary-token", "PYTHONPATH": str(hook_dir),
                                    "GREENMODEL_CONNECT_LOG": str(connect_log)}).start()
    try:
        # Tenants try to smuggle a URL, another namespace and a Secret into a GreenModel: server-side apply
        # and strict field validation reject them at admission; without validation the schema prunes them.
        base = example_greenmodel("sneaky", load={"outputTokensPerSecond": 50}, maxReplicas=1)
        smuggled = json.loads(json.dumps(base))
        smuggled["metadata"]["namespace"] = namespace
        smuggled["spec"]["carbon"]["providerUrl"] = f"http://127.0.0.1:{canary.port}/"
        smuggled["spec"]["model"]["namespace"] = "kube-system"
        smuggled["spec"]["model"]["credentialsSecretRef"] = {"name": "greenmodel-carbon", "namespace": "greenmodel-system"}
        strict = cluster.kubectl("apply", "--server-side", "--validate=strict", "-f", "-",
                                 input=json.dumps(smuggled), check=False)
        assert strict.returncode != 0, strict.stdout
        assert "unknown field" in strict.stderr or "field not declared in schema" in strict.stderr, strict.stderr
        # (the API server names the first undeclared fields it finds, not always all three)
        assert sum(f in strict.stderr for f in ("providerUrl", ".spec.model.namespace", "credentialsSecretRef")) >= 2
        # Server-side apply always refuses undeclared fields; a plain create without validation is pruned.
        lax = cluster.kubectl("create", "--validate=false", "-f", "-", input=json.dumps(smuggled), check=False)
        assert lax.returncode == 0, lax.stderr
        stored = gm_get(api, namespace, "sneaky")
        assert "providerUrl" not in stored["spec"]["carbon"]
        assert "namespace" not in stored["spec"]["model"] and "credentialsSecretRef" not in stored["spec"]["model"]
        wait_for(lambda: is_ready(gm_get(api, namespace, "sneaky")), 60, "sneaky Ready", on_fail=op.tail)

        # The provider turns hostile: redirects to the canary, to metadata, to private ranges.
        targets = [f"http://127.0.0.1:{canary.port}/steal", f"http://localhost:{canary.port}/steal",
                   "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/", "http://192.168.1.1/"]
        t0 = time.monotonic()
        for target in targets:
            server.set_fault("redirect", location=target)
            before = sum(server.requests.values())
            wait_for(lambda: sum(server.requests.values()) > before + 1, 30, f"the operator calling the provider ({target})",
                     interval=0.2, on_fail=op.tail)
        server.clear_fault()

        def refused_said():
            g = gm_get(api, namespace, "sneaky")
            c = condition(g, "CarbonDataAvailable")
            return c if c and "redirect" in c["message"].lower() else None

        # The refusal is visible (the condition names it while the redirects last, or the log does).
        said = refused_said() is not None or "RedirectRefused" in op.log_path.read_text()
        assert said, op.tail()
        time.sleep(1.0)
        assert canary.accepted == 0, f"the canary accepted {canary.accepted} connection(s)"
        api_port = int(cluster.server.rsplit(":", 1)[1])
        allowed = {("127.0.0.1", api_port), ("127.0.0.1", server.port)}
        seen = [tuple(json.loads(line)) for line in connect_log.read_text().splitlines()]
        assert seen, "the audit hook recorded nothing: is it installed?"
        outside = sorted({a for a in seen if (a[0].removeprefix("::ffff:"), a[1]) not in allowed
                          and not (a[1] == op.port)})
        record("egress_canary", redirects=len(targets), provider_requests=sum(server.requests.values()),
               connects_recorded=len(seen), distinct_destinations=sorted({f"{a}:{p}" for a, p in seen}),
               canary_accepts=canary.accepted, outside_configuration=outside,
               seconds=round(time.monotonic() - t0, 1))
        assert not outside, f"connections outside the configuration: {outside}"
    finally:
        op.stop()
        server.stop()
        canary.sock.close()
