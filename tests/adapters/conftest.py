"""Fixtures for adapter tests: local provider servers on 127.0.0.1 (real wire formats)."""

import pytest

from greenmodel.settings import Settings
from greenmodel.testing.electricitymaps import ElectricityMapsServer
from greenmodel.testing.replay import GridReplay


@pytest.fixture
def em_server():
    srv = ElectricityMapsServer(GridReplay(start="2022-03-07T00:00", hours_per_second=1 / 3600), token="t0ken").start()
    yield srv
    srv.stop()


def local_settings(providers: dict, regions: dict | None = None, **carbon) -> Settings:
    """Settings that allow plain http to 127.0.0.1 (local tests only)."""
    regions = regions or {
        "europe-west2": {"zone": "GB", "providers": list(providers)},
        "europe-west3": {"zone": "DE", "providers": list(providers)},
        "europe-west9": {"zone": "FR", "providers": list(providers)},
        "europe-central2": {"zone": "PL", "providers": list(providers)},
    }
    return Settings.model_validate(
        {
            "carbon": {"providers": providers, "regions": regions, **carbon},
            "network": {"allowInsecureHttpHosts": ["127.0.0.1"], "connectTimeoutSeconds": 1, "readTimeoutSeconds": 1},
        }
    )


@pytest.fixture
def make_local_settings():
    return local_settings
