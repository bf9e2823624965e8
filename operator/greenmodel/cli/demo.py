"""`greenmodel demo`: the whole story on one machine, live in the terminal.

    greenmodel demo [--duration SECONDS] [--speed HOURS_PER_SECOND] [--start 2022-10-06T18:00] [--keep]

1. brings up the local simulated GPU cluster (`e2e/cluster.sh up`; the control plane is built from
   source on first use, which takes minutes: a progress indicator shows it is alive);
2. installs the CRDs and the default ModelCatalog;
3. starts a local server speaking the Electricity Maps v3 API that replays the recorded 2022 hourly
   intensity of GB, DE, FR and PL fast (default: one grid hour every 2 s of wall time);
4. starts the operator (`greenmodel run`) pointed at that server;
5. applies examples/greenmodel.yaml and shows, live, the grid, the decision, the pods landing on nodes of
   the chosen region and every region switch when the grid changes.
Ctrl-C (or the end of --duration) stops the operator and the server, deletes the demo namespace, and takes
the cluster down again if the demo brought it up (--keep leaves everything running).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parents[3]
NAMESPACE = "greenmodel-demo"
# Region -> grid zone of the local topology (CONVENTIONS: fixed for the whole project).
REGIONS = {"europe-west2": "GB", "europe-west3": "DE", "europe-west9": "FR", "europe-central2": "PL"}
# France's nuclear grid is the cleanest of the four in 8,740 of 2022's 8,760 hours. On the night of 6-7 October
# a windy Britain beat it by 10-19% for about five hours (GB 87-103 vs FR 103-115 gCO2e/kWh, lifecycle): the
# demo starts six grid hours before, so it shows a placement in FR, the move to GB and the move back.
DEFAULT_START = "2022-10-06T18:00"
# Grid hours pass in seconds here, so the GreenModel's dwell time (30 min in the example) is shortened.
DEMO_DWELL_SECONDS = 6


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="local simulated GPU cluster + operator + a sample GreenModel, live in the terminal",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="stop by itself after this many seconds (default: until Ctrl-C)")
    p.add_argument("--speed", type=float, default=0.5, metavar="HOURS_PER_SECOND",
                   help="grid hours replayed per second of wall time (default 0.5: one hour every 2 s)")
    p.add_argument("--start", default=DEFAULT_START, metavar="ISO_TIME",
                   help=f"where in the 2022 record the replay starts (default {DEFAULT_START} UTC)")
    p.add_argument("--keep", action="store_true", help="leave the cluster and the demo namespace on exit (the operator and the replay server always stop)")
    p.add_argument("--plain", action="store_true", help="log lines instead of a redrawn screen (default when not a TTY)")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------- output
class Screen:
    """A redrawn dashboard on a TTY; on a pipe (or --plain) only the lines that changed, with a clock."""

    def __init__(self, plain: bool):
        self.plain = plain or not sys.stdout.isatty()
        self._last: dict[str, str] = {}
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def frame(self, sections: list[tuple[str, list[str]]]) -> None:
        if self.plain:
            for key, lines in sections:
                body = "\n".join(lines)
                if self._last.get(key) != body:
                    self._last[key] = body
                    for line in lines:
                        self.say(line)
            return
        out = ["\x1b[H\x1b[2J"]
        for _, lines in sections:
            out.extend(line + "\n" for line in lines)
            out.append("\n")
        out.append("Ctrl-C to stop and clean up.\n")
        sys.stdout.write("".join(out))
        sys.stdout.flush()


def with_progress(label: str, cmd: list[str], env: dict[str, str], log_path: Path, screen: Screen) -> None:
    """Run a long command with a spinner, elapsed time and its latest log line (cluster build: minutes)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    spinner = itertools.cycle("|/-\\")
    t0 = time.monotonic()
    last_plain = 0.0
    while proc.poll() is None:
        elapsed = time.monotonic() - t0
        tail = _last_line(log_path)
        if screen.plain:
            if elapsed - last_plain >= 15:
                screen.say(f"{label}: {elapsed:.0f}s {tail}")
                last_plain = elapsed
        else:
            sys.stdout.write(f"\r\x1b[K{next(spinner)} {label} {elapsed:5.0f}s  {tail[:90]}")
            sys.stdout.flush()
        time.sleep(0.2)
    if not screen.plain:
        sys.stdout.write("\r\x1b[K")
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise DemoError(f"{label} failed (exit {proc.returncode}); last lines of {log_path}:\n{tail}")
    screen.say(f"{label}: done in {time.monotonic() - t0:.0f}s")


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 400))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""
    except OSError:
        return ""


class DemoError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------ cluster
def cluster_env(base: dict[str, str]) -> dict[str, str]:
    """The environment after `eval "$(e2e/cluster.sh env)"` (KUBECONFIG, PATH with kubectl/helm)."""
    out = subprocess.run(["bash", "-c", 'eval "$(e2e/cluster.sh env)" && env -0'], cwd=REPO, env=base,
                         capture_output=True, timeout=120)
    if out.returncode != 0:
        raise DemoError(f"e2e/cluster.sh env failed: {out.stderr.decode(errors='replace')[-2000:]}")
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    if not env.get("KUBECONFIG"):
        raise DemoError("e2e/cluster.sh env did not set KUBECONFIG")
    return env


def cluster_is_up(env: dict[str, str]) -> bool:
    try:
        e = cluster_env(env)
    except DemoError:
        return False
    try:
        proc = subprocess.run(["kubectl", "get", "--raw", "/readyz"], env=e, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):  # kubectl not built yet, or nothing listening
        return False
    return proc.returncode == 0


def kubectl(env: dict[str, str], *args: str, input: str | None = None, check: bool = True) -> str:
    try:
        proc = subprocess.run(["kubectl", *args], env=env, input=input, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DemoError(f"kubectl {' '.join(args[:4])}: {exc}") from None
    if check and proc.returncode != 0:
        raise DemoError(f"kubectl {' '.join(args[:4])}: {proc.stderr.strip()[-1500:]}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------- the state
def _cond(obj: dict, type_: str) -> dict:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


def _fmt_age(ts: str | None) -> str:
    if not ts:
        return ""
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        return t.astimezone(timezone.utc).strftime("%H:%M:%S")
    except ValueError:
        return ts


def describe_decision(gm: dict) -> list[str]:
    """One or two lines of what the operator decided, from the GreenModel's status."""
    status = gm.get("status") or {}
    ready = _cond(gm, "Ready")
    lines = [f"GreenModel {gm['metadata'].get('namespace')}/{gm['metadata']['name']}: "
             f"Ready={ready.get('status', '?')} ({ready.get('reason', 'waiting for the operator')})"]
    if status.get("variant"):
        predicted = status.get("predicted") or {}
        grams = predicted.get("gramsPerMillionTokens")
        intensity = (status.get("intensity") or {}).get("gramsPerKilowattHour")
        lines.append(
            f"  decision: {status['variant']} on {status.get('gpuProduct', '?')} in {status.get('region', '?')}, "
            f"{status.get('readyReplicas', 0)}/{status.get('replicas', '?')} ready"
            + (f", {grams:.1f} gCO2e per million tokens" if grams is not None else "")
            + (f" at {intensity:.0f} g/kWh" if isinstance(intensity, (int, float)) else ""))
    decision = status.get("decision") or {}
    if decision.get("message"):
        lines.append(f"  why: {decision.get('reason', '')}: {decision['message']}"[:220])
    elif ready.get("message"):
        lines.append("  " + ready["message"])
    for c in (status.get("conditions") or []):
        if c.get("type") not in ("Ready", "Reconciling", "Stalled") and c.get("status") != "True":
            lines.append(f"  {c['type']}={c['status']}: {c.get('reason', '')} {c.get('message', '')}".rstrip())
    return lines


def describe_pods(pods: list[dict], nodes: dict[str, dict]) -> list[str]:
    if not pods:
        return ["Pods: none yet"]
    lines = ["Pods:"]
    for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
        node = (p.get("spec") or {}).get("nodeName") or "-"
        labels = (nodes.get(node) or {}).get("metadata", {}).get("labels", {})
        region = labels.get("topology.kubernetes.io/region", "?")
        gpu = labels.get("nvidia.com/gpu.product", "")
        phase = (p.get("status") or {}).get("phase", "?")
        if p["metadata"].get("deletionTimestamp"):
            phase = "Terminating"
        lines.append(f"  {p['metadata']['name']:<48} {phase:<11} {node:<24} {region:<16} {gpu}")
    return lines


def grid_line(intensity: dict[str, float], chosen: set[str], grid_time: str) -> list[str]:
    """The grid on one line (plain output)."""
    parts = []
    for region, zone in REGIONS.items():
        value = intensity.get(region)
        parts.append(f"{zone} {value:.0f}" if value is not None else f"{zone} ?")
        if region in chosen:
            parts[-1] += "*"
    return [f"grid {grid_time}: " + ", ".join(parts) + "  (gCO2e/kWh; * = serving)"]


def describe_grid(intensity: dict[str, float], chosen: set[str], grid_time: str) -> list[str]:
    lines = [f"Grid carbon intensity, gCO2e/kWh (Electricity Maps 2022 record, replayed; grid clock {grid_time})"]
    top = max(intensity.values(), default=1) or 1
    for region, zone in REGIONS.items():
        value = intensity.get(region)
        bar = "#" * int(round(30 * value / top)) if value is not None else ""
        mark = "  <- serving here" if region in chosen else ""
        shown = f"{value:6.0f}" if value is not None else "     ?"
        lines.append(f"  {region:<16} {zone}  {shown}  {bar}{mark}")
    return lines


def read_metrics(port: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("greenmodel_grid_intensity_grams_per_kilowatt_hour{"):
            labels, _, value = line.rpartition(" ")
            region = labels.split('region="', 1)[1].split('"', 1)[0]
            out[region] = float(value)
    return out


# ----------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    if not (REPO / "e2e" / "cluster.sh").exists():
        print("greenmodel demo needs a checkout of the repository (it uses e2e/cluster.sh)", file=sys.stderr)
        return 2
    screen = Screen(args.plain)
    work = Path(tempfile.mkdtemp(prefix="greenmodel-demo-"))
    cleanups: list[tuple[str, Callable[[], Any]]] = []
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    base_env = dict(os.environ)
    try:
        return _run(args, screen, work, cleanups, stop, base_env)
    except DemoError as exc:
        print(f"\ngreenmodel demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for what, fn in reversed(cleanups):
            try:
                screen.say(f"cleanup: {what}")
                fn()
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                print(f"cleanup of {what} failed: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


def _run(args, screen: Screen, work: Path, cleanups, stop: threading.Event, base_env: dict[str, str]) -> int:
    t_start = time.monotonic()
    was_up = cluster_is_up(base_env)
    if was_up:
        screen.say("local cluster: already up, reusing it")
    else:
        with_progress("local cluster (first use builds Kubernetes, etcd, kwok from source: minutes)",
                      ["bash", "e2e/cluster.sh", "up"], base_env, work / "cluster-up.log", screen)
        if not args.keep:
            cleanups.append(("cluster down", lambda: subprocess.run(["bash", "e2e/cluster.sh", "down"], cwd=REPO,
                                                                    env=base_env, capture_output=True, timeout=120)))
    env = cluster_env(base_env)
    nodes = json.loads(kubectl(env, "get", "nodes", "-o", "json"))["items"]
    screen.say(f"cluster: {len(nodes)} nodes in regions "
               + ", ".join(sorted({n['metadata'].get('labels', {}).get('topology.kubernetes.io/region', '?') for n in nodes})))

    kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    for crd in ("greenmodels.greenmodel.dev", "modelcatalogs.greenmodel.dev"):
        kubectl(env, "wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "examples" / "catalog.yaml"))
    screen.say("installed CRDs and the default ModelCatalog")

    # The carbon data: recorded 2022 intensity, served over the real Electricity Maps v3 wire format.
    server, grid_clock = start_replay_server(args.start, args.speed)
    cleanups.append(("carbon replay server", server.stop))
    screen.say(f"carbon replay server on {server.url} (2022 record from {args.start}, {args.speed:g} h/s)")

    deadline = time.monotonic() + 120  # a previous run's namespace may still be terminating
    while kubectl(env, "get", "namespace", NAMESPACE, "-o", "jsonpath={.status.phase}", check=False) == "Terminating":
        if time.monotonic() > deadline:
            raise DemoError(f"namespace {NAMESPACE} from an earlier run is still terminating")
        time.sleep(1)
    kubectl(env, "create", "namespace", NAMESPACE, check=False)
    if not args.keep:  # registered before the operator, so it runs after the operator has stopped
        cleanups.append((f"namespace {NAMESPACE}", lambda: kubectl(env, "delete", "namespace", NAMESPACE,
                                                                     "--wait=false", check=False)))
    config_path = work / "operator-config.yaml"
    config_path.write_text(yaml.safe_dump(operator_config(server.url)))
    metrics_port = free_port()
    op_env = {**env, "GREENMODEL_DEMO_TOKEN": DEMO_TOKEN}
    op_log = work / "operator.log"
    log_file = open(op_log, "wb")
    operator = subprocess.Popen(
        [sys.executable, "-m", "greenmodel", "run", "--config", str(config_path), "--namespace", NAMESPACE,
         "--metrics-port", str(metrics_port), "--log-format", "json"],
        env=op_env, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO)

    def stop_operator():
        if operator.poll() is None:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                operator.kill()
        log_file.close()

    cleanups.append(("operator", stop_operator))
    screen.say(f"operator started (pid {operator.pid}, log {op_log})")

    gm = yaml.safe_load((REPO / "examples" / "greenmodel.yaml").read_text())
    gm["metadata"]["namespace"] = NAMESPACE
    gm["spec"].setdefault("hysteresis", {})["minDwellSeconds"] = DEMO_DWELL_SECONDS
    name = gm["metadata"]["name"]
    kubectl(env, "apply", "-f", "-", input=json.dumps(gm))
    screen.say(f"applied examples/greenmodel.yaml as {NAMESPACE}/{name}; watching (setup took {time.monotonic() - t_start:.0f}s)")

    deadline = None if args.duration is None else time.monotonic() + args.duration
    seen_events: set[str] = set()
    event_lines: list[str] = []
    switches = 0
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        if operator.poll() is not None:
            raise DemoError(f"the operator exited ({operator.returncode}); last lines:\n"
                            + "\n".join(op_log.read_text(errors="replace").splitlines()[-20:]))
        gm_obj = json.loads(kubectl(env, "get", "greenmodels.greenmodel.dev", name, "-n", NAMESPACE, "-o", "json", check=False) or "{}")
        sel = f"app.kubernetes.io/instance={name},app.kubernetes.io/managed-by=greenmodel-operator"
        pods = json.loads(kubectl(env, "get", "pods", "-n", NAMESPACE, "-l", sel, "-o", "json"))["items"]
        node_map = {n["metadata"]["name"]: n for n in nodes}
        regions = {(node_map.get((p.get("spec") or {}).get("nodeName") or "") or {}).get("metadata", {})
                   .get("labels", {}).get("topology.kubernetes.io/region") for p in pods
                   if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")}
        regions.discard(None)
        events = json.loads(kubectl(env, "get", "events", "-n", NAMESPACE, "-o", "json"))["items"]
        new_events: list[str] = []
        for ev in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
            uid = ev["metadata"]["uid"] + str(ev.get("count", 1))
            if uid in seen_events or ev.get("source", {}).get("component") not in (None, "", "greenmodel-operator") \
                    and ev.get("reportingComponent") != "greenmodel-operator":
                continue
            seen_events.add(uid)
            if ev.get("reason") == "RegionSwitched":
                switches += 1
            new_events.append(f"  {_fmt_age(ev.get('lastTimestamp') or ev.get('eventTime'))} {ev.get('type', '')[:7]:<7} "
                               f"{ev.get('reason', ''):<18} {ev.get('message', '')[:140]}")
        event_lines.extend(new_events)
        intensity = read_metrics(metrics_port) or {}
        screen.frame([
            ("grid", (grid_line if screen.plain else describe_grid)(intensity, regions, grid_clock())),
            ("decision", describe_decision(gm_obj) if gm_obj else ["GreenModel: not found"]),
            ("pods", describe_pods(pods, node_map)),
        ] + ([("events", ["Events (newest last):"] + event_lines[-8:])] if not screen.plain else []))
        for line in new_events if screen.plain else []:
            screen.say("event" + line[1:])
        stop.wait(1.0)
    screen.say(f"demo finished: {switches} region switch(es) seen, {len(event_lines)} operator events")
    return 0


def operator_config(server_url: str) -> dict:
    """The shipped example config with an Electricity Maps provider (the replay server) first in every
    region's chain, fast refresh for the demo, the static annual means as fallback."""
    cfg = yaml.safe_load((REPO / "examples" / "operator-config.yaml").read_text())
    cfg["carbon"]["providers"]["electricitymaps"] = {
        "type": "electricitymaps", "endpoint": server_url, "credentials": {"env": "GREENMODEL_DEMO_TOKEN"}}
    for region in cfg["carbon"]["regions"].values():
        region["providers"] = ["electricitymaps", "static"]
    cfg["carbon"]["refreshIntervalSeconds"] = 2
    cfg["reconcile"]["timerIntervalSeconds"] = 3
    host = server_url.split("://", 1)[1].split(":", 1)[0]
    cfg.setdefault("network", {})["allowInsecureHttpHosts"] = [host]
    cfg["network"]["allowPrivateHosts"] = [host]
    return cfg


DEMO_TOKEN = "demo-token"


def start_replay_server(start: str, speed: float):
    """The Electricity Maps v3 replay server of greenmodel.testing over the packaged 2022 hourly record
    (Electricity Maps, ODbL). Returns the server (``.url``, ``.stop()``) and a grid-clock formatter."""
    from greenmodel.testing.electricitymaps import ElectricityMapsServer
    from greenmodel.testing.replay import GridReplay

    replay = GridReplay(tuple(REGIONS.values()), start=start, hours_per_second=speed)
    server = ElectricityMapsServer(replay, token=DEMO_TOKEN).start()
    return server, lambda: replay.grid_time().strftime("%Y-%m-%d %H:00 UTC")
