"""Workload simulator: vLLM-shaped and DCGM-shaped ``/metrics`` for the pods of GreenModels,
driven by real request arrivals from the Azure LLM inference traces (2023-11-16, CC-BY-4.0).

What is real and what is modelled:
- arrivals, prompt lengths and output lengths are the trace's, replayed at ``speed`` trace seconds
  per wall second (looping), split round-robin over the model's pods;
- latencies are *modelled*: TTFT = 40 ms + prompt_tokens / prefill_rate x (1 + running/64) plus
  queueing when more than ``max_batch`` requests are in flight; inter-token latency =
  itl_base x (1 + running/32); a request lasts TTFT + output_tokens x ITL;
- GPU power = idle + (max - idle) x min(1, running/32) per GPU; energy is its integral in mJ
  (as DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION).

Series are exposed with the labels Prometheus would attach in a cluster (``namespace``, ``pod``,
``app_kubernetes_io_instance`` for vLLM; ``namespace``, ``pod``, ``container``, ``gpu``, ``UUID``,
``modelName``, ``Hostname`` for DCGM), so scrape it with ``honor_labels: true``.

    python -m greenmodel.testing.workload --model demo/llama:meta-llama/Llama-3.1-8B-Instruct:2
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gzip
import hashlib
import heapq
import io
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
GPU_NAMES = {
    "NVIDIA-H100-80GB-HBM3": ("NVIDIA H100 80GB HBM3", 70.0, 700.0),
    "NVIDIA-A100-SXM4-80GB": ("NVIDIA A100-SXM4-80GB", 60.0, 400.0),
    "NVIDIA-L4": ("NVIDIA L4", 16.0, 72.0),
}


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def load_trace(name: str = "conversation") -> list[tuple[float, int, int]]:
    """(seconds since trace start, prompt tokens, output tokens). The full hour from
    $GREENMODEL_TRACES_DIR or ../shared/data/traces if present, else the packaged 10-minute excerpt."""
    candidates = []
    if os.environ.get("GREENMODEL_TRACES_DIR"):
        candidates.append(Path(os.environ["GREENMODEL_TRACES_DIR"]) / f"azure-llm-2023-{name}.csv")
    candidates.append(Path(__file__).resolve().parents[3].parent / "shared" / "data" / "traces" / f"azure-llm-2023-{name}.csv")
    text = None
    for c in candidates:
        if c.is_file():
            text = c.read_text(encoding="utf-8")
            break
    if text is None:
        ref = resources.files("greenmodel").joinpath("testing", "data", f"azure-llm-2023-{name}-10min.csv.gz")
        text = gzip.decompress(ref.read_bytes()).decode("utf-8")
    rows = []
    t0 = None
    for r in csv.DictReader(io.StringIO(text)):
        t = datetime.fromisoformat(r["TIMESTAMP"][:26]).timestamp()
        t0 = t if t0 is None else t0
        rows.append((t - t0, int(r["ContextTokens"]), int(r["GeneratedTokens"])))
    rows.sort()
    return rows


class _Hist:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        i = bisect.bisect_left(self.buckets, v)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += v
        self.count += 1

    def cumulative(self):
        acc, out = 0, []
        for b, c in zip(self.buckets, self.counts):
            acc += c
            out.append((repr(float(b)), acc))
        out.append(("+Inf", self.count))
        return out


@dataclass
class _Pod:
    name: str
    active: list = field(default_factory=list)  # heap of (end_time, prompt, output)
    prompt_tokens: int = 0
    generation_tokens: int = 0
    success: int = 0
    ttft: _Hist = field(default_factory=lambda: _Hist(TTFT_BUCKETS))
    itl: _Hist = field(default_factory=lambda: _Hist(ITL_BUCKETS))
    energy_mj: float = 0.0
    power_w: float = 0.0


@dataclass
class ServedModel:
    namespace: str
    instance: str
    model_name: str
    pods: int = 1
    gpus_per_pod: int = 1
    gpu_product: str = "NVIDIA-H100-80GB-HBM3"
    trace: str = "conversation"
    speed: float = 1.0  # trace seconds per wall second (2.0 doubles the arrival rate)
    prefill_tokens_per_second: float = 20000.0
    itl_base_seconds: float = 0.015
    max_batch: int = 128
    kv_capacity_tokens: int = 400_000
    emit_newer_itl: bool = True  # vllm:inter_token_latency_seconds (newer vLLM) besides time_per_output_token
    pod_names: list[str] | None = None  # real pod names (e2e); default: Deployment-style names

    def pod_name(self, i: int) -> str:
        """The i-th pod's name: from ``pod_names`` or, like a Deployment's pods,
        ``<instance>-<10 hex>-<10 chars>-<5 chars>``."""
        if self.pod_names and i < len(self.pod_names):
            return self.pod_names[i]
        h = hashlib.sha256(self.instance.encode()).hexdigest()
        return f"{self.instance}-{h[:10]}-{h[10:20]}-{i:05d}"


class WorkloadSimulator:
    def __init__(self, models: Iterable[ServedModel], *, clock: Callable[[], float] = time.time, host: str = "127.0.0.1",
                 port: int = 0, grid=None):
        """``grid``: an optional ``replay.GridReplay`` whose current values are also exposed as
        ``grid_carbon_intensity_grams_per_kilowatt_hour{zone=...}`` (for the Prometheus carbon provider)."""
        self._clock = clock
        self.grid = grid
        self._lock = threading.Lock()
        self._traces: dict[str, list] = {}
        self._state: dict[tuple[str, str], dict] = {}
        for m in models:
            self.add_model(m)
        sim = self

        class Collector:
            def collect(self):
                return sim._families()

        self.registry = CollectorRegistry()
        self.registry.register(Collector())

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so stop() really stops (no kept-alive scrapes)
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.split("?")[0] == "/metrics":
                    body = generate_latest(sim.registry) + sim._dcgm_text().encode()
                    self._reply(200, body, "text/plain; version=0.0.4; charset=utf-8")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    data = json.loads(self.rfile.read(n) or b"{}")
                    if self.path == "/__control__/model":
                        sim.set_model(data["namespace"], data["instance"], **{k: v for k, v in data.items() if k not in ("namespace", "instance")})
                        return self._reply(200, b'{"ok": true}', "application/json")
                except (ValueError, KeyError, TypeError) as exc:
                    return self._reply(400, json.dumps({"error": str(exc)}).encode(), "application/json")
                self._reply(404, b"{}", "application/json")

            def _reply(self, status, body, ctype):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True

    # ------------------------------------------------------------------ model management
    def add_model(self, m: ServedModel) -> None:
        if m.trace not in self._traces:
            self._traces[m.trace] = load_trace(m.trace)
        now = self._clock()
        with self._lock:
            self._state[(m.namespace, m.instance)] = {
                "model": m,
                "t0": now,
                "last": now,
                "cursor": 0,
                "loops": 0,
                "pods": [_Pod(m.pod_name(i)) for i in range(m.pods)],
                "rr": 0,
            }

    def set_model(self, namespace: str, instance: str, **changes) -> None:
        """Change pods, speed, etc. at run time (pods keep their counters; new ones start at zero)."""
        with self._lock:
            st = self._state[(namespace, instance)]
            self._advance(st, self._clock())
            m: ServedModel = st["model"]
            for k, v in changes.items():
                if not hasattr(m, k):
                    raise KeyError(k)
                setattr(m, k, v)
            if "pod_names" in changes and changes["pod_names"] is not None and "pods" not in changes:
                m.pods = len(changes["pod_names"])
            pods = st["pods"]
            while len(pods) < m.pods:
                pods.append(_Pod(m.pod_name(len(pods))))
            del pods[m.pods:]
            for i, pod in enumerate(pods):  # renamed pods keep their counters
                pod.name = m.pod_name(i)

    def remove_model(self, namespace: str, instance: str) -> None:
        with self._lock:
            self._state.pop((namespace, instance), None)

    # ------------------------------------------------------------------ simulation
    def _advance(self, st: dict, now: float) -> None:
        m: ServedModel = st["model"]
        trace = self._traces[m.trace]
        span = trace[-1][0] + 1.0
        last = st["last"]
        if now <= last or not st["pods"]:
            st["last"] = max(now, last)
            return
        # integrate power over (last, now] using the load at `last` (piecewise constant)
        for pod in st["pods"]:
            self._retire(pod, now)
        trace_now = (now - st["t0"]) * m.speed
        while True:
            t, prompt, out = trace[st["cursor"]]
            at = t + st["loops"] * span
            if at > trace_now:
                break
            wall = st["t0"] + at / m.speed
            pod = st["pods"][st["rr"] % len(st["pods"])]
            st["rr"] += 1
            self._retire(pod, wall)
            running = len(pod.active)
            queue_wait = 0.0
            if running >= m.max_batch:
                queue_wait = max(0.0, pod.active[0][0] - wall)
            ttft = 0.04 + prompt / m.prefill_tokens_per_second * (1 + running / 64) + queue_wait
            itl = m.itl_base_seconds * (1 + min(running, m.max_batch) / 32)
            pod.ttft.observe(ttft)
            if out > 1:
                pod.itl.observe(itl)
            pod.prompt_tokens += prompt
            heapq.heappush(pod.active, (wall + ttft + max(0, out - 1) * itl, prompt, out))
            st["cursor"] += 1
            if st["cursor"] >= len(trace):
                st["cursor"] = 0
                st["loops"] += 1
        dt = now - last
        _, idle, peak = GPU_NAMES.get(m.gpu_product, ("GPU", 70.0, 700.0))
        for pod in st["pods"]:
            running = len(pod.active)
            pod.power_w = idle + (peak - idle) * min(1.0, running / 32)
            pod.energy_mj += pod.power_w * dt * 1000.0
        st["last"] = now

    @staticmethod
    def _retire(pod: _Pod, until: float) -> None:
        while pod.active and pod.active[0][0] <= until:
            _, _, out = heapq.heappop(pod.active)
            pod.success += 1
            pod.generation_tokens += out

    def advance(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        with self._lock:
            for st in self._state.values():
                self._advance(st, now)

    # ------------------------------------------------------------------ exposition
    def _families(self):
        self.advance()
        lv = ["model_name", "engine", "namespace", "pod", "app_kubernetes_io_instance"]
        fam = {
            "succ": CounterMetricFamily("vllm:request_success", "Count of successfully processed requests.", labels=lv + ["finished_reason"]),
            "gen": CounterMetricFamily("vllm:generation_tokens", "Number of generation tokens processed.", labels=lv),
            "prompt": CounterMetricFamily("vllm:prompt_tokens", "Number of prefill tokens processed.", labels=lv),
            "run": GaugeMetricFamily("vllm:num_requests_running", "Number of requests in model execution batches.", labels=lv),
            "wait": GaugeMetricFamily("vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels=lv),
            "kv": GaugeMetricFamily("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels=lv),
            "ttft": HistogramMetricFamily("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labels=lv),
            "tpot": HistogramMetricFamily("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", labels=lv),
            "itl": HistogramMetricFamily("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", labels=lv),
        }
        with self._lock:
            for (ns, inst), st in self._state.items():
                m: ServedModel = st["model"]
                gpu_name = GPU_NAMES.get(m.gpu_product, (m.gpu_product, 0, 0))[0]
                for pi, pod in enumerate(st["pods"]):
                    labels = [m.model_name, "0", ns, pod.name, inst]
                    running = min(len(pod.active), m.max_batch)
                    waiting = max(0, len(pod.active) - m.max_batch)
                    fam["succ"].add_metric(labels + ["stop"], pod.success)
                    fam["gen"].add_metric(labels, pod.generation_tokens)
                    fam["prompt"].add_metric(labels, pod.prompt_tokens)
                    fam["run"].add_metric(labels, running)
                    fam["wait"].add_metric(labels, waiting)
                    kv_tokens = sum(p + o for _, p, o in pod.active[: m.max_batch])
                    fam["kv"].add_metric(labels, min(1.0, kv_tokens / m.kv_capacity_tokens))
                    fam["ttft"].add_metric(labels, pod.ttft.cumulative(), pod.ttft.sum)
                    fam["tpot"].add_metric(labels, pod.itl.cumulative(), pod.itl.sum)
                    if m.emit_newer_itl:
                        fam["itl"].add_metric(labels, pod.itl.cumulative(), pod.itl.sum)
        out = list(fam.values())
        if self.grid is not None:
            g = GaugeMetricFamily("grid_carbon_intensity_grams_per_kilowatt_hour",
                                  "Grid carbon intensity (lifecycle), replayed from the 2022 record.", labels=["zone"])
            for zone in self.grid.series:
                g.add_metric([zone], self.grid.value(zone))
            out.append(g)
        return out

    def _dcgm_text(self) -> str:
        """DCGM exporter series, written by hand: the exporter exposes the energy counter without
        the ``_total`` suffix that prometheus_client would add."""
        rows: dict[str, list[str]] = {"DCGM_FI_DEV_POWER_USAGE": [], "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": [], "DCGM_FI_DEV_GPU_UTIL": []}
        with self._lock:
            for (ns, inst), st in self._state.items():
                m: ServedModel = st["model"]
                gpu_name = GPU_NAMES.get(m.gpu_product, (m.gpu_product, 0, 0))[0]
                for pi, pod in enumerate(st["pods"]):
                    running = min(len(pod.active), m.max_batch)
                    for g in range(m.gpus_per_pod):
                        idx = pi * m.gpus_per_pod + g
                        labels = {
                            "gpu": str(g), "UUID": f"GPU-{inst}-{idx:04d}", "device": f"nvidia{g}", "modelName": gpu_name,
                            "Hostname": f"node-{inst}-{pi}", "container": "vllm", "namespace": ns, "pod": pod.name,
                        }
                        ls = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
                        rows["DCGM_FI_DEV_POWER_USAGE"].append(f"DCGM_FI_DEV_POWER_USAGE{{{ls}}} {pod.power_w:.3f}")
                        rows["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].append(f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{ls}}} {int(pod.energy_mj)}")
                        rows["DCGM_FI_DEV_GPU_UTIL"].append(f"DCGM_FI_DEV_GPU_UTIL{{{ls}}} {round(100 * min(1.0, running / 32))}")
        meta = {
            "DCGM_FI_DEV_POWER_USAGE": ("gauge", "Power draw (in W)."),
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("counter", "Total energy consumption since boot (in mJ)."),
            "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %)."),
        }
        out = []
        for name, lines in rows.items():
            out.append(f"# HELP {name} {meta[name][1]}")
            out.append(f"# TYPE {name} {meta[name][0]}")
            out.extend(lines)
        return "\n".join(out) + "\n"

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "WorkloadSimulator":
        threading.Thread(target=self._httpd.serve_forever, name="workload-sim", daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _parse_model(spec: str) -> ServedModel:
    """namespace/instance:model_name[:pods[:gpu_product]]"""
    head, *rest = spec.split(":", 1)
    ns, inst = head.split("/", 1)
    parts = rest[0].rsplit(":", 2) if rest else ["model"]
    model_name = parts[0]
    pods = int(parts[1]) if len(parts) > 1 else 1
    gpu = parts[2] if len(parts) > 2 else "NVIDIA-H100-80GB-HBM3"
    return ServedModel(ns, inst, model_name, pods=pods, gpu_product=gpu)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m greenmodel.testing.workload", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--model", action="append", default=[], help="namespace/instance:model_name[:pods[:gpu_product]] (repeatable)")
    p.add_argument("--speed", type=float, default=1.0, help="trace seconds per wall second")
    a = p.parse_args(argv)
    models = [_parse_model(s) for s in (a.model or ["default/demo:meta-llama/Llama-3.1-8B-Instruct:1"])]
    for m in models:
        m.speed = a.speed
    sim = WorkloadSimulator(models, port=a.port).start()
    print(sim.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
