"""Build the configured carbon providers from settings (the only place they are constructed)."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from greenmodel.settings import CredentialError, Settings, kubernetes_secret_reader

from ..http import SafeHttpClient
from .base import CarbonProvider, ProviderError, Reason, utcnow
from .electricitymaps import ElectricityMapsProvider
from .prometheus import PrometheusIntensityProvider
from .static import StaticCarbonProvider
from .ukgrid import UKGridProvider
from .watttime import WattTimeProvider


def _credential(ref, secret_reader) -> Callable[[], str] | None:
    """A lazy credential: resolved on use, so a missing Secret fails that provider (and the chain
    falls back) instead of crashing the operator at start-up."""
    if ref is None:
        return None

    def get() -> str:
        try:
            return ref.resolve(secret_reader)
        except CredentialError as exc:
            raise ProviderError(Reason.MISCONFIGURED, str(exc)) from None

    return get


def build_providers(
    settings: Settings,
    *,
    http=None,
    clock: Callable[[], datetime] = utcnow,
    secret_reader=None,
) -> dict[str, CarbonProvider]:
    if secret_reader is None:  # only used by providers whose credentials are a secretKeyRef
        secret_reader = kubernetes_secret_reader()
    if http is None:
        http = SafeHttpClient(settings.network, use_environment_proxies=settings.network.use_environment_proxies)
    out: dict[str, CarbonProvider] = {}
    for name, p in settings.carbon.providers.items():
        if p.type == "static":
            out[name] = StaticCarbonProvider(name, p.grams_per_kilowatt_hour, note=p.source_note, clock=clock)
        elif p.type == "electricitymaps":
            out[name] = ElectricityMapsProvider(
                name, p.endpoint, http, token=_credential(p.credentials, secret_reader),
                emission_factor_type=p.emission_factor_type, clock=clock,
            )
        elif p.type == "watttime":
            creds = p.credentials
            out[name] = WattTimeProvider(
                name, p.endpoint, http,
                username=_credential(creds.username if creds else None, secret_reader),
                password=_credential(creds.password if creds else None, secret_reader),
                clock=clock,
            )
        elif p.type == "ukgrid":
            out[name] = UKGridProvider(name, p.endpoint, http, clock=clock)
        elif p.type == "prometheus":
            url = p.url or settings.prometheus.url
            if not url:
                raise ValueError(f"carbon provider {name}: no url and no prometheus.url configured")
            out[name] = PrometheusIntensityProvider(name, url, p.query, http, clock=clock)
        else:  # pragma: no cover - the settings schema forbids it
            raise ValueError(f"unknown provider type {p.type}")
    return out
