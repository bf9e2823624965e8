"""The shipped scrape configuration finds a serving pod's vLLM /metrics, and the operator reads them back.

A REAL Prometheus (3.16, built by `e2e/cluster.sh build` from the Go module proxy with Kubernetes discovery,
which Debian's package leaves out) runs the chart's plain scrape job (charts/greenmodel-operator/files/
prometheus-serving-scrape.yaml, unchanged except where it reaches the API server) with Kubernetes service
discovery against the local control plane. Kwok gives pods the IPs of their node's podCIDR; the test's node has
127.77.0.0/24, so the serving pod's IP is a loopback address this machine can listen on, and a vLLM-shaped
endpoint does so at <pod IP>:8000 with only the labels vLLM itself exposes (model_name, engine). Everything
else, namespace, pod and the GreenModel's name, must come from the shipped relabelling, or the operator's
queries find nothing: the test asserts MetricsAvailable=True and status.measured from those series.
"""

from __future__ import annotations

import base64
import copy
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from greenmodel.kube import client as kc
from greenmodel.testing import kwok
from greenmodel.testing.ci import require
from greenmodel.testing.prometheus import PrometheusProcess, find_prometheus_with_kubernetes_sd

from test_reconciler import api  # noqa: F401  (module fixture: CRDs + default catalog)
from test_reconciler import children, example_greenmodel, gm_apply, gm_get, record, wait_ready
from test_reconciler_support import REPO, OperatorProcess, condition, wait_for, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCRAPE_JOB = REPO / "charts" / "greenmodel-operator" / "files" / "prometheus-serving-scrape.yaml"
NODE = f"e2e-metrics-loopback-{kwok.fresh_suffix()}"  # never a name used before: see greenmodel.testing.kwok
PRODUCT, POD_CIDR = "E2E-METRICS-GPU", "127.77.0.0/24"
TOKENS_PER_SECOND = 120.0  # what the fake engine's generation counter grows by


class VLLMShapedMetrics(BaseHTTPRequestHandler):
    """vLLM's own exposition (v1 engine names), labelled as vLLM labels them: no namespace, no pod."""

    started = time.monotonic()

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path != "/metrics":
            self.send_response(404)
            self.end_headers()
            return
        t = time.monotonic() - self.started
        lab = 'model_name="probe",engine="0"'
        body = "\n".join([
            "# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{{{lab}}} 3",
            "# TYPE vllm:num_requests_waiting gauge", f"vllm:num_requests_waiting{{{lab}}} 0",
            "# TYPE vllm:kv_cache_usage_perc gauge", f"vllm:kv_cache_usage_perc{{{lab}}} 0.25",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{lab}}} {TOKENS_PER_SECOND * t:.1f}",
            "# TYPE vllm:request_success_total counter",
            f'vllm:request_success_total{{{lab},finished_reason="stop"}} {TOKENS_PER_SECOND * t / 200:.2f}',
            "# TYPE vllm:inter_token_latency_seconds histogram",
            *(f'vllm:inter_token_latency_seconds_bucket{{{lab},le="{le}"}} {TOKENS_PER_SECOND * t * f:.1f}'
              for le, f in (("0.01", 0.0), ("0.025", 0.5), ("0.05", 1.0), ("+Inf", 1.0))),
            f"vllm:inter_token_latency_seconds_count{{{lab}}} {TOKENS_PER_SECOND * t:.1f}",
            f"vllm:inter_token_latency_seconds_sum{{{lab}}} {TOKENS_PER_SECOND * t * 0.025:.3f}",
        ]) + "\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):  # quiet
        pass


def c_ok(g: dict) -> bool:
    c = condition(g, "MetricsAvailable") or {}
    return c.get("status") == "True" and c.get("reason") == "Available"


def _probe_catalog() -> dict:
    return {"apiVersion": "greenmodel.dev/v1alpha1", "kind": "ModelCatalog", "metadata": {"name": "e2e-metrics"},
            "spec": {"gpus": [{"product": PRODUCT, "memoryGiB": 80, "idleWatts": 50, "maxWatts": 300}],
                     "variants": [{"name": "probe-bf16", "family": "probe", "modelId": "org/probe",
                                   "parametersBillions": 1, "weightMemoryGiB": 2, "quality": {"MMLU": 50},
                                   "profiles": [{"gpuProduct": PRODUCT, "prefillTokensPerSecond": 50000,
                                                 "batch": [{"maxBatchSize": 16, "outputTokensPerSecond": 800,
                                                            "interTokenP95Milliseconds": 20, "powerWatts": 200}]}]}]}}


def _node() -> dict:
    alloc = {"cpu": "16", "memory": "128Gi", "ephemeral-storage": "1Ti", "pods": "20", "nvidia.com/gpu": "1"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"type": "kwok", "greenmodel.dev/simulated": "true",
                                    "topology.kubernetes.io/region": "europe-west2",
                                    "topology.kubernetes.io/zone": "europe-west2-a",
                                    "nvidia.com/gpu.product": PRODUCT, "nvidia.com/gpu.present": "true",
                                    "nvidia.com/gpu.count": "1"}},
            "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
            "status": {"allocatable": alloc, "capacity": alloc}}


def _discovery(kubeconfig: str, workdir) -> dict:
    """How this Prometheus reaches the local API server (in a cluster: its ServiceAccount, the shipped job's
    default): the admin kubeconfig's server and client certificate."""
    kc_ = yaml.safe_load(open(kubeconfig).read())
    cluster, user = kc_["clusters"][0]["cluster"], kc_["users"][0]["user"]
    files = {}
    for key, name in (("certificate-authority-data", "ca.crt"), ("client-certificate-data", "client.crt"),
                      ("client-key-data", "client.key")):
        src = cluster if key.startswith("certificate-authority") else user
        path = workdir / name
        path.write_bytes(base64.b64decode(src[key]))
        files[name] = str(path)
    return {"api_server": cluster["server"],
            "tls_config": {"ca_file": files["ca.crt"], "cert_file": files["client.crt"], "key_file": files["client.key"]}}


def test_shipped_scrape_job_feeds_the_operators_queries(cluster, api, namespace, tmp_path):  # noqa: F811
    binary = require(find_prometheus_with_kubernetes_sd(),
                     "prometheus with Kubernetes discovery not built (e2e/cluster.sh build prometheus)")
    cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(_node()))
    api.apply(kc.MODELCATALOGS, _probe_catalog(), field_manager="e2e-user")
    job = yaml.safe_load(SCRAPE_JOB.read_text())
    job["scrape_interval"] = "1s"
    job["scrape_timeout"] = "1s"
    (tmp_path / "prom").mkdir()
    job["kubernetes_sd_configs"] = [dict(job["kubernetes_sd_configs"][0], namespaces={"names": [namespace]},
                                         **_discovery(cluster.kubeconfig, tmp_path))]
    prom = PrometheusProcess([], scrape_configs=[job], workdir=tmp_path / "prom", binary=binary).start()
    server = op = None
    try:
        cfg_path = write_config(tmp_path / "operator-config.yaml", interval=2.0)
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["prometheus"] = {"url": prom.url, "rateWindow": "10s", "refreshIntervalSeconds": 1,
                             "queryTimeoutSeconds": 2}
        cfg.setdefault("network", {})["allowInsecureHttpHosts"] = ["127.0.0.1"]
        cfg_path.write_text(yaml.safe_dump(cfg))
        op = OperatorProcess(cluster.kubeconfig, cfg_path, [namespace], tmp_path / "operator.log").start()
        gm = example_greenmodel("chat")
        gm["spec"] = {"model": {"family": "probe", "catalogName": "e2e-metrics"},
                      "latency": {"ttftP95Milliseconds": 2000, "interTokenP95Milliseconds": 100},
                      "load": {"outputTokensPerSecond": 100}, "maxReplicas": 1}
        gm_apply(api, namespace, gm)
        wait_ready(api, namespace, "chat", op=op)
        pod = children(api, namespace, "chat")["pods"][0]
        ip = pod["status"]["podIP"]
        assert ip.startswith("127.77.0."), ip
        port = next(p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "http")
        server = ThreadingHTTPServer((ip, port), VLLMShapedMetrics)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        t0 = time.monotonic()
        # The series carry the labels the relabelling gave them: the GreenModel's name and its pod.
        prom.wait_for_series(f'vllm:num_requests_running{{namespace="{namespace}",app_kubernetes_io_instance="chat",'
                             f'pod="{pod["metadata"]["name"]}"}}', timeout=60)
        t_scraped = time.monotonic() - t0

        def measured():
            g = gm_get(api, namespace, "chat") or {}
            m = (g.get("status") or {}).get("measured") or {}
            c = condition(g, "MetricsAvailable") or {}
            # Prometheus underestimates a rate while the series is younger than its window: wait for the steady
            # figure (status.measured is rewritten when a figure moves by more than a quarter).
            tps = m.get("outputTokensPerSecond") or 0
            return g if (c.get("status") == "True" and m.get("pods") == 1
                         and 0.75 * TOKENS_PER_SECOND <= tps <= 1.25 * TOKENS_PER_SECOND) else None

        g = wait_for(measured, 60, "MetricsAvailable=True and status.measured from the scraped pod",
                     on_fail=lambda: yaml.safe_dump((gm_get(api, namespace, "chat") or {}).get("status"))[:3000]
                     + "\n" + op.tail())
        m = g["status"]["measured"]
        assert c_ok(g) and m["interTokenP95Milliseconds"] <= 50, m  # every token within the 50 ms bucket
        record("shipped_scrape_job", scraped_after_seconds=round(t_scraped, 1),
               measured_after_seconds=round(time.monotonic() - t0, 1), output_tokens_per_second=m["outputTokensPerSecond"])
    finally:
        if server is not None:
            server.shutdown()
        if op is not None:
            op.stop()
        prom.close()
        cluster.kubectl("delete", "node", NODE, "--ignore-not-found", "--wait=false", check=False)
        api.delete(kc.MODELCATALOGS, "e2e-metrics")
