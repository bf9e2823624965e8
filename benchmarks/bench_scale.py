#!/usr/bin/env python3
"""Scale benchmark: 1,000 GreenModels in 20 namespaces on >= 100 simulated GPU nodes (prints numbers).

What it does, on the local control plane of e2e/cluster.sh (brought up if it is not; GREENMODEL_NO_BUILD=1
makes `up` fail instead of building missing binaries):
  1. adds --nodes kwok GPU nodes (NVIDIA-L4, --gpus-per-node each) spread over four regions of their own
     (bench-scale-gb/de/fr/pl -> Electricity Maps zones GB/DE/FR/PL), labelled greenmodel.dev/bench-scale=true;
  2. starts a fake Electricity Maps server (greenmodel.testing.electricitymaps, 127.0.0.1) and
     `greenmodel run` (a subprocess) for the --namespaces namespaces, with electricitymaps as the first provider
     of those regions, timer --interval and carbon refresh --carbon-refresh;
  3. applies --greenmodels GreenModels (1 L4 replica each, pinned round-robin to one bench region) and measures
     the time from the first apply to all Ready, and API requests per GreenModel (the operator's own
     greenmodel_kube_requests_total / greenmodel_child_writes_total / greenmodel_status_writes_total);
  4. soaks --soak-seconds (default 1800): operator CPU seconds and RSS sampled every --sample-seconds from
     /proc (min/max/slope), child and status writes per idle GreenModel per timer tick (must be 0), and
     outside carbon calls per refresh interval counted at the fake server;
  5. restarts the operator (SIGTERM, start again) and measures child writes after the restart (must be 0)
     and the time until it is idle again: greenmodel_workqueue_depth == 0, every GreenModel passed once
     (greenmodel_reconcile_total >= N) and no child/status write for --idle-window seconds (target <= 60 s);
  6. deletes what it created (namespaces, nodes) unless --keep.

No timed assertions: it prints a table (and the same numbers as JSON with --json). Exit status 0 unless
something failed to come up or never became Ready within --ready-timeout.

    .venv/bin/python benchmarks/bench_scale.py --soak-seconds 1800          # the full run (docs/scale.md)
    .venv/bin/python benchmarks/bench_scale.py --greenmodels 100 --namespaces 4 --soak-seconds 60   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import requests
import urllib3
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "e2e"))

from greenmodel.kube import client as kc  # noqa: E402
from greenmodel.kube import names  # noqa: E402
from greenmodel.kube.client import KubeClient  # noqa: E402
from greenmodel.testing.electricitymaps import ElectricityMapsServer  # noqa: E402
from greenmodel.testing import kwok  # noqa: E402

from test_reconciler_support import OperatorProcess, wait_for, write_config  # noqa: E402

REGIONS = {"bench-scale-gb": "GB", "bench-scale-de": "DE", "bench-scale-fr": "FR", "bench-scale-pl": "PL"}
NODE_LABEL = "greenmodel.dev/bench-scale"
NS_PREFIX = "bench-scale-"
TOKEN = "bench-token"
NAMESPACES = kc.ResourceKind("", "v1", "namespaces", namespaced=False)
STATE_DIR = Path(os.environ.get("GREENMODEL_CLUSTER_DIR", "/tmp/greenmodel-cluster"))


def log(msg: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cluster_up() -> tuple[str, dict]:
    """`e2e/cluster.sh up` (idempotent) and the environment of `e2e/cluster.sh env` (KUBECONFIG, PATH)."""
    env = dict(os.environ)
    env.setdefault("GREENMODEL_NO_BUILD", "1")
    up = subprocess.run([str(REPO / "e2e" / "cluster.sh"), "up"], env=env, capture_output=True, text=True,
                        timeout=900)
    if up.returncode != 0:
        raise SystemExit(f"e2e/cluster.sh up exited {up.returncode}:\n{up.stderr[-4000:]}")
    out = subprocess.run([str(REPO / "e2e" / "cluster.sh"), "env"], env=env, capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            v = v.strip().strip('"').strip("'").replace("$PATH", os.environ.get("PATH", ""))
            env[k] = v
    return env["KUBECONFIG"], env


def kubectl(env: dict, *args: str) -> None:
    subprocess.run(["kubectl", *args], env=env, check=True, capture_output=True, text=True)


def node(region: str, i: int, gpus: int, suffix: str) -> dict:
    name = f"{region}-a-l4-{i}-{suffix}"  # never a name used before: see greenmodel.testing.kwok
    res = {"cpu": "96", "memory": "384Gi", "ephemeral-storage": "1Ti", "pods": "110", names.GPU_RESOURCE: str(gpus)}
    idx = list(REGIONS).index(region)
    cidr = f"10.{210 + idx}.{i}.0/24"
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": name, "type": "kwok", NODE_LABEL: "true",
                                    names.REGION_LABEL: region, "topology.kubernetes.io/zone": f"{region}-a",
                                    names.GPU_PRODUCT_LABEL: "NVIDIA-L4", "nvidia.com/gpu.count": str(gpus)}},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"capacity": res, "allocatable": dict(res)}}


def delete_nodes(api: KubeClient) -> None:
    for n in api.list(kc.NODES, label_selector=f"{NODE_LABEL}=true"):
        api.delete(kc.NODES, n["metadata"]["name"])


def greenmodel(name: str, ns: str, region: str) -> dict:
    return {"apiVersion": "greenmodel.dev/v1alpha1", "kind": "GreenModel",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"model": {"family": "general-chat"}, "quality": {"benchmark": "MMLU", "minScore": 60},
                     "latency": {"ttftP95Milliseconds": 2000, "interTokenP95Milliseconds": 100},
                     "load": {"outputTokensPerSecond": 50}, "maxReplicas": 1,
                     "placement": {"regions": [region], "gpuProducts": ["NVIDIA-L4"]}}}


def is_ready(gm: dict) -> bool:
    st = gm.get("status") or {}
    return st.get("observedGeneration") == gm["metadata"].get("generation") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])


def proc_sample(pid: int) -> tuple[float, float]:
    """(CPU seconds user+system, RSS MiB) of a process from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return cpu, rss


def slope_per_hour(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 3600


def msum(m: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in m.items() if k == prefix or k.startswith(prefix + "{"))


def writes(m: dict[str, float]) -> tuple[float, float]:
    return msum(m, "greenmodel_child_writes_total"), msum(m, "greenmodel_status_writes_total")


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _cond_time(obj: dict, type_: str) -> float | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return _ts(c.get("lastTransitionTime"))
    return None


def stages(api: KubeClient, nss: list[str]) -> list[tuple[str, str, float, float]]:
    """Where apply -> Ready went, from the objects' own timestamps (1 s resolution, read once at the end, so
    sampling adds no load): per stage (who does it, what), the time from the first GreenModel's creation to the
    last object of the stage, and the median lag of an object behind its own GreenModel's creation."""
    gms, deps, rss, pods = [], [], [], []
    for ns in nss:
        gms += api.list(kc.GREENMODELS, ns)
        deps += api.list(kc.DEPLOYMENTS, ns, label_selector=names.ALL_OWNED_SELECTOR)
        rss += api.list(kc.ResourceKind("apps", "v1", "replicasets"), ns, label_selector=names.ALL_OWNED_SELECTOR)
        pods += api.list(kc.PODS, ns, label_selector=names.ALL_OWNED_SELECTOR)
    born = {(g["metadata"]["namespace"], g["metadata"]["name"]): _ts(g["metadata"]["creationTimestamp"]) for g in gms}
    t0 = min(born.values())

    def gm_of(obj: dict) -> tuple[str, str]:
        return obj["metadata"]["namespace"], (obj["metadata"].get("labels") or {}).get(names.LABEL_INSTANCE, "")

    label_to_name = {(ns, names.label_value(n)): (ns, n) for ns, n in born}

    def row(who: str, what: str, objs: list[dict], when) -> tuple[str, str, float, float]:
        lags, ends = [], []
        for o in objs:
            t = when(o)
            k = label_to_name.get(gm_of(o)) or (o["metadata"].get("namespace"), o["metadata"].get("name"))
            if t is None or k not in born:
                continue
            ends.append(t)
            lags.append(t - born[k])
        lags.sort()
        return who, what, round(max(ends) - t0, 1) if ends else float("nan"), \
            round(lags[len(lags) // 2], 1) if lags else float("nan")

    created = lambda o: _ts(o["metadata"].get("creationTimestamp"))  # noqa: E731
    return [
        row("client", "GreenModel created", gms, created),
        row("operator", "Deployment created", deps, created),
        row("kube-controller-manager", "ReplicaSet created", rss, created),
        row("kube-controller-manager", "Pod created", pods, created),
        row("kube-scheduler", "Pod bound (PodScheduled)", pods, lambda o: _cond_time(o, "PodScheduled")),
        row("kwok", "Pod Ready", pods, lambda o: _cond_time(o, "Ready")),
        row("operator", "GreenModel Ready", gms, lambda o: _cond_time(o, "Ready")),
    ]


def throttling(state_dir: Path) -> dict[str, tuple[float, float]]:
    """Client-side rate-limiter waits of kube-controller-manager and kube-scheduler (seconds, requests), from
    their own /metrics (rest_client_rate_limiter_duration_seconds), read with the local cluster's admin cert."""
    urllib3.disable_warnings()  # the components' self-signed serving certs, on loopback
    pki = state_dir / "pki"
    out = {}
    for name, port in (("kube-controller-manager", os.environ.get("GM_PORT_KCM", "10257")),
                       ("kube-scheduler", os.environ.get("GM_PORT_SCHEDULER", "10259"))):
        try:
            text = requests.get(f"https://127.0.0.1:{port}/metrics", verify=False, timeout=10,
                                cert=(str(pki / "admin.crt"), str(pki / "admin.key"))).text
        except requests.RequestException as exc:
            log(f"{name} metrics: {exc}")
            continue
        secs = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("rest_client_rate_limiter_duration_seconds_sum"))
        n = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("rest_client_rate_limiter_duration_seconds_count"))
        out[name] = (round(secs, 1), n)
    return out


def cluster_limits(state_dir: Path) -> dict[str, str]:
    """The client rate limits and controller concurrency the running components were started with (their
    command lines; a flag not given is the component's default, said so)."""
    flags = ("--kube-api-qps", "--kube-api-burst", "--concurrent-deployment-syncs", "--concurrent-replicaset-syncs")
    out = {}
    for name in ("kube-controller-manager", "kube-scheduler"):
        try:
            pid = (state_dir / "pids" / f"{name}.pid").read_text().split()[0]
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except (OSError, IndexError):
            continue
        given = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if "=" in a and a.split("=", 1)[0] in flags}
        out[name] = ", ".join(f"{k[2:]}={v}" for k, v in sorted(given.items())) or "component defaults"
    return out


def run(args: argparse.Namespace) -> dict:
    out: dict = {"greenmodels": args.greenmodels, "namespaces": args.namespaces, "nodes": args.nodes,
                 "gpus": args.nodes * args.gpus_per_node, "timer_interval_s": args.interval,
                 "carbon_refresh_s": args.carbon_refresh, "soak_s": args.soak_seconds,
                 "load_1m_start": os.getloadavg()[0]}
    kubeconfig, env = cluster_up()
    api = KubeClient.from_environment(kubeconfig)
    kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(env, "wait", "--for=condition=Established", "--timeout=60s", "crd/greenmodels.greenmodel.dev")
    kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "examples" / "catalog.yaml"))
    nss = [f"{NS_PREFIX}{i:02d}" for i in range(args.namespaces)]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    em = ElectricityMapsServer(token=TOKEN).start()
    op: OperatorProcess | None = None
    try:
        delete_nodes(api)
        per_region = args.nodes // len(REGIONS)
        suffix = kwok.fresh_suffix()
        for region in REGIONS:
            for i in range(per_region):
                api.create(kc.NODES, node(region, i, args.gpus_per_node, suffix))
        n_nodes = per_region * len(REGIONS)
        out["nodes"], out["gpus"] = n_nodes, n_nodes * args.gpus_per_node
        wait_for(lambda: sum(1 for n in api.list(kc.NODES, label_selector=f"{NODE_LABEL}=true")
                             if any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in (n.get("status") or {}).get("conditions") or [])) == n_nodes,
                 120, "bench nodes Ready", interval=1.0)
        log(f"{n_nodes} nodes Ready ({out['gpus']} GPUs)")
        for ns in nss:
            if api.get(NAMESPACES, ns) is None:
                api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

        config = write_config(workdir / "config.yaml", interval=args.interval)
        cfg = yaml.safe_load(config.read_text())
        cfg["carbon"]["refreshIntervalSeconds"] = args.carbon_refresh
        cfg["carbon"]["providers"]["electricitymaps"] = {"type": "electricitymaps", "endpoint": em.url,
                                                         "credentials": {"env": "BENCH_EM_TOKEN"}}
        for r in cfg["carbon"]["regions"].values():  # one provider chain per zone
            if r["zone"] in REGIONS.values():
                r["providers"] = ["electricitymaps", "static"]
        for region, zone in REGIONS.items():
            cfg["carbon"]["regions"][region] = {"zone": zone, "providers": ["electricitymaps", "static"], "pue": 1.1}
        net = cfg.setdefault("network", {})
        net["allowInsecureHttpHosts"] = ["127.0.0.1"]
        net["allowPrivateHosts"] = ["127.0.0.1"]
        config.write_text(yaml.safe_dump(cfg))
        op = OperatorProcess(kubeconfig, config, nss, workdir / "operator.log",
                             extra_env={"BENCH_EM_TOKEN": TOKEN}).start()
        log(f"operator pid {op.proc.pid} on :{op.port}, fake Electricity Maps at {em.url}")

        # ---- apply -> all Ready
        regions = list(REGIONS)
        throttled0 = throttling(STATE_DIR)
        out["cluster_limits"] = cluster_limits(STATE_DIR)
        cpu0, _ = proc_sample(op.proc.pid)
        t0 = time.monotonic()
        for i in range(args.greenmodels):
            ns = nss[i % len(nss)]
            api.apply(kc.GREENMODELS, greenmodel(f"gm-{i:04d}", ns, regions[i % len(regions)]),
                      field_manager="bench-scale")
        out["apply_seconds"] = round(time.monotonic() - t0, 1)
        log(f"applied {args.greenmodels} in {out['apply_seconds']} s")

        def count_ready() -> int:
            return sum(1 for ns in nss for g in api.list(kc.GREENMODELS, ns) if is_ready(g))

        last = [0, time.monotonic()]

        def all_ready() -> bool:
            n = count_ready()
            if time.monotonic() - last[1] > 15:
                log(f"{n}/{args.greenmodels} Ready")
                last[1] = time.monotonic()
            last[0] = n
            return n == args.greenmodels

        wait_for(all_ready, args.ready_timeout, "all GreenModels Ready", interval=2.0,
                 on_fail=lambda: f"{last[0]} Ready\n{op.tail()}")
        out["apply_to_all_ready_s"] = round(time.monotonic() - t0, 1)
        cpu1, rss1 = proc_sample(op.proc.pid)
        out["ramp_operator_cpu_percent"] = round(100 * (cpu1 - cpu0) / out["apply_to_all_ready_s"], 1)
        out["ramp_operator_rss_mib"] = round(rss1, 1)
        out["stages"] = stages(api, nss)
        throttled1 = throttling(STATE_DIR)
        out["client_throttling_s"] = {k: (round(v[0] - throttled0.get(k, (0, 0))[0], 1),
                                          v[1] - throttled0.get(k, (0, 0))[1]) for k, v in throttled1.items()}
        m = op.metrics()
        cw, sw = writes(m)
        out["kube_requests_per_gm_to_ready"] = round(msum(m, "greenmodel_kube_requests_total") / args.greenmodels, 2)
        out["kube_request_mean_ms"] = round(1000 * msum(m, "greenmodel_kube_request_seconds_total")
                                            / max(1.0, msum(m, "greenmodel_kube_requests_total")), 1)
        out["kube_requests_by_verb_per_gm"] = {
            k.split('verb="', 1)[1].split('"', 1)[0]: round(v / args.greenmodels, 2)
            for k, v in m.items() if k.startswith("greenmodel_kube_requests_total{")}
        out["child_writes_per_gm_to_ready"] = round(cw / args.greenmodels, 2)
        out["status_writes_per_gm_to_ready"] = round(sw / args.greenmodels, 2)
        out["passes_per_gm_to_ready"] = round(msum(m, "greenmodel_reconcile_total") / args.greenmodels, 2)
        deps = sum(len(api.list(kc.DEPLOYMENTS, ns, label_selector=names.ALL_OWNED_SELECTOR)) for ns in nss)
        out["deployments"] = deps
        log(f"all Ready in {out['apply_to_all_ready_s']} s; {deps} Deployments")

        # ---- soak (let the first ready-triggered passes settle for one interval first)
        time.sleep(args.interval)
        m0 = op.metrics()
        em_before = sum(em.requests.values())
        em_latest_before = sum(v for k, v in em.requests.items() if "/latest" in k)
        s0 = time.monotonic()
        samples: list[tuple[float, float, float]] = []
        depths: list[float] = []
        while time.monotonic() - s0 < args.soak_seconds:
            cpu, rss = proc_sample(op.proc.pid)
            samples.append((time.monotonic() - s0, cpu, rss))
            depths.append(op.metrics().get("greenmodel_workqueue_depth", -1))
            time.sleep(min(args.sample_seconds, max(0.0, args.soak_seconds - (time.monotonic() - s0))))
        cpu, rss = proc_sample(op.proc.pid)
        samples.append((time.monotonic() - s0, cpu, rss))
        soak = samples[-1][0]
        m1 = op.metrics()
        cw0, sw0 = writes(m0)
        cw1, sw1 = writes(m1)
        ticks = soak / args.interval
        passes = msum(m1, "greenmodel_reconcile_total") - msum(m0, "greenmodel_reconcile_total")
        out["soak_measured_s"] = round(soak, 1)
        out["soak_passes_per_gm_per_tick"] = round(passes / args.greenmodels / ticks, 3)
        out["soak_child_writes"] = cw1 - cw0
        out["soak_status_writes"] = sw1 - sw0
        out["writes_per_idle_gm_per_tick"] = round((cw1 - cw0 + sw1 - sw0) / args.greenmodels / ticks, 5)
        out["soak_kube_requests_per_gm_per_tick"] = round(
            (msum(m1, "greenmodel_kube_requests_total") - msum(m0, "greenmodel_kube_requests_total"))
            / args.greenmodels / ticks, 3)
        em_calls = sum(em.requests.values()) - em_before
        em_latest = sum(v for k, v in em.requests.items() if "/latest" in k) - em_latest_before
        out["carbon_calls_soak"] = em_calls
        out["carbon_calls_per_refresh_interval"] = round(em_calls / (soak / args.carbon_refresh), 2)
        out["carbon_latest_calls_per_refresh_interval"] = round(em_latest / (soak / args.carbon_refresh), 2)
        out["carbon_zones"] = len(REGIONS)
        cpus = [s[1] for s in samples]
        rsss = [s[2] for s in samples]
        ts = [s[0] for s in samples]
        out["cpu_seconds_soak"] = round(cpus[-1] - cpus[0], 1)
        out["cpu_percent_soak"] = round(100 * (cpus[-1] - cpus[0]) / soak, 1)
        # CPU rate per sample window: flat means no growth in per-tick work
        rates = [(cpus[i + 1] - cpus[i]) / max(1e-9, ts[i + 1] - ts[i]) * 100 for i in range(len(ts) - 1)]
        out["cpu_percent_min"] = round(min(rates), 1) if rates else None
        out["cpu_percent_max"] = round(max(rates), 1) if rates else None
        out["cpu_percent_slope_per_hour"] = round(slope_per_hour(ts[1:], rates), 2) if rates else None
        out["rss_mib_min"] = round(min(rsss), 1)
        out["rss_mib_max"] = round(max(rsss), 1)
        out["rss_mib_slope_per_hour"] = round(slope_per_hour(ts, rsss), 2)
        out["samples"] = len(samples)
        out["queue_depth_min"], out["queue_depth_max"] = min(depths, default=None), max(depths, default=None)
        log(f"soak done: {out['soak_child_writes']} child / {out['soak_status_writes']} status writes, "
            f"RSS {out['rss_mib_min']}..{out['rss_mib_max']} MiB")

        # ---- restart
        rc = op.stop()
        out["stop_rc"] = rc
        op2 = OperatorProcess(kubeconfig, config, nss, workdir / "operator-restart.log",
                              extra_env={"BENCH_EM_TOKEN": TOKEN})
        t_start = time.monotonic()
        op2.start()
        op = op2
        state = {"w": None, "since": time.monotonic(), "quiet_since": None}

        def idle() -> bool:
            # idle = queue empty and every GreenModel passed once, and no child/status write since then,
            # held for --idle-window seconds; the idle time is when that state began
            m = op2.metrics()
            w = writes(m)
            now = time.monotonic()
            if w != state["w"]:
                state["w"], state["since"] = w, now
            quiet = (m.get("greenmodel_workqueue_depth", 1) == 0
                     and msum(m, "greenmodel_reconcile_total") >= args.greenmodels)
            # the gauge also counts the timer's spread-out future passes, so it reads 0 only in the gap between
            # ticks: the queue having drained once (after every GreenModel passed) is the signal
            if quiet and state["quiet_since"] is None:
                state["quiet_since"] = now
            began = max(state["since"], state["quiet_since"] or now)
            if state["quiet_since"] is not None and now - began >= args.idle_window:
                state["began"] = began
                return True
            return False

        try:
            wait_for(idle, args.restart_timeout, "operator idle after restart", interval=0.5)
            out["restart_idle_s"] = round(state["began"] - t_start, 1)  # from launching the new process
            out["restart_idle_confirmed_s"] = round(time.monotonic() - t_start, 1)
        except AssertionError:  # report it (with the queue it never drained) instead of losing the run
            m = op2.metrics()
            out["restart_idle_s"] = None
            out["restart_idle_note"] = (f"not idle within {args.restart_timeout:.0f} s: workqueue depth "
                                        f"{m.get('greenmodel_workqueue_depth')}, passes "
                                        f"{msum(m, 'greenmodel_reconcile_total'):.0f}")
            log(out["restart_idle_note"])
        # one more tick to catch timer-driven writes
        time.sleep(args.interval)
        m = op2.metrics()
        cw, sw = writes(m)
        out["restart_child_writes"] = cw
        out["restart_status_writes"] = sw
        out["restart_passes"] = msum(m, "greenmodel_reconcile_total")
        out["restart_kube_requests"] = msum(m, "greenmodel_kube_requests_total")
        out["deployments_after_restart"] = sum(
            len(api.list(kc.DEPLOYMENTS, ns, label_selector=names.ALL_OWNED_SELECTOR)) for ns in nss)
        out["load_1m_end"] = os.getloadavg()[0]
        return out
    finally:
        if op is not None:
            op.stop()
        em.stop()
        if not args.keep:
            log("cleaning up namespaces and nodes")
            for ns in nss:
                try:
                    api.delete(NAMESPACES, ns)
                except Exception as exc:  # noqa: BLE001
                    log(f"delete namespace {ns}: {exc}")
            try:
                wait_for(lambda: all(api.get(NAMESPACES, ns) is None for ns in nss), 300,
                         "namespaces gone", interval=2.0)
            except AssertionError as exc:
                log(str(exc).splitlines()[0])
            delete_nodes(api)


def table(r: dict) -> str:
    rows = [
        ("GreenModels / namespaces / GPU nodes (GPUs)",
         f"{r['greenmodels']} / {r['namespaces']} / {r['nodes']} ({r['gpus']})"),
        ("timer interval / carbon refresh (s)", f"{r['timer_interval_s']} / {r['carbon_refresh_s']}"),
        ("apply (s) / apply -> all Ready (s)", f"{r.get('apply_seconds')} / {r.get('apply_to_all_ready_s')}"),
        ("kube requests per GreenModel to Ready", r.get("kube_requests_per_gm_to_ready")),
        ("child / status writes per GreenModel to Ready",
         f"{r.get('child_writes_per_gm_to_ready')} / {r.get('status_writes_per_gm_to_ready')}"),
        ("reconcile passes per GreenModel to Ready", r.get("passes_per_gm_to_ready")),
        ("soak (s measured)", r.get("soak_measured_s")),
        ("passes / kube requests per GreenModel per tick (soak)",
         f"{r.get('soak_passes_per_gm_per_tick')} / {r.get('soak_kube_requests_per_gm_per_tick')}"),
        ("writes per idle GreenModel per tick (child+status)", r.get("writes_per_idle_gm_per_tick")),
        ("  child / status writes in soak", f"{r.get('soak_child_writes')} / {r.get('soak_status_writes')}"),
        ("carbon calls per refresh interval (all / latest; zones)",
         f"{r.get('carbon_calls_per_refresh_interval')} / {r.get('carbon_latest_calls_per_refresh_interval')}; "
         f"{r.get('carbon_zones')}"),
        ("operator CPU in soak (s, % of one core)", f"{r.get('cpu_seconds_soak')}, {r.get('cpu_percent_soak')}%"),
        ("  CPU % per sample min / max / slope per hour",
         f"{r.get('cpu_percent_min')} / {r.get('cpu_percent_max')} / {r.get('cpu_percent_slope_per_hour')}"),
        ("operator RSS MiB min / max / slope per hour",
         f"{r.get('rss_mib_min')} / {r.get('rss_mib_max')} / {r.get('rss_mib_slope_per_hour')}"),
        ("restart: child / status writes", f"{r.get('restart_child_writes')} / {r.get('restart_status_writes')}"),
        ("restart: idle after (s; quiet window confirmed at)",
         f"{r.get('restart_idle_s')} ({r.get('restart_idle_confirmed_s')})"),
        ("work queue depth in soak min / max", f"{r.get('queue_depth_min')} / {r.get('queue_depth_max')}"),
        ("restart: not idle", r.get("restart_idle_note", "-")),
        ("restart: passes, kube requests", f"{r.get('restart_passes')}, {r.get('restart_kube_requests')}"),
        ("Deployments before / after restart", f"{r.get('deployments')} / {r.get('deployments_after_restart')}"),
        ("load average (1 min) start / end", f"{r.get('load_1m_start'):.2f} / {r.get('load_1m_end', 0):.2f}"),
    ]
    w = max(len(k) for k, _ in rows)
    text = "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
    if r.get("stages"):
        lines = ["", "Where apply -> all Ready went (object timestamps, 1 s resolution):",
                 f"{'who':<24} {'stage':<26} {'last one at (s)':>15} {'median lag (s)':>15}"]
        lines += [f"{who:<24} {what:<26} {end:>15} {lag:>15}" for who, what, end, lag in r["stages"]]
        lines.append(f"operator CPU during the ramp: {r.get('ramp_operator_cpu_percent')} % of one core; "
                     f"RSS at all Ready {r.get('ramp_operator_rss_mib')} MiB; mean kube request "
                     f"{r.get('kube_request_mean_ms')} ms; requests per GreenModel by verb "
                     f"{r.get('kube_requests_by_verb_per_gm')}")
        for name, (secs, n) in (r.get("client_throttling_s") or {}).items():
            lines.append(f"{name}: {secs} s waited in its client-side rate limiter over {n:.0f} requests "
                         "(rest_client_rate_limiter_duration_seconds)")
        lines.append(f"cluster client limits: {r.get('cluster_limits')}")
        text += "\n".join(lines)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--greenmodels", type=int, default=1000, help="GreenModels to create (default 1000)")
    p.add_argument("--namespaces", type=int, default=20, help="namespaces they are spread over (default 20)")
    p.add_argument("--nodes", type=int, default=100, help="simulated GPU nodes, split over 4 regions (default 100)")
    p.add_argument("--gpus-per-node", type=int, default=16, help="L4 GPUs per simulated node (default 16)")
    p.add_argument("--interval", type=float, default=30.0, help="operator timer interval, s (default 30)")
    p.add_argument("--carbon-refresh", type=float, default=60.0,
                   help="carbon.refreshIntervalSeconds, s (default 60, so a short soak sees several refreshes)")
    p.add_argument("--soak-seconds", type=float, default=1800.0, help="idle soak length, s (default 1800)")
    p.add_argument("--sample-seconds", type=float, default=10.0, help="CPU/RSS sampling period, s (default 10)")
    p.add_argument("--idle-window", type=float, default=5.0,
                   help="after a restart, idle = queue empty, all passed once, no write for this long (default 5)")
    p.add_argument("--restart-timeout", type=float, default=300.0,
                   help="give up waiting for idle after the restart, s (reported as not idle; default 300)")
    p.add_argument("--ready-timeout", type=float, default=1800.0, help="give up waiting for all Ready, s")
    p.add_argument("--workdir", default="/tmp/greenmodel-bench-scale", help="operator config and logs")
    p.add_argument("--keep", action="store_true", help="keep namespaces and nodes afterwards")
    p.add_argument("--json", action="store_true", help="print the numbers as one JSON object instead of a table")
    args = p.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=1) if args.json else table(result))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
