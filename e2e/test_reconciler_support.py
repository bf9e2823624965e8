"""Helpers for the reconciler e2e tests: start `greenmodel run` as a user would, read state.

(No tests here; the module name keeps it in the reconciler's own files.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parents[1]
GREENMODEL_BIN = Path(sys.executable).parent / "greenmodel"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, *, intensities: dict[str, float] | None = None, interval: float = 5.0) -> Path:
    """The shipped example config, with the static intensities and timer interval changed."""
    cfg = yaml.safe_load((REPO / "examples" / "operator-config.yaml").read_text())
    if intensities:
        cfg["carbon"]["providers"]["static"]["gramsPerKilowattHour"].update(intensities)
    cfg["reconcile"]["timerIntervalSeconds"] = interval
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(cfg))
    os.replace(tmp, path)  # atomic, like a ConfigMap symlink swap
    return path


class OperatorProcess:
    """`greenmodel run --config FILE --namespace NS` as a subprocess with the cluster's KUBECONFIG."""

    def __init__(self, kubeconfig: str, config: Path, namespaces: list[str], log_path: Path,
                 extra_env: dict[str, str] | None = None):
        self.kubeconfig = kubeconfig
        self.config = config
        self.namespaces = namespaces
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.extra_env = extra_env or {}

    def start(self) -> "OperatorProcess":
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, **self.extra_env}
        args = [str(GREENMODEL_BIN), "run", "--config", str(self.config), "--metrics-port", str(self.port)]
        for ns in self.namespaces:
            args += ["--namespace", ns]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        wait_for(lambda: self.healthy(), timeout=60, what="operator /healthz",
                 on_fail=lambda: self.tail())
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status == 200
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        """Flat {'name{labels}': value} of the operator's /metrics."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def metric_sum(self, prefix: str) -> float:
        return sum(v for k, v in self.metrics().items() if k == prefix or k.startswith(prefix + "{"))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> int | None:
        self.kill(signal.SIGTERM)
        if self.proc:
            rc = self.proc.returncode
            self._log.close()
            return rc
        return None

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.25,
             on_fail: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - transient API errors while polling
            last_exc = exc
        time.sleep(interval)
    extra = on_fail() if on_fail else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_exc})\n{extra}")


def kubectl_json(cluster, *args: str) -> dict:
    out = cluster.kubectl(*args, "-o", "json")
    text = out if isinstance(out, str) else getattr(out, "stdout", out)
    return json.loads(text)


def condition(obj: dict, type_: str) -> dict | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


class ReadyPodWatcher(threading.Thread):
    """Samples the number of Ready serving pods of a GreenModel every ``period`` seconds."""

    def __init__(self, list_pods: Callable[[], list[dict]], period: float = 0.2):
        super().__init__(daemon=True)
        self.list_pods = list_pods
        self.period = period
        self.samples: list[tuple[float, int]] = []
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                pods = self.list_pods()
                ready = sum(1 for p in pods if not p["metadata"].get("deletionTimestamp")
                            and (p.get("status") or {}).get("phase") == "Running"
                            and any(c.get("type") == "Ready" and c.get("status") == "True"
                                    for c in (p.get("status") or {}).get("conditions") or []))
                self.samples.append((time.monotonic(), ready))
            except Exception:  # noqa: BLE001
                self.errors += 1
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
