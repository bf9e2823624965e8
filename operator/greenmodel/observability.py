"""Metrics (greenmodel_*), Kubernetes Events and JSON logs: the operator's outward voice.

- Metrics: base units, ``_total`` only on counters, labels bounded by the number of objects
  (namespace/name series are removed when the GreenModel goes away).
- Events: CamelCase reasons, one line, numbers in the message; identical Warnings are not
  repeated within a suppression window, so an unsatisfiable spec does not spam the API.
- Logs: one JSON object per line, carrying the object reference (``object``: ns/name).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # no *_created series: they double the scrape for no use here
REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILE_TOTAL = Counter(
    "greenmodel_reconcile_total", "Reconcile passes by result (success, error).", ["result"], registry=REGISTRY)
RECONCILE_DURATION = Histogram(
    "greenmodel_reconcile_duration_seconds", "Wall time of one reconcile pass.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
DECISIONS_TOTAL = Counter(
    "greenmodel_decisions_total", "Decisions that changed something, by Event reason.", ["reason"],
    registry=REGISTRY)
CHILD_WRITES_TOTAL = Counter(
    "greenmodel_child_writes_total", "Writes to child objects (apply, delete) by kind.", ["kind", "verb"],
    registry=REGISTRY)
STATUS_WRITES_TOTAL = Counter(
    "greenmodel_status_writes_total", "Writes of GreenModel status.", registry=REGISTRY)
EVENTS_TOTAL = Counter(
    "greenmodel_events_total", "Kubernetes Events posted, by type.", ["type"], registry=REGISTRY)
API_REQUESTS_TOTAL = Counter(
    "greenmodel_kube_requests_total", "Requests to the Kubernetes API by the reconciler, by verb.", ["verb"],
    registry=REGISTRY)
API_REQUEST_SECONDS_TOTAL = Counter(
    "greenmodel_kube_request_seconds_total", "Wall time of the reconciler's Kubernetes API requests, by verb "
    "(divided by greenmodel_kube_requests_total: the mean latency).", ["verb"], registry=REGISTRY)
CARBON_REQUESTS_TOTAL = Counter(
    "greenmodel_carbon_requests_total",
    "Calls to carbon-intensity providers by zone, provider, call (latest, forecast), outcome (ok, rejected, "
    "failed) and reason (a fixed set, e.g. ProviderRateLimited, StaleReading).",
    ["zone", "provider", "call", "outcome", "reason"], registry=REGISTRY)
RECONCILES_IN_FLIGHT = Gauge(
    "greenmodel_reconciles_in_flight", "Reconcile passes running now.", registry=REGISTRY)
QUEUE_DEPTH = Gauge(
    "greenmodel_workqueue_depth", "GreenModels waiting for a reconcile pass.", registry=REGISTRY)
GREENMODELS = Gauge(
    "greenmodel_greenmodels", "GreenModels known to the operator.", registry=REGISTRY)
GRID_INTENSITY = Gauge(
    "greenmodel_grid_intensity_grams_per_kilowatt_hour", "Latest grid carbon intensity used, per region.",
    ["region"], registry=REGISTRY)
GRID_DATA_AGE = Gauge(
    "greenmodel_grid_data_age_seconds", "Age of the intensity reading used, per region.", ["region"],
    registry=REGISTRY)
REPLICAS = Gauge(
    "greenmodel_replicas", "Planned replicas per GreenModel.", ["namespace", "name"], registry=REGISTRY)
READY_REPLICAS = Gauge(
    "greenmodel_ready_replicas", "Ready serving pods per GreenModel.", ["namespace", "name"], registry=REGISTRY)
PREDICTED_GRAMS = Gauge(
    "greenmodel_predicted_grams_per_million_tokens",
    "Predicted grams CO2e per million output tokens of the chosen placement.", ["namespace", "name"],
    registry=REGISTRY)
PREDICTED_POWER = Gauge(
    "greenmodel_predicted_power_watts", "Predicted power of the chosen placement (incl. PUE).",
    ["namespace", "name"], registry=REGISTRY)
PREDICTED_GPU_POWER = Gauge(
    "greenmodel_predicted_gpu_power_watts",
    "Predicted GPU (IT) power of the chosen placement at the planned load, before PUE.", ["namespace", "name"],
    registry=REGISTRY)
MEASURED_GPU_POWER = Gauge(
    "greenmodel_measured_gpu_power_watts",
    "Measured GPU power of the serving pods (DCGM power, else the rate of Kepler GPU joules); absent when unknown.",
    ["namespace", "name"], registry=REGISTRY)
# Accounting counters: each accounted interval adds to them (they restart from 0 with the operator,
# as Prometheus counters do; status.emissions holds the totals that survive restarts).
ENERGY_JOULES_TOTAL = Counter(
    "greenmodel_energy_joules_total",
    "GPU (IT) energy accounted per GreenModel, by source (measured: DCGM/Kepler; estimated: the planner's model).",
    ["namespace", "name", "source"], registry=REGISTRY)
EMISSIONS_GRAMS_TOTAL = Counter(
    "greenmodel_emissions_grams_total",
    "gCO2e accounted per GreenModel by scope (2: location-based operational, energy x PUE x intensity; "
    "3: embodied share of the reserved GPUs).", ["namespace", "name", "scope"], registry=REGISTRY)
OUTPUT_TOKENS_TOTAL = Counter(
    "greenmodel_output_tokens_total",
    "Output tokens accounted per GreenModel (measured by vLLM when available, else the planned load).",
    ["namespace", "name"], registry=REGISTRY)

_PER_OBJECT = (REPLICAS, READY_REPLICAS, PREDICTED_GRAMS, PREDICTED_POWER, PREDICTED_GPU_POWER, MEASURED_GPU_POWER,
               OUTPUT_TOKENS_TOTAL)
# Per-object series with one more label, and its bounded values.
_PER_OBJECT_EXTRA = ((ENERGY_JOULES_TOTAL, ("measured", "estimated")), (EMISSIONS_GRAMS_TOTAL, ("2", "3")))


def forget_object(namespace: str, name: str) -> None:
    """Drop the per-GreenModel series of a deleted object (keeps label cardinality bounded)."""
    for metric in _PER_OBJECT:
        try:
            metric.remove(namespace, name)
        except KeyError:
            pass
    for metric, values in _PER_OBJECT_EXTRA:
        for v in values:
            try:
                metric.remove(namespace, name, v)
            except KeyError:
                pass


def record_accounted(namespace: str, name: str, interval) -> None:
    """Add one accounted interval (planning.accounting.Interval) to the per-GreenModel counters."""
    source = "measured" if interval.energy_source == "Measured" else "estimated"
    ENERGY_JOULES_TOTAL.labels(namespace, name, source).inc(interval.energy_kwh * 3.6e6)
    EMISSIONS_GRAMS_TOTAL.labels(namespace, name, "2").inc(interval.scope2_g)
    EMISSIONS_GRAMS_TOTAL.labels(namespace, name, "3").inc(interval.embodied_g)
    OUTPUT_TOKENS_TOTAL.labels(namespace, name).inc(interval.output_tokens)


def set_if(gauge: Gauge, value: float | None, *labels: str) -> None:
    """Unknown is not zero: a None removes the series instead of exporting 0."""
    if value is None:
        try:
            gauge.remove(*labels)
        except KeyError:
            pass
    else:
        gauge.labels(*labels).set(value)


# ---------------------------------------------------------------------------------------
# HTTP: /metrics and /healthz
class Health:
    """Liveness: the reconcile loop calls ``beat()``; stale beats make /healthz answer 503."""

    def __init__(self, max_age_seconds: float = 300.0):
        self.max_age = max_age_seconds
        self._last = time.monotonic()
        self.ready = False

    def beat(self) -> None:
        self._last = time.monotonic()

    def healthy(self) -> bool:
        return time.monotonic() - self._last <= self.max_age


def serve_http(port: int, health: Health, address: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start /metrics and /healthz on a daemon thread; returns the server (``.server_port``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, ctype, code = generate_latest(REGISTRY), CONTENT_TYPE_LATEST, 200
            elif path in ("/healthz", "/livez"):
                ok = health.healthy()
                body, ctype, code = (b"ok\n" if ok else b"stale\n"), "text/plain", (200 if ok else 503)
            elif path == "/readyz":
                ok = health.ready and health.healthy()
                body, ctype, code = (b"ok\n" if ok else b"not ready\n"), "text/plain", (200 if ok else 503)
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="greenmodel-http", daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------
# Events
def one_line(message: str, limit: int = 1000) -> str:
    """Events are single-line: collapse whitespace, cap the length."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_event(involved: dict, reason: str, message: str, type_: str = "Normal",
                now: datetime | None = None, instance: str | None = None) -> dict:
    """A core/v1 Event about ``involved`` (apiVersion, kind, name, namespace, uid)."""
    if not reason or not reason[0].isupper() or not reason.isalnum():
        raise ValueError(f"Event reason must be CamelCase alphanumerics, got {reason!r}")
    if type_ not in ("Normal", "Warning"):
        raise ValueError(f"Event type must be Normal or Warning, got {type_!r}")
    ts = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    stamp = ts.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    micro = ts.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{involved['name']}.{uuid.uuid4().hex[:16]}", "namespace": involved["namespace"]},
        "involvedObject": {k: involved[k] for k in ("apiVersion", "kind", "name", "namespace", "uid") if k in involved},
        "reason": reason,
        "message": one_line(message),
        "type": type_,
        "source": {"component": "greenmodel-operator"},
        "reportingComponent": "greenmodel.dev/operator",
        "reportingInstance": instance or socket.gethostname()[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": micro,
        "action": reason,
        "count": 1,
    }


class EventRecorder:
    """Posts Events; an identical (object, reason, message) is not repeated within ``suppress_seconds``."""

    def __init__(self, post: Callable[[dict], Any], suppress_seconds: float = 600.0,
                 clock: Callable[[], float] = time.monotonic):
        self._post = post
        self._suppress = suppress_seconds
        self._clock = clock
        self._seen: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()
        self.log = logging.getLogger("greenmodel.events")

    def record(self, involved: dict, reason: str, message: str, type_: str = "Normal") -> bool:
        key = (involved.get("uid", ""), reason, one_line(message))
        now = self._clock()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last < self._suppress:
                return False
            self._seen[key] = now
            if len(self._seen) > 10000:  # bounded memory
                cutoff = now - self._suppress
                self._seen = {k: v for k, v in self._seen.items() if v >= cutoff}
        event = build_event(involved, reason, message, type_)
        ref = f"{involved.get('namespace')}/{involved.get('name')}"
        self.log.info("%s %s: %s", type_, reason, event["message"],
                      extra={"k8s_ref": {"namespace": involved.get("namespace"), "name": involved.get("name"),
                                         "kind": involved.get("kind")}, "event_reason": reason})
        EVENTS_TOTAL.labels(type_).inc()
        try:
            self._post(event)
        except Exception as exc:  # noqa: BLE001 - an Event is best effort, never fail a pass for it
            self.log.warning("could not post Event %s for %s: %s", reason, ref, exc)
        return True


# ---------------------------------------------------------------------------------------
# JSON logs
class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``object`` carries the Kubernetes reference when known."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict) and ref.get("name"):
            doc["object"] = {k: ref.get(k) for k in ("kind", "namespace", "name") if ref.get(k)}
        reason = getattr(record, "event_reason", None)
        if reason:
            doc["reason"] = reason
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(level: str | int = "INFO", json_format: bool = True) -> None:
    """Root logging to stderr: JSON (default) or plain text."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else str(level).upper())
    for noisy in ("urllib3", "asyncio", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kopf logs every successful watch-event handler at INFO ("Handler ... succeeded"): one line
    # per pod/Deployment event is noise; its warnings and errors still show.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def object_logger(logger: logging.Logger, namespace: str, name: str, kind: str = "GreenModel") -> logging.LoggerAdapter:
    """A logger whose records carry the object reference (rendered as ``object`` in JSON)."""
    return logging.LoggerAdapter(logger, {"k8s_ref": {"kind": kind, "namespace": namespace, "name": name}})


def env_flag(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).lower() in ("1", "true", "yes", "on")


def record_carbon_outcome(outcome) -> None:
    """ZoneCache listener: count every provider call; log rejected or failed ones as warnings.

    Labels are bounded: zones and providers come from the operator's config, reasons from a fixed enum.
    """
    reason = outcome.reason.value if outcome.reason is not None else ""
    CARBON_REQUESTS_TOTAL.labels(outcome.zone, outcome.provider, outcome.call, outcome.kind, reason).inc()
    if outcome.kind != "ok":
        logging.getLogger("greenmodel.signals").warning(
            "carbon %s for zone %s from %s %s: %s (%s)", outcome.call, outcome.zone, outcome.provider,
            outcome.kind, reason, outcome.message)
