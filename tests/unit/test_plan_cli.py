"""`greenmodel plan`: exit codes, output shapes and one-line errors (run in-process, no I/O beyond tmp files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from greenmodel.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "greenmodel.yaml")
GRID = ["--intensity", "europe-west2=180", "--intensity", "europe-west3=350", "--intensity", "europe-west9=35",
        "--intensity", "europe-central2=650"]


def run(capsys, *argv):
    code = main(["plan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_plan_has_the_promised_fields(capsys):
    code, out, err = run(capsys, "-f", EXAMPLE, *GRID, "-o", "json")
    assert code == 0, err
    j = json.loads(out)
    assert j["feasible"] is True
    for k in ("variant", "region", "gpuProduct", "replicas", "predicted", "alternatives"):
        assert j[k] is not None
    p = j["predicted"]
    for k in ("ttftP95Milliseconds", "interTokenP95Milliseconds", "powerWatts", "joulesPerToken",
              "gramsPerMillionTokens"):
        assert isinstance(p[k], (int, float))
    assert j["region"] == "europe-west9"  # 35 g/kWh, no restriction in the example
    assert all(a["reason"] and "variant" in a for a in j["alternatives"])
    assert any(a["reason"] == "BelowQualityFloor" for a in j["alternatives"])
    assert any(a["reason"] == "HigherScore" and a["predicted"]["gramsPerMillionTokens"] for a in j["alternatives"])


def test_free_gpus_and_load_flags_change_the_plan(capsys):
    # No GPUs in the clean region: the plan moves elsewhere and says why the clean region lost.
    free = ["--free-gpus", "europe-west9/NVIDIA-H100-80GB-HBM3=0", "--free-gpus", "europe-west2/NVIDIA-H100-80GB-HBM3=16"]
    code, out, _ = run(capsys, "-f", EXAMPLE, *GRID, *free, "--load", "30000", "-o", "json")
    j = json.loads(out)
    assert code == 0 and j["region"] == "europe-west2" and j["replicas"] >= 2
    assert j["load"] == {"outputTokensPerSecond": 30000.0, "source": "spec.load"}
    assert any(a["reason"] == "InsufficientGPUs" and a["region"] == "europe-west9" for a in j["alternatives"])


def test_table_and_yaml_outputs(capsys):
    code, out, _ = run(capsys, "-f", EXAMPLE, *GRID)
    assert code == 0 and out.startswith("FEASIBLE") and "WHY NOT" in out
    code, out, _ = run(capsys, "-f", EXAMPLE, *GRID, "-o", "yaml")
    assert code == 0 and yaml.safe_load(out)["feasible"] is True


def test_infeasible_exits_3_with_the_explanation(capsys, tmp_path):
    gm = yaml.safe_load(Path(EXAMPLE).read_text())
    gm["spec"]["quality"]["minScore"] = 95
    f = tmp_path / "gm.yaml"
    f.write_text(yaml.safe_dump(gm))
    code, out, err = run(capsys, "-f", str(f), *GRID, "-o", "json")
    assert code == 3
    j = json.loads(out)
    assert j["feasible"] is False and j["failedConstraints"][0]["field"] == "spec.quality.minScore"
    assert "spec.quality.minScore" in err and err.count("\n") == 1


@pytest.mark.parametrize("content,words", [
    ("spec: [unclosed", "not valid YAML at line 1"),
    ("apiVersion: greenmodel.dev/v1alpha1\nkind: Deployment\nspec: {}\n", "kind: expected 'GreenModel'"),
    ("kind: GreenModel\nspec:\n  model: {family: general-chat}\n  colour: green\n", "spec.colour: unknown field"),
    ("kind: GreenModel\nspec:\n  model: {family: general-chat}\n  minReplicas: 3\n  maxReplicas: 1\n",
     "`minReplicas` must be less than or equal to `maxReplicas`"),
])
def test_invalid_input_exits_2_with_one_line_naming_the_field(capsys, tmp_path, content, words):
    f = tmp_path / "gm.yaml"
    f.write_text(content)
    code, out, err = run(capsys, "-f", str(f), *GRID)
    assert code == 2 and out == ""
    assert words in err and err.count("\n") == 1, err


@pytest.mark.parametrize("flags,words", [
    (["--intensity", "europe-west2"], "--intensity: expected KEY=VALUE"),
    (["--intensity", "europe-west2=lots"], "--intensity: 'lots' is not a number"),
    (["--free-gpus", "europe-west2=3"], "--free-gpus: expected REGION/GPU_PRODUCT=COUNT"),
    ([], "--intensity: give at least one"),
])
def test_bad_flags_exit_2(capsys, flags, words):
    code, _, err = run(capsys, "-f", EXAMPLE, *flags)
    assert code == 2 and words in err


def test_bad_catalog_exits_2_naming_the_catalog(capsys, tmp_path):
    bad = tmp_path / "cat.yaml"
    bad.write_text((ROOT / "examples" / "invalid" / "catalog-idle-above-max.yaml").read_text())
    code, _, err = run(capsys, "-f", EXAMPLE, *GRID, "--catalog", str(bad))
    assert code == 2 and "--catalog" in err and "`idleWatts` must be less than or equal to `maxWatts`" in err


def test_regions_come_from_the_spec_when_it_restricts_them(capsys, tmp_path):
    gm = yaml.safe_load(Path(EXAMPLE).read_text())
    gm["spec"]["placement"] = {"regions": ["europe-central2"]}
    f = tmp_path / "gm.yaml"
    f.write_text(yaml.safe_dump(gm))
    code, out, _ = run(capsys, "-f", str(f), *GRID, "-o", "json")
    assert code == 0 and json.loads(out)["region"] == "europe-central2"
