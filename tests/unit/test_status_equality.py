"""`greenmodel plan -o yaml` and the live pass publish the same status for the same inputs, field by field.

The inputs are given to each the way a user gives them: the live pass reads the example operator config
(static intensities, PUE) and a fleet of nodes through its caches; the CLI gets the same config file and the
fleet's free GPUs as --free-gpus flags written out here from the fleet's definition.
"""

from __future__ import annotations

import argparse
import copy

import pytest
import yaml

from greenmodel.cli import plan as cli_plan
from test_handlers_pass import REPO, SPEC, T0, World, node

REGIONS = ("europe-west2", "europe-west3", "europe-west9", "europe-central2")
PRODUCTS = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4")
PLAN_FIELDS = ("variant", "region", "gpuProduct", "replicas", "intensity", "predicted", "decision", "alternatives")


def fleet(gpus):
    """One node per region and product with ``gpus(region, product)`` GPUs."""
    return [node(f"{r}-{p[-4:]}", r, p, gpus(r, p)) for r in REGIONS for p in PRODUCTS]


def cli_status(capsys, tmp_path, spec, gpus) -> dict:
    gm = {"apiVersion": "greenmodel.dev/v1alpha1", "kind": "GreenModel",
          "metadata": {"name": "chat", "namespace": "team"}, "spec": copy.deepcopy(spec)}
    f = tmp_path / "gm.yaml"
    f.write_text(yaml.safe_dump(gm))
    argv = ["plan", "-f", str(f), "--config", str(REPO / "examples" / "operator-config.yaml"), "-o", "yaml"]
    for r in REGIONS:
        for p in PRODUCTS:
            argv += ["--free-gpus", f"{r}/{p}={gpus(r, p)}"]
    parser = argparse.ArgumentParser()
    cli_plan.register(parser.add_subparsers())
    assert cli_plan.run(parser.parse_args(argv), now=T0) == cli_plan.EXIT_OK
    return yaml.safe_load(capsys.readouterr().out)["status"]


CASES = {
    "a roomy fleet": (SPEC, lambda r, p: 8),
    "the cleanest region has no GPUs": (SPEC, lambda r, p: 0 if r == "europe-west9" else 8),
    "heavy load on few GPUs": ({**SPEC, "load": {"outputTokensPerSecond": 6000}, "maxReplicas": 16},
                               lambda r, p: 2 if p == "NVIDIA-L4" else 4),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_status_equals_live_status_field_by_field(case, capsys, tmp_path):
    spec, gpus = CASES[case]
    w = World(nodes=fleet(gpus), spec=spec)
    w.run()
    live = w.gm()["status"]
    cli = cli_status(capsys, tmp_path, spec, gpus)
    assert sorted(cli) == sorted(k for k in PLAN_FIELDS if k in live), (sorted(cli), sorted(live))
    for k in PLAN_FIELDS:
        assert cli.get(k) == live.get(k), (k, cli.get(k), live.get(k))
