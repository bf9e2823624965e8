"""Run a real Prometheus server (the Debian `prometheus` binary) on 127.0.0.1 with a temporary
storage directory, scraping given targets every ``scrape_interval``. Used by adapter tests, e2e and
the demo. Can be stopped and started again on the same port and storage (outage tests).

    python -m greenmodel.testing.prometheus --target 127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterable

import yaml


def find_prometheus() -> str | None:
    return os.environ.get("GREENMODEL_PROMETHEUS_BIN") or shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None
    )


def find_prometheus_with_kubernetes_sd() -> str | None:
    """The Prometheus that `e2e/cluster.sh build` makes from the Go module proxy, with Kubernetes service
    discovery (Debian's package has none): $GREENMODEL_PROMETHEUS_K8S_BIN, else the newest one built."""
    if os.environ.get("GREENMODEL_PROMETHEUS_K8S_BIN"):
        return os.environ["GREENMODEL_PROMETHEUS_K8S_BIN"]
    cache = Path(os.environ.get("GM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                 / "greenmodel")
    built = sorted(p for p in cache.glob("prometheus-*/bin/prometheus") if (p.parent / ".ok").exists())
    return str(built[-1]) if built else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusProcess:
    def __init__(
        self,
        targets: Iterable[str],
        *,
        scrape_interval: str = "1s",
        port: int | None = None,
        workdir: str | os.PathLike | None = None,
        job: str = "greenmodel-workload",
        binary: str | None = None,
        scrape_configs: list[dict] | None = None,
    ) -> None:
        """Scrape ``targets`` statically, or run the given ``scrape_configs`` as they are (e.g. a shipped job
        with Kubernetes service discovery)."""
        self.binary = binary or find_prometheus()
        if not self.binary:
            raise FileNotFoundError("prometheus binary not found (apt-get install prometheus; e2e/system-deps.sh)")
        self.port = port or free_port()
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="greenmodel-prom-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.config_path = self.workdir / "prometheus.yml"
        self.storage = self.workdir / "data"
        self.log_path = self.workdir / "prometheus.log"
        cfg = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": scrape_configs if scrape_configs is not None else [
                {
                    "job_name": job,
                    "honor_labels": True,  # keep namespace/pod labels as exposed (as for a PodMonitor with labelmap)
                    "scrape_interval": scrape_interval,
                    "scrape_timeout": scrape_interval,
                    "static_configs": [{"targets": list(targets)}],
                }
            ],
        }
        self.config_path.write_text(yaml.safe_dump(cfg))
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "PrometheusProcess":
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._proc.returncode}:\n{self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prometheus not ready after {timeout}s:\n{self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def wait_for_series(self, expr: str, timeout: float = 20.0) -> None:
        import json
        import urllib.parse

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            q = urllib.parse.urlencode({"query": expr})
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=2) as r:
                    if json.load(r)["data"]["result"]:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"no series for {expr} after {timeout}s")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m greenmodel.testing.prometheus")
    p.add_argument("--target", action="append", required=True, help="host:port to scrape (repeatable)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--scrape-interval", default="1s")
    a = p.parse_args(argv)
    prom = PrometheusProcess(a.target, port=a.port or None, scrape_interval=a.scrape_interval).start()
    print(prom.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        prom.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
