"""The read half of a pass: a GreenModel body becomes a typed ``Subject`` (the parse boundary), and the caches,
the GPU inventory, the carbon cache and Prometheus become one frozen ``Seen``. Nothing here writes anything or
decides anything: ``planning.decide`` does.
"""

from __future__ import annotations

import logging
from importlib import resources

import yaml

from greenmodel.api.state import ServingMetrics
from greenmodel.api.v1alpha1 import GreenModelStatus, InvalidObject, ModelCatalog, parse_greenmodel, \
    parse_modelcatalog, parse_status
from greenmodel.kube import names
from greenmodel.kube.children import observe_children
from greenmodel.kube.inventory import Inventory, free_gpus
from greenmodel.planning.decide import Memory, Seen, Subject, Tuning
from greenmodel.planning.types import Intensity, RegionObs
from greenmodel.reconcile.runtime import Runtime
from greenmodel.settings import Settings
from greenmodel.signals.carbon.base import IntensityReading

log = logging.getLogger("greenmodel.operator")

_KIND = {"measured": "Measured", "estimated": "Estimated", "forecast": "Forecast", "static": "Static"}
_PACKAGED_CATALOG: dict | None = None


def parse(body: dict) -> Subject:
    """The GreenModel as typed input: identity, spec (or why it is invalid), stored status."""
    meta = body.get("metadata") or {}
    stored = parse_status(body) or GreenModelStatus()
    spec, invalid = None, None
    try:
        spec = parse_greenmodel(body).spec
    except InvalidObject as exc:
        invalid = str(exc)
    return Subject(namespace=meta.get("namespace", ""), name=meta.get("name", ""), uid=meta.get("uid", ""),
                   generation=meta.get("generation"), spec=spec, invalid=invalid,
                   deleting=bool(meta.get("deletionTimestamp")), stored=stored)


def packaged_default_catalog() -> dict | None:
    """The catalog shipped in the package (used when no ModelCatalog named `default` exists)."""
    global _PACKAGED_CATALOG
    if _PACKAGED_CATALOG is None:
        try:
            text = resources.files("greenmodel").joinpath("data/default-catalog.yaml").read_text()
        except (FileNotFoundError, OSError):
            return None
        docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
        _PACKAGED_CATALOG = next((d for d in docs if d.get("kind") == "ModelCatalog"), None)
    return _PACKAGED_CATALOG


def resolve_catalog(rt: Runtime, name: str) -> tuple[ModelCatalog | None, tuple[str, str] | None]:
    """(typed ModelCatalog, None) or (None, (reason, message))."""
    body = rt.catalogs.get(None, name)
    source = f"ModelCatalog {name}"
    if body is None and name == "default":
        body = packaged_default_catalog()
        source = "the packaged default catalog"
    if body is None:
        return None, ("CatalogNotFound", f"ModelCatalog {name!r} does not exist")
    # Parsed once per catalog version, not once per pass (it was a third of an idle pass's CPU).
    meta = body.get("metadata") or {}
    version = (source, meta.get("uid"), meta.get("resourceVersion"), meta.get("generation"))
    cacheable = meta.get("resourceVersion") is not None or body is _PACKAGED_CATALOG
    hit = rt.catalog_memo.get(name)
    if cacheable and hit is not None and hit[0] == version:
        return hit[1]  # type: ignore[return-value]
    try:
        result: tuple[ModelCatalog | None, tuple[str, str] | None] = (parse_modelcatalog(body), None)
    except InvalidObject as exc:
        result = None, ("CatalogInvalid", f"{source} is invalid: {exc}")
    if cacheable:
        rt.catalog_memo[name] = (version, result)
    return result


def intensity_from_reading(reading: IntensityReading | None) -> Intensity | None:
    if reading is None:
        return None
    static = reading.kind == "static"
    # An annual mean describes no particular hour: no timestamp, like the planner's static fallback.
    return Intensity(grams_per_kwh=float(reading.value), source=reading.source, zone=reading.zone,
                     timestamp=None if static else reading.timestamp, kind=_KIND.get(reading.kind, "Measured"))


def static_intensity(settings: Settings, region: str) -> Intensity | None:
    """The region's static annual mean: the static link of its provider chain (missingData StaticIntensity)."""
    found = settings.static_intensity(region)
    zone = settings.zone_for_region(region)
    if found is None or zone is None:
        return None
    return Intensity(grams_per_kwh=found[1], source=found[0], zone=zone, timestamp=None, kind="Static")


def carbon(rt: Runtime, inv: Inventory) -> tuple[dict[str, RegionObs], dict[str, tuple[str, str]]]:
    """Per region (configured or with GPU nodes): the planner's view (intensity, PUE, static fallback) and its
    zone's (reason, message)."""
    settings = rt.settings
    regions: dict[str, RegionObs] = {}
    signals: dict[str, tuple[str, str]] = {}
    for region in sorted(set(settings.carbon.regions) | {r for r, _ in inv}):
        zone = settings.zone_for_region(region)
        reading = None
        if zone is not None and rt.carbon is not None and zone in rt.carbon.zones():
            st = rt.carbon.status(zone)
            signals[region] = st.condition()[1:]
            # The last accepted reading, even if old: the planner applies maxHoldSeconds. Once the chain is
            # down to its static link, that is the last *live* reading: the annual mean is not live data, and
            # whether to use it is the GreenModel's missingData.carbonFallback (static_intensity below), not
            # the chain's.
            reading = st.live_reading if st.static_only and st.using_fallback else st.reading
        elif zone is None:
            signals[region] = ("NoZone", f"region {region} has no grid zone in the operator config")
        regions[region] = RegionObs(intensity=intensity_from_reading(reading),
                                    pue=settings.pue_for_region(region) or 1.2,
                                    static_intensity=static_intensity(settings, region))
    return regions, signals


def serving_metrics(rt: Runtime, gm: Subject) -> ServingMetrics | None:
    """This pass's serving metrics (None when no source is configured; an unreachable Prometheus is an
    unavailable answer, not None)."""
    if rt.serving_metrics is None:
        return None
    try:
        return rt.serving_metrics.get(gm.namespace, names.label_value(gm.name))
    except Exception as exc:  # noqa: BLE001 - metrics are optional input
        log.warning("serving metrics for %s/%s failed: %s", gm.namespace, gm.name, exc)
        return ServingMetrics(False, "QueryFailed", f"serving metrics failed: {exc}", rt.clock())


def observe(rt: Runtime, gm: Subject) -> Seen:
    """Everything a pass reads, from memory caches (and the inventory's own refresh, at most every ttl)."""
    children = observe_children(gm.uid, rt.deployments.owned_by(gm.uid),
                                rt.pods.owned_by(f"{gm.namespace}/{names.label_value(gm.name)}"),
                                rt.services.get(gm.namespace, names.service_name(gm.name)),
                                rt.pdbs.get(gm.namespace, names.pdb_name(gm.name)),
                                rt.claims.owned_by(gm.uid), rt.jobs.owned_by(gm.uid))
    tuning = Tuning(drain_seconds=rt.drain_seconds, poll_seconds=rt.poll_seconds,
                    capacity_exclusion_seconds=rt.capacity_exclusion_seconds,
                    accounting_flush_seconds=rt.accounting_flush_seconds)
    memory = rt.memory.get(gm.key) or Memory()
    base = Seen(children=children, memory=memory, tuning=tuning)
    if gm.deleting or gm.spec is None:
        return base
    catalog, problem = resolve_catalog(rt, gm.spec.model.catalog_name)
    if catalog is None or gm.spec.suspend:
        return Seen(children=children, catalog=catalog.spec if catalog else None, catalog_problem=problem,
                    memory=memory, tuning=tuning)
    inv = rt.inventory()
    totals, by_owner = rt.demand_totals()
    free = free_gpus(inv, totals, by_owner.get(gm.uid, {}))
    regions, signals = carbon(rt, inv)
    return Seen(children=children, catalog=catalog.spec, regions=regions, carbon=signals, free_gpus=free,
                metrics=serving_metrics(rt, gm), memory=memory, tuning=tuning)
