"""Operator settings: the one place endpoints and credentials enter."""

from pathlib import Path

import pytest

from greenmodel.settings import (
    CredentialError,
    CredentialRef,
    SecretKeyRef,
    Settings,
    SettingsError,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]


def _cfg(**carbon):
    base = {
        "providers": {"static": {"type": "static", "gramsPerKilowattHour": {"GB": 200}}},
        "regions": {"europe-west2": {"zone": "GB", "providers": ["static"], "pue": 1.2}},
    }
    base.update(carbon)
    return {"carbon": base}


def test_example_config_loads_with_four_regions():
    s = load_settings(ROOT / "examples" / "operator-config.yaml")
    assert {r: s.zone_for_region(r) for r in s.carbon.regions} == {
        "europe-west2": "GB",
        "europe-west3": "DE",
        "europe-west9": "FR",
        "europe-central2": "PL",
    }
    static = s.carbon.providers["static"]
    # derived from the 2022 Electricity Maps series: PL is the dirtiest and FR the cleanest
    vals = static.grams_per_kilowatt_hour
    assert vals["FR"] < vals["GB"] < vals["DE"] < vals["PL"]
    assert s.pue_for_region("europe-west9") == pytest.approx(1.10)
    assert s.pue_for_region("nowhere") is None


def test_camel_case_keys_and_defaults():
    s = Settings.model_validate(_cfg(refreshIntervalSeconds=60))
    assert s.carbon.refresh_interval_seconds == 60
    assert s.carbon.max_data_age_seconds == 7200
    assert s.network.max_response_bytes == 1 << 20


def test_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="refreshIntervalSecond"):
        Settings.model_validate(_cfg(refreshIntervalSecond=60))


def test_region_must_name_configured_providers():
    cfg = _cfg()
    cfg["carbon"]["regions"]["europe-west2"]["providers"] = ["electricitymaps"]
    with pytest.raises(ValueError, match="unknown carbon provider 'electricitymaps'"):
        Settings.model_validate(cfg)


def test_plain_http_endpoint_refused_unless_host_allowed():
    cfg = _cfg()
    cfg["carbon"]["providers"]["em"] = {"type": "electricitymaps", "endpoint": "http://127.0.0.1:8080"}
    with pytest.raises(ValueError, match="allowInsecureHttpHosts"):
        Settings.model_validate(cfg)
    cfg["network"] = {"allowInsecureHttpHosts": ["127.0.0.1"]}
    s = Settings.model_validate(cfg)
    assert s.carbon.providers["em"].endpoint == "http://127.0.0.1:8080"


def test_credentials_in_url_refused():
    cfg = _cfg()
    cfg["prometheus"] = {"url": "https://user:pw@prom.example.com"}
    with pytest.raises(ValueError, match="credentials in URLs"):
        Settings.model_validate(cfg)


def test_static_value_out_of_range_refused():
    cfg = _cfg()
    cfg["carbon"]["providers"]["static"]["gramsPerKilowattHour"]["GB"] = -1
    with pytest.raises(ValueError, match="0..2000"):
        Settings.model_validate(cfg)


def test_zone_shared_by_two_regions_needs_same_chain():
    cfg = _cfg()
    cfg["carbon"]["providers"]["s2"] = {"type": "static"}
    cfg["carbon"]["regions"]["uk-south"] = {"zone": "GB", "providers": ["s2"]}
    with pytest.raises(ValueError, match="one cache per zone"):
        Settings.model_validate(cfg)


def test_credential_ref_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("GM_TEST_TOKEN", "abc")
    assert CredentialRef(env="GM_TEST_TOKEN").resolve() == "abc"
    f = tmp_path / "tok"
    f.write_text("xyz\n")
    assert CredentialRef(file=str(f)).resolve() == "xyz"
    ref = CredentialRef.model_validate({"secretKeyRef": {"name": "s", "key": "k"}})
    assert ref.resolve(lambda r: f"{r.name}/{r.key}") == "s/k"
    with pytest.raises(CredentialError):
        ref.resolve(None)
    with pytest.raises(CredentialError, match="NOPE_NOT_SET"):
        CredentialRef(env="NOPE_NOT_SET").resolve()
    with pytest.raises(ValueError, match="exactly one"):
        CredentialRef(env="A", file="/b")
    assert isinstance(ref.secret_key_ref, SecretKeyRef)


def test_load_settings_errors(tmp_path):
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("carbon: [1, 2")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n")
    with pytest.raises(SettingsError, match="mapping"):
        load_settings(lst)
    assert load_settings(None).carbon.regions == {}


def test_secret_key_ref_credentials_resolved_lazily_by_the_reader():
    from greenmodel.signals.carbon.base import ProviderError, Reason
    from greenmodel.signals.carbon.registry import build_providers

    cfg = _cfg()
    cfg["carbon"]["providers"]["em"] = {
        "type": "electricitymaps",
        "credentials": {"secretKeyRef": {"name": "greenmodel-carbon", "key": "token"}},
    }
    s = Settings.model_validate(cfg)
    asked = []

    def reader(ref):
        asked.append((ref.name, ref.key))
        raise CredentialError("Secret greenmodel-carbon not found")

    provs = build_providers(s, secret_reader=reader)
    assert asked == []  # nothing resolved at build time: a missing Secret must not crash start-up
    with pytest.raises(ProviderError) as e:
        provs["em"].latest("GB", "GB")
    assert e.value.reason is Reason.MISCONFIGURED and asked == [("greenmodel-carbon", "token")]


def test_default_gpu_energy_selectors_match_exactly_the_pods_of_one_greenmodel():
    # DCGM and Kepler know pods, not GreenModels: the default selectors must take the pods a Deployment of
    # GreenModel "chat" creates, and never those of "chat-large" (PromQL regexes are fully anchored).
    import re

    from greenmodel.kube.names import Placement, deployment_name
    from greenmodel.settings import PrometheusSettings

    def pod_regex(selector: str) -> str:
        sel = selector.format(namespace="ns", instance="chat", model="m")
        return re.search(r'pod(?:_name)?=~"([^"]+)"', sel).group(1)

    p = PrometheusSettings()
    for selector in (p.dcgm_selector, p.kepler_selector):
        rx = pod_regex(selector)
        mine = deployment_name("chat", Placement("v", "europe-west2", "NVIDIA-L4")) + "-5d8f9c7b6d-x2k9q"
        other = deployment_name("chat-large", Placement("v", "europe-west2", "NVIDIA-L4")) + "-5d8f9c7b6d-x2k9q"
        assert re.fullmatch(rx, mine), (rx, mine)
        assert not re.fullmatch(rx, other), (rx, other)
        assert not re.fullmatch(rx, "chat-serving-0")
