#!/usr/bin/env python3
"""Simulated GPU nodes from a topology file (e2e/topology.yaml), for e2e/cluster.sh.

    nodes.py render TOPOLOGY            print the Node objects as a JSON List
    nodes.py sync TOPOLOGY KUBECTL      make the cluster's simulated nodes equal the topology:
                                        create missing, replace changed, delete the ones no longer listed

Only nodes labelled greenmodel.dev/simulated=true are touched. Needs PyYAML (system python3 or the venv).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys

import yaml

SIMULATED = "greenmodel.dev/simulated"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
POD_CIDR_BASE = ipaddress.ip_network("10.128.0.0/9")  # room for 32768 distinct /24s


class TopologyError(ValueError):
    pass


def _pod_cidr(index: int) -> str:
    if index >= 2 ** (24 - POD_CIDR_BASE.prefixlen):
        raise TopologyError(f"more than {2 ** (24 - POD_CIDR_BASE.prefixlen)} nodes")
    return str(ipaddress.ip_network((int(POD_CIDR_BASE.network_address) + 256 * index, 24)))


def render(topology: dict) -> list[dict]:
    products = topology.get("products") or {}
    regions = topology.get("regions") or {}
    if not products or not regions:
        raise TopologyError("topology needs 'products' and 'regions'")
    nodes: list[dict] = []
    counters: dict[str, int] = {}
    for region, groups in regions.items():
        for group in groups:
            product = group.get("product")
            if product not in products:
                raise TopologyError(f"{region}: unknown product {product!r} (known: {', '.join(products)})")
            spec = {**products[product], **{k: v for k, v in group.items() if k not in ("zone", "product", "count", "labels")}}
            zone = str(group.get("zone", "a"))
            for _ in range(int(group.get("count", 1))):
                prefix = f"{region}-{zone}-{spec['short']}"
                idx = counters.get(prefix, 0)
                counters[prefix] = idx + 1
                name = f"{prefix}-{idx}"
                gpus = str(int(spec["gpus"]))
                labels = {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    SIMULATED: "true",
                    "node.kubernetes.io/instance-type": str(spec["instanceType"]),
                    "topology.kubernetes.io/region": region,
                    "topology.kubernetes.io/zone": f"{region}-{zone}",
                    "nvidia.com/gpu.present": "true",
                    "nvidia.com/gpu.product": product,
                    "nvidia.com/gpu.count": gpus,
                    "nvidia.com/gpu.memory": str(int(spec["memoryMiB"])),
                    "nvidia.com/gpu.family": str(spec.get("family", "")),
                    "nvidia.com/gpu.compute.major": str(spec.get("computeMajor", "")),
                    "nvidia.com/gpu.compute.minor": str(spec.get("computeMinor", "")),
                    **{str(k): str(v) for k, v in (group.get("labels") or {}).items()},
                }
                labels = {k: v for k, v in labels.items() if v != ""}
                resources = {
                    "cpu": str(spec["cpu"]),
                    "memory": str(spec["memory"]),
                    "ephemeral-storage": "1Ti",
                    "pods": "110",
                    "nvidia.com/gpu": gpus,
                }
                cidr = _pod_cidr(len(nodes))
                nodes.append({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": labels,
                        "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    },
                    "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
                    "status": {"capacity": resources, "allocatable": dict(resources)},
                })
    return nodes


def _differs(want: dict, have: dict) -> str | None:
    """Why an existing node must be replaced (podCIDR is immutable, status is only taken at create), or None."""
    hl = have["metadata"].get("labels") or {}
    for k, v in want["metadata"]["labels"].items():
        if hl.get(k) != v:
            return f"label {k}={hl.get(k)!r}, want {v!r}"
    if (have.get("spec") or {}).get("podCIDR") != want["spec"]["podCIDR"]:
        return "podCIDR"
    cap = (have.get("status") or {}).get("capacity") or {}
    for k, v in want["status"]["capacity"].items():
        if cap.get(k) != v:
            return f"capacity {k}={cap.get(k)!r}, want {v!r}"
    return None


def _kubectl(kubectl: str, *args: str, input: str | None = None) -> str:
    p = subprocess.run([kubectl, *args], input=input, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"nodes: kubectl {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout


def sync(topology: dict, kubectl: str) -> None:
    want = {n["metadata"]["name"]: n for n in render(topology)}
    have = {n["metadata"]["name"]: n
            for n in json.loads(_kubectl(kubectl, "get", "nodes", "-l", f"{SIMULATED}=true", "-o", "json"))["items"]}
    stale = sorted(set(have) - set(want))
    changed = {name: why for name in sorted(set(have) & set(want)) if (why := _differs(want[name], have[name]))}
    if stale or changed:
        _kubectl(kubectl, "delete", "node", "--wait=true", *stale, *changed)
    create = [want[name] for name in want if name not in have or name in changed]
    if create:
        _kubectl(kubectl, "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": create}))
    for name, why in changed.items():
        print(f"nodes: replaced {name} ({why})", file=sys.stderr)
    gpus = sum(int(n["status"]["capacity"]["nvidia.com/gpu"]) for n in want.values())
    regions = len({n["metadata"]["labels"]["topology.kubernetes.io/region"] for n in want.values()})
    print(f"nodes: {len(want)} simulated GPU nodes in {regions} regions ({gpus} GPUs): "
          f"{len(create) - len(changed)} created, {len(changed)} replaced, {len(stale)} deleted", file=sys.stderr)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("render", "sync"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(argv[1]) as f:
            topology = yaml.safe_load(f) or {}
        if argv[0] == "render":
            json.dump({"apiVersion": "v1", "kind": "List", "items": render(topology)}, sys.stdout, indent=1)
        else:
            sync(topology, argv[2])
    except (OSError, yaml.YAMLError, TopologyError, KeyError) as e:
        print(f"nodes: bad topology {argv[1]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
