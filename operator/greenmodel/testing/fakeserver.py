"""Base for the local provider servers: threaded HTTP on 127.0.0.1, request counting, fault modes.

Fault modes (``set_fault(mode, ...)`` in-process, or ``POST /__control__/fault`` with a JSON body
``{"mode": ..., "count": n|null, "retryAfter": s, "delay": s, "zone": z|null}`` from another process;
``GET /__control__/stats`` returns the request counts; ``POST /__control__/speed`` ``{"hoursPerSecond": x}``):

=============  ==============================================================================
``none``       normal answers
``http500``    HTTP 500 with a JSON error body
``http429``    HTTP 429 with ``Retry-After: <retryAfter>`` seconds
``timeout``    sleep ``delay`` seconds before answering normally (longer than the client's read timeout)
``malformed``  HTTP 200 with a truncated JSON body
``wrong_zone`` a well-formed answer for another zone/region
``stale``      a well-formed answer whose timestamp is one day old
``future``     a well-formed answer whose timestamp is one day ahead
``nan``        the value is ``NaN`` (a JSON extension Python's json accepts)
``negative``   the value is negated
``huge``       the value is 50,000 g/kWh
``redirect``   HTTP 302 to ``location`` (default ``http://169.254.169.254/latest/meta-data/``; never to be followed)
``oversize``   a 5 MiB body
=============  ==============================================================================

A fault lasts for ``count`` requests (``None``: until cleared) and applies to every zone or only
to ``zone``. Control requests are not counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .replay import GridReplay

FAULT_MODES = (
    "none",
    "http500",
    "http429",
    "timeout",
    "malformed",
    "wrong_zone",
    "stale",
    "future",
    "nan",
    "negative",
    "huge",
    "redirect",
    "oversize",
)
VALUE_FAULTS = ("nan", "negative", "huge")
TIME_FAULTS = ("stale", "future")


@dataclass
class Fault:
    mode: str = "none"
    count: int | None = None
    retry_after: int = 60
    delay: float = 30.0
    zone: str | None = None
    location: str = "http://169.254.169.254/latest/meta-data/"  # where a ``redirect`` points


class Answer(Exception):
    """Raise from a route to answer with a status and JSON body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


class FakeProviderServer:
    """Subclasses implement ``route(method, path, query, headers) -> (status, json_body)`` and use
    ``self.fault_for(zone)`` (the active fault for this request) to shape value/zone/time faults."""

    name = "fake"

    def __init__(self, replay: GridReplay | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.replay = replay or GridReplay()
        self._fault = Fault()
        self._stopped = False
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # "path zone" -> n
        self.paths: Counter[str] = Counter()
        # (time.monotonic(), path, zone) of every counted request, newest last (bounded)
        self.calls: deque[tuple[float, str, str | None]] = deque(maxlen=100_000)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_POST(self):
                server._handle(self, "POST")

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeProviderServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True  # kept-alive connections get closed instead of served
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ faults & stats
    def set_fault(self, mode: str = "none", *, count: int | None = None, retry_after: int = 60, delay: float = 30.0,
                  zone: str | None = None, location: str | None = None) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {', '.join(FAULT_MODES)}")
        with self._lock:
            self._fault = Fault(mode, count, retry_after, delay, zone, location or Fault.location)

    def clear_fault(self) -> None:
        self.set_fault("none")

    def _take_fault(self, zone: str | None) -> Fault:
        with self._lock:
            f = self._fault
            if f.mode == "none" or (f.zone is not None and zone is not None and f.zone != zone):
                return Fault()
            if f.count is not None:
                f.count -= 1
                if f.count <= 0:
                    self._fault = Fault()
            return Fault(f.mode, None, f.retry_after, f.delay, f.zone, f.location)

    def count(self, path: str | None = None, zone: str | None = None) -> int:
        with self._lock:
            return sum(
                n for k, n in self.requests.items()
                if (path is None or k.split(" ")[0] == path) and (zone is None or k.split(" ")[1] == zone)
            )

    def call_times(self, zone: str | None = None, since: float = 0.0) -> list[float]:
        """``time.monotonic()`` of each counted request (for ``zone``, at or after ``since``), oldest first."""
        with self._lock:
            return [t for t, _p, z in self.calls if t >= since and (zone is None or z == zone)]

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.paths.clear()
            self.calls.clear()

    # ------------------------------------------------------------------ to implement
    def zone_of(self, path: str, query: dict[str, str]) -> str | None:
        return query.get("zone")

    def route(self, method: str, path: str, query: dict[str, str], headers, fault: Fault) -> tuple[int, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ plumbing
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        if self._stopped:
            h.close_connection = True
            return
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path.startswith("/__control__/"):
            return self._control(h, method, parts.path)
        zone = self.zone_of(parts.path, query)
        with self._lock:
            self.requests[f"{parts.path} {zone}"] += 1
            self.paths[parts.path] += 1
            self.calls.append((time.monotonic(), parts.path, zone))
        fault = self._take_fault(zone)
        if fault.mode == "timeout":
            time.sleep(fault.delay)
        if fault.mode == "http500":
            return self._send(h, 500, {"error": "Internal Server Error (injected)"})
        if fault.mode == "http429":
            return self._send(h, 429, {"error": "Too Many Requests (injected)"}, {"Retry-After": str(fault.retry_after)})
        if fault.mode == "redirect":
            return self._send(h, 302, {"moved": True}, {"Location": fault.location})
        if fault.mode == "oversize":
            return self._send_raw(h, 200, b'{"pad": "' + b"x" * (5 << 20) + b'"}')
        try:
            status, body = self.route(method, parts.path, query, h.headers, fault)
        except Answer as a:
            return self._send(h, a.status, a.body, a.headers)
        if fault.mode == "malformed":
            text = json.dumps(body)
            return self._send_raw(h, status, text[: max(1, len(text) // 2)].encode())
        return self._send(h, status, body)

    def _control(self, h: BaseHTTPRequestHandler, method: str, path: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            data = json.loads(raw or b"{}")
            if path == "/__control__/fault" and method == "POST":
                self.set_fault(
                    data.get("mode", "none"), count=data.get("count"), retry_after=int(data.get("retryAfter", 60)),
                    delay=float(data.get("delay", 30.0)), zone=data.get("zone"), location=data.get("location"),
                )
                return self._send(h, 200, {"ok": True})
            if path == "/__control__/speed" and method == "POST":
                self.replay.set_speed(float(data["hoursPerSecond"]))
                return self._send(h, 200, {"ok": True})
            if path == "/__control__/stats":
                with self._lock:
                    return self._send(h, 200, {"requests": dict(self.requests), "paths": dict(self.paths),
                                               "gridTime": self.replay.grid_time().isoformat()})
        except (ValueError, KeyError, TypeError) as exc:
            return self._send(h, 400, {"error": str(exc)})
        return self._send(h, 404, {"error": "unknown control path"})

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(h, status, json.dumps(body).encode(), headers)

    def _send_raw(self, h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeouts, size caps): expected in fault tests


def shape_value(value: float, fault: Fault) -> float:
    if fault.mode == "nan":
        return float("nan")
    if fault.mode == "negative":
        return -abs(value) - 1
    if fault.mode == "huge":
        return 50000.0
    return value


def shift_time_seconds(fault: Fault) -> float:
    if fault.mode == "stale":
        return -86400.0
    if fault.mode == "future":
        return 86400.0
    return 0.0


def iso_ms(dt) -> str:
    """Electricity Maps style: 2019-05-21T00:00:00.000Z."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def serve_until_interrupted(srv) -> int:
    """The `python -m greenmodel.testing.<x>` entry: print the started server's URL, serve until Ctrl-C."""
    print(srv.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
    return 0
