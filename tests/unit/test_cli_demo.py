"""The pure parts of `greenmodel demo`: the operator config it generates and what it shows."""

from __future__ import annotations

from greenmodel.cli import demo
from greenmodel.settings import Settings


def test_demo_config_is_valid_and_points_every_region_at_the_replay_server():
    cfg = demo.operator_config("http://127.0.0.1:43123")
    settings = Settings.model_validate(cfg)
    for region, zone in demo.REGIONS.items():
        rs = settings.region(region)
        assert rs.zone == zone and rs.providers == ["electricitymaps", "static"]
    assert settings.carbon.providers["electricitymaps"].endpoint == "http://127.0.0.1:43123"
    assert settings.network.allow_insecure_http_hosts == ["127.0.0.1"]


def test_grid_lines_mark_the_serving_region_and_scale_bars():
    lines = demo.describe_grid({"europe-west2": 200.0, "europe-west9": 50.0, "europe-central2": 800.0},
                               {"europe-west9"}, "2022-03-07 12:00")
    fr = next(l for l in lines if "europe-west9" in l)
    pl = next(l for l in lines if "europe-central2" in l)
    de = next(l for l in lines if "europe-west3" in l)
    assert "serving here" in fr and "serving here" not in pl
    assert pl.count("#") == 30 and fr.count("#") == 2  # 50/800 of 30 columns, rounded
    assert "?" in de  # unknown is shown as unknown, not zero


def test_decision_lines_from_status():
    gm = {"metadata": {"name": "chat", "namespace": "greenmodel-demo"},
          "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Placed", "message": "ok"},
                                    {"type": "CarbonDataAvailable", "status": "False", "reason": "Stale", "message": "old"}],
                     "variant": "llama-3.1-8b-fp8", "region": "europe-west9", "gpuProduct": "NVIDIA-L4",
                     "replicas": 2, "readyReplicas": 1, "predicted": {"gramsPerMillionTokens": 9.61},
                     "intensity": {"gramsPerKilowattHour": 113.2, "zone": "FR", "source": "electricitymaps"},
                     "decision": {"reason": "Placed", "message": "cheapest at the SLO"}}}
    lines = demo.describe_decision(gm)
    assert lines[0] == "GreenModel greenmodel-demo/chat: Ready=True (Placed)"
    assert lines[1] == ("  decision: llama-3.1-8b-fp8 on NVIDIA-L4 in europe-west9, 1/2 ready, "
                        "9.6 gCO2e per million tokens at 113 g/kWh")
    assert lines[2] == "  why: Placed: cheapest at the SLO"
    assert any("CarbonDataAvailable=False" in l for l in lines)


def test_pod_lines_show_node_region():
    nodes = {"gpu-fr-1": {"metadata": {"labels": {"topology.kubernetes.io/region": "europe-west9",
                                                   "nvidia.com/gpu.product": "NVIDIA-L4"}}}}
    pods = [{"metadata": {"name": "chat-abc"}, "spec": {"nodeName": "gpu-fr-1"}, "status": {"phase": "Running"}}]
    (header, line) = demo.describe_pods(pods, nodes)
    assert "europe-west9" in line and "NVIDIA-L4" in line and "Running" in line


def test_progress_runner_reports_success_and_failure(tmp_path, capsys):
    import pytest

    screen = demo.Screen(plain=True)
    demo.with_progress("fake build", ["bash", "-c", "echo compiling; sleep 0.3; echo linked"], {"PATH": "/usr/bin:/bin"},
                       tmp_path / "ok.log", screen)
    assert "fake build: done in" in capsys.readouterr().out
    with pytest.raises(demo.DemoError) as err:
        demo.with_progress("fake build", ["bash", "-c", "echo step one; echo boom >&2; exit 3"], {"PATH": "/usr/bin:/bin"},
                           tmp_path / "bad.log", screen)
    assert "exit 3" in str(err.value) and "boom" in str(err.value)
