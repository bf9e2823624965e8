"""The operator's own configuration: the ONE place endpoints and credentials enter.

A namespaced GreenModel carries no URL, Secret or cross-namespace reference (CONVENTIONS 11,
REFERENCE "Security lessons": KEDA issue 7697). Everything the operator talks to outside the
Kubernetes API is named here, in a YAML file the cluster admin owns (the Helm chart renders the
same file from its values), and loaded once at start-up by ``load_settings(path)``.

Shape (camelCase keys, as in the chart's values)::

    carbon:
      refreshIntervalSeconds: 300     # each provider is called at most once per zone per interval
      forecastRefreshIntervalSeconds: 3600
      maxDataAgeSeconds: 7200         # older readings are rejected / expire from the cache
      maxFutureSkewSeconds: 300
      maxPlausibleGramsPerKilowattHour: 2000
      maxBackoffSeconds: 3600
      providers:                      # name -> provider; the name is what regions refer to
        electricitymaps:
          type: electricitymaps
          endpoint: https://api.electricitymap.org
          credentials: {secretKeyRef: {name: greenmodel-carbon, key: electricitymaps-token}}
        static:
          type: static
          gramsPerKilowattHour: {GB: 234.3, DE: 474.3}
      regions:                        # Kubernetes region label -> grid zone, provider chain, PUE
        europe-west2: {zone: GB, providers: [electricitymaps, static], pue: 1.10}
    prometheus:
      url: http://prometheus.monitoring.svc:9090
    network:
      allowInsecureHttpHosts: []      # http:// (and private addresses) allowed only for these hosts
      allowPrivateHosts: []           # https to loopback/link-local/private addresses only for these
    reconcile:
      timerIntervalSeconds: 30

Unknown keys are errors (``extra="forbid"``): a typo in an admin's config must fail loudly at
start-up, not silently fall back to a default.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union
from urllib.parse import urlsplit

import yaml
from kubernetes import client, config
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

ProviderType = Literal["static", "electricitymaps", "watttime", "ukgrid", "prometheus"]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SecretKeyRef(_Model):
    """A key of a Secret in the operator's own namespace (or ``namespace`` if given)."""

    name: str
    key: str
    namespace: str | None = None


class CredentialRef(_Model):
    """Where one credential comes from. Exactly one of env / file / secretKeyRef.

    ``env`` and ``file`` are resolved locally (the chart mounts the Secret as env or file);
    ``secretKeyRef`` is read through the Kubernetes API by a ``secret_reader`` callback.
    Values are never logged and never part of ``repr``.
    """

    env: str | None = None
    file: str | None = None
    secret_key_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "CredentialRef":
        given = [x for x in (self.env, self.file, self.secret_key_ref) if x is not None]
        if len(given) != 1:
            raise ValueError("a credential reference needs exactly one of env, file, secretKeyRef")
        return self

    def resolve(self, secret_reader: Callable[[SecretKeyRef], str] | None = None) -> str:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise CredentialError(f"environment variable {self.env} is not set")
            return value
        if self.file is not None:
            try:
                return Path(self.file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CredentialError(f"cannot read credential file {self.file}: {exc.strerror}") from None
        assert self.secret_key_ref is not None
        if secret_reader is None:
            raise CredentialError(
                f"credential is in Secret {self.secret_key_ref.name}/{self.secret_key_ref.key} "
                "but no Kubernetes secret reader was given"
            )
        return secret_reader(self.secret_key_ref)


class CredentialError(RuntimeError):
    """A configured credential could not be resolved (missing env var, file or Secret)."""


class BasicCredentials(_Model):
    username: CredentialRef
    password: CredentialRef


class _ProviderBase(_Model):
    # Per-provider override of the zone name a region maps to is in RegionSettings.provider_zones.
    pass


class StaticProvider(_ProviderBase):
    type: Literal["static"]
    grams_per_kilowatt_hour: dict[str, float] = Field(default_factory=dict)
    source_note: str = ""

    @field_validator("grams_per_kilowatt_hour")
    @classmethod
    def _non_negative(cls, v: dict[str, float]) -> dict[str, float]:
        for zone, value in v.items():
            if not (0 <= value <= 2000):
                raise ValueError(f"static intensity for {zone} must be within 0..2000 g/kWh, got {value}")
        return v


class ElectricityMapsProvider(_ProviderBase):
    type: Literal["electricitymaps"]
    endpoint: str = "https://api.electricitymap.org"
    credentials: CredentialRef | None = None
    # Electricity Maps returns lifecycle (LCA) intensity unless asked for "direct".
    emission_factor_type: Literal["lifecycle", "direct"] = "lifecycle"


class WattTimeProvider(_ProviderBase):
    type: Literal["watttime"]
    endpoint: str = "https://api.watttime.org"
    credentials: BasicCredentials | None = None
    signal_type: Literal["co2_moer"] = "co2_moer"


class UKGridProvider(_ProviderBase):
    type: Literal["ukgrid"]
    endpoint: str = "https://api.carbonintensity.org.uk"


class PrometheusIntensityProvider(_ProviderBase):
    type: Literal["prometheus"]
    # PromQL returning one sample for the zone; "{zone}" is replaced by the provider zone.
    query: str = 'grid_carbon_intensity_grams_per_kilowatt_hour{zone="{zone}"}'
    url: str | None = None  # defaults to prometheus.url


ProviderSettings = Annotated[
    Union[
        StaticProvider,
        ElectricityMapsProvider,
        WattTimeProvider,
        UKGridProvider,
        PrometheusIntensityProvider,
    ],
    Field(discriminator="type"),
]


class RegionSettings(_Model):
    zone: str
    providers: list[str] = Field(min_length=1)
    pue: float = Field(default=1.1, ge=1.0, le=3.0)
    # Provider-specific name of the same grid area, e.g. {watttime: "UK", ukgrid: "13"}.
    provider_zones: dict[str, str] = Field(default_factory=dict)


class CarbonSettings(_Model):
    refresh_interval_seconds: float = Field(default=300, gt=0)
    forecast_refresh_interval_seconds: float = Field(default=3600, gt=0)
    max_data_age_seconds: float = Field(default=7200, gt=0)
    max_future_skew_seconds: float = Field(default=300, ge=0)
    max_plausible_grams_per_kilowatt_hour: float = Field(default=2000, gt=0)
    max_backoff_seconds: float = Field(default=3600, gt=0)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    regions: dict[str, RegionSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _chains_exist(self) -> "CarbonSettings":
        for region, rs in self.regions.items():
            for name in rs.providers:
                if name not in self.providers:
                    raise ValueError(f"region {region} refers to unknown carbon provider {name!r}")
            for name in rs.provider_zones:
                if name not in rs.providers:
                    raise ValueError(f"region {region}: providerZones names {name!r} which is not in its chain")
        zones: dict[str, list[str]] = {}
        for region, rs in self.regions.items():
            zones.setdefault(rs.zone, [])
            if zones[rs.zone] and self.regions[zones[rs.zone][0]].providers != rs.providers:
                raise ValueError(
                    f"regions {zones[rs.zone][0]} and {region} share zone {rs.zone} "
                    "but list different provider chains (one cache per zone)"
                )
            zones[rs.zone].append(region)
        return self


class PrometheusSettings(_Model):
    url: str | None = None
    query_timeout_seconds: float = Field(default=5, gt=0, le=60)
    rate_window: str = Field(default="2m", pattern=r"^[0-9]+[smh]$")
    refresh_interval_seconds: float = Field(default=30, gt=0)
    # Label selectors; "{namespace}", "{instance}" and "{model}" are substituted (values escaped).
    # The default assumes the scrape config maps pod labels with labelmap (app.kubernetes.io/instance
    # becomes app_kubernetes_io_instance), as kube-prometheus' PodMonitor relabelling commonly does.
    vllm_selector: str = 'namespace="{namespace}",app_kubernetes_io_instance="{instance}"'
    # DCGM and Kepler name pods, not GreenModels: match the names a Deployment gives its pods,
    # "<greenmodel>-<10-hex placement hash>-<ReplicaSet hash>-<5 chars>", exactly (PromQL regexes are
    # anchored), so "chat" never takes the energy of "chat-large". GreenModel names longer than 36
    # characters are truncated in pod names and are not matched: their energy stays Estimated.
    dcgm_selector: str = 'namespace="{namespace}",pod=~"{instance}-[0-9a-f]{{10}}-[a-z0-9]{{1,10}}-[a-z0-9]{{5}}"'
    kepler_selector: str = ('container_namespace="{namespace}",'
                            'pod_name=~"{instance}-[0-9a-f]{{10}}-[a-z0-9]{{1,10}}-[a-z0-9]{{5}}"')


class NetworkSettings(_Model):
    allow_insecure_http_hosts: list[str] = Field(default_factory=list)
    allow_private_hosts: list[str] = Field(default_factory=list)
    connect_timeout_seconds: float = Field(default=3.05, gt=0, le=30)
    read_timeout_seconds: float = Field(default=10, gt=0, le=120)
    max_response_bytes: int = Field(default=1 << 20, gt=0, le=64 << 20)
    use_environment_proxies: bool = False


class ReconcileSettings(_Model):
    timer_interval_seconds: float = Field(default=30, gt=0)


class Settings(_Model):
    carbon: CarbonSettings = Field(default_factory=CarbonSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)

    @model_validator(mode="after")
    def _endpoints_are_safe(self) -> "Settings":
        urls: list[tuple[str, str]] = []
        for name, p in self.carbon.providers.items():
            url = getattr(p, "endpoint", None) or getattr(p, "url", None)
            if url:
                urls.append((f"carbon provider {name}", url))
        if self.prometheus.url:
            urls.append(("prometheus.url", self.prometheus.url))
        for what, url in urls:
            check_url_policy(url, self.network, what=what)
        return self

    # Convenience lookups used by the reconciler.
    def region(self, region: str) -> RegionSettings | None:
        return self.carbon.regions.get(region)

    def zone_for_region(self, region: str) -> str | None:
        rs = self.carbon.regions.get(region)
        return rs.zone if rs else None

    def pue_for_region(self, region: str) -> float | None:
        rs = self.carbon.regions.get(region)
        return rs.pue if rs else None

    def static_intensity(self, region: str) -> tuple[str, float] | None:
        """(provider name, g/kWh) of the static link in the region's provider chain: its annual mean."""
        rs = self.carbon.regions.get(region)
        if rs is None:
            return None
        for pname in rs.providers:
            prov = self.carbon.providers.get(pname)
            if prov is not None and prov.type == "static":
                pzone = rs.provider_zones.get(pname, rs.zone)
                if pzone in prov.grams_per_kilowatt_hour:
                    return pname, float(prov.grams_per_kilowatt_hour[pzone])
        return None

    def zones(self) -> dict[str, RegionSettings]:
        """One entry per distinct zone (the first region naming it), for building one cache per zone."""
        out: dict[str, RegionSettings] = {}
        for rs in self.carbon.regions.values():
            out.setdefault(rs.zone, rs)
        return out


class SettingsError(ValueError):
    """The configuration file is missing, unreadable or invalid."""


def check_url_policy(url: str, network: NetworkSettings, *, what: str = "endpoint") -> None:
    """Static URL checks done at load time (address checks happen per request in signals.http)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise ValueError(f"{what}: {url!r} must be an https:// URL")
    if not parts.hostname:
        raise ValueError(f"{what}: {url!r} has no host")
    if parts.username or parts.password:
        raise ValueError(f"{what}: credentials in URLs are not allowed; use a credentials reference")
    if parts.scheme == "http" and parts.hostname not in network.allow_insecure_http_hosts:
        raise ValueError(
            f"{what}: {url!r} uses plain http; add {parts.hostname!r} to "
            "network.allowInsecureHttpHosts only for local testing"
        )


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load the YAML config file; ``None`` gives the built-in defaults (no providers)."""
    if path is None:
        return Settings()
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read operator config {path}: {exc.strerror}") from None
    try:
        data: Any = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"operator config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"operator config {path} must be a mapping at the top level")
    try:
        return Settings.model_validate(data)
    except ValueError as exc:
        raise SettingsError(f"operator config {path} is invalid: {exc}") from None


def operator_namespace() -> str:
    """The namespace the operator runs in (its Secrets live there)."""
    for var in ("GREENMODEL_NAMESPACE", "POD_NAMESPACE"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    except OSError:
        return "greenmodel-system"


def kubernetes_secret_reader(default_namespace: str | None = None) -> Callable[[SecretKeyRef], str]:
    """A ``secret_reader`` that reads a Secret key through the Kubernetes API (needs RBAC ``get`` on
    that Secret). The client is configured on first use (in-cluster, else kubeconfig), so loading the
    settings never needs a cluster."""
    api = []

    def read(ref: SecretKeyRef) -> str:
        if not api:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api.append(client.CoreV1Api())
        try:
            secret = api[0].read_namespaced_secret(ref.name, ref.namespace or default_namespace or operator_namespace())
        except Exception as exc:  # ApiException (403/404), connection errors
            raise CredentialError(f"cannot read Secret {ref.name}: {getattr(exc, 'reason', None) or exc}") from None
        data = (secret.data or {}).get(ref.key)
        if data is None:
            raise CredentialError(f"Secret {ref.name} has no key {ref.key}")
        return base64.b64decode(data).decode("utf-8").strip()

    return read
