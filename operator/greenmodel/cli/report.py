"""`greenmodel report`: export each GreenModel's accumulated energy and emissions, with the
inputs of every figure, for a sustainability report.

    greenmodel report [--namespace NS] [--since DATE] [-o csv|json] [--kubeconfig FILE]

Reads ``status.emissions`` of the GreenModels through the Kubernetes API (read-only). The
figures are the operator's running totals since it started accounting for that GreenModel
(``status.emissions``); ``--since`` keeps the GreenModels whose accounting was updated on or after
DATE and, where the status carries daily buckets (``emissions.daily``), sums only the days from
DATE on. Without daily buckets the row covers the whole accounting window and says so (``since``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import date, datetime, timezone
from typing import Any, Iterable

GROUP, VERSION, PLURAL = "greenmodel.dev", "v1alpha1", "greenmodels"

# Column order of the CSV: identity, window, energy (and how it was obtained), emissions, SCI, inputs.
COLUMNS = [
    "namespace", "name", "since", "lastUpdated", "hours",
    "energyKilowattHours", "facilityEnergyKilowattHours", "energySource",
    "scope2Grams", "embodiedGrams", "totalGrams", "outputTokens",
    "gramsPerMillionTokens", "sciGramsPerThousandTokens",
    "intensitySources", "regions", "pue", "gpuProduct", "embodiedKgCO2ePerGPU", "lifetimeHours",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="export accumulated energy and emissions of GreenModels",
        description="Export each GreenModel's accumulated energy (measured or estimated), Scope 2 location-based "
        "emissions, embodied Scope 3 share and SCI per thousand output tokens, with the inputs behind them.")
    p.add_argument("-n", "--namespace", metavar="NS", help="only this namespace (default: all namespaces)")
    p.add_argument("--since", metavar="DATE", type=_parse_date,
                   help="only accounting from this date (YYYY-MM-DD or ISO 8601, UTC)")
    p.add_argument("-o", "--output", choices=("csv", "json"), default="csv")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: $KUBECONFIG, else in-cluster)")
    p.set_defaults(func=run)


def _parse_date(text: str) -> datetime:
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since: {text!r} is not a date (YYYY-MM-DD or ISO 8601)") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def _ts(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        return _parse_date(str(value))
    except argparse.ArgumentTypeError:
        return None


def _get(d: dict, *names: str, default: Any = None) -> Any:
    for n in names:
        if n in d and d[n] is not None:
            return d[n]
    return default


def _join(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return ";".join(str(v) for v in value)
    return value


def _catalog_gpu(catalogs: dict[str, dict], obj: dict) -> dict:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    cat = catalogs.get(((spec.get("model") or {}).get("catalogName")) or "default") or {}
    product = status.get("gpuProduct")
    for g in (cat.get("spec") or {}).get("gpus") or []:
        if g.get("product") == product:
            return g
    return {}


def rows(objects: Iterable[dict], since: datetime | None = None,
         catalogs: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """One row per GreenModel from raw API objects (pure: unit-tested without a cluster).

    The figures come from ``status.emissions`` (api.v1alpha1.Emissions); the inputs behind them
    from ``status.emissions.inputs`` when the operator records them, else from what status shows
    (the current intensity reading and region) and the ModelCatalog entry of the GPU product
    (embodied kgCO2e per GPU and lifetime). An input nobody recorded is left empty, never guessed.
    """
    out = []
    catalogs = catalogs or {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        em = status.get("emissions") or {}
        if not em:
            continue
        start = _ts(_get(em, "since"))
        last = _ts(_get(em, "updated", "lastUpdated"))
        if since is not None and last is not None and last < since:
            continue
        inputs = _get(em, "inputs", default={}) or {}
        intensity = status.get("intensity") or {}
        gpu = _catalog_gpu(catalogs, obj)
        joules = _get(em, "energyJoules")
        kwh = float(joules) / 3.6e6 if joules is not None else _get(em, "energyKilowattHours")
        life_years = _get(inputs, "lifetimeYears", default=gpu.get("lifetimeYears"))
        row = {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "since": start.isoformat() if start else None,
            "lastUpdated": last.isoformat() if last else None,
            "hours": round((last - start).total_seconds() / 3600.0, 3) if start and last else None,
            "energyKilowattHours": kwh,
            "facilityEnergyKilowattHours": _get(em, "facilityEnergyKilowattHours"),
            "energySource": _get(em, "energySource"),
            "scope2Grams": _get(em, "scope2Grams"),
            "embodiedGrams": _get(em, "scope3Grams", "embodiedGrams"),
            "totalGrams": None,
            "outputTokens": _get(em, "outputTokens"),
            "gramsPerMillionTokens": None,
            "sciGramsPerThousandTokens": _get(em, "sciGramsPerThousandTokens"),
            "intensitySources": _join(_get(inputs, "intensitySources", default=(
                f"{intensity.get('source')}/{intensity.get('zone')}" if intensity.get("source") else None))),
            "regions": _join(_get(inputs, "regions", default=status.get("region"))),
            "pue": _join(_get(inputs, "pue")),
            "embodiedKgCO2ePerGPU": _join(_get(inputs, "embodiedKilogramsPerGPU", default=gpu.get("embodiedKilograms"))),
            "gpuProduct": status.get("gpuProduct"),
            "lifetimeHours": _join(life_years * 8760.0 if isinstance(life_years, (int, float)) else life_years),
        }
        daily = _get(em, "daily", default=None)
        if since is not None and isinstance(daily, list) and daily:
            kept = [d for d in daily if (_ts(d.get("date")) or since) >= since]
            for key, src in (("energyKilowattHours", "energyKilowattHours"), ("scope2Grams", "scope2Grams"),
                             ("embodiedGrams", "scope3Grams"), ("outputTokens", "outputTokens")):
                row[key] = sum(float(d.get(src) or 0) for d in kept)
            row["since"] = since.isoformat()
            row["sciGramsPerThousandTokens"] = ((row["scope2Grams"] + row["embodiedGrams"]) / (row["outputTokens"] / 1e3)
                                                if row["outputTokens"] else None)
        if row["scope2Grams"] is not None and row["outputTokens"]:
            row["gramsPerMillionTokens"] = float(row["scope2Grams"]) / (float(row["outputTokens"]) / 1e6)
        if row["scope2Grams"] is not None or row["embodiedGrams"] is not None:
            row["totalGrams"] = float(row["scope2Grams"] or 0) + float(row["embodiedGrams"] or 0)
        out.append(row)
    out.sort(key=lambda r: (r["namespace"] or "", r["name"] or ""))
    return out


def write(rows_: list[dict[str, Any]], fmt: str, stream=sys.stdout) -> None:
    if fmt == "json":
        json.dump({"greenModels": rows_}, stream, indent=2, default=str)
        stream.write("\n")
        return
    w = csv.DictWriter(stream, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows_:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})


def _list_objects(namespace: str | None, kubeconfig: str | None) -> tuple[list[dict], dict[str, dict]]:
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=kubeconfig)
    except Exception:
        if kubeconfig:
            raise
        config.load_incluster_config()
    api = client.CustomObjectsApi()
    items: list[dict] = []
    kwargs: dict[str, Any] = {"limit": 500}
    while True:
        if namespace:
            resp = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kwargs)
        else:
            resp = api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)
        items.extend(resp.get("items", []))
        cont = (resp.get("metadata") or {}).get("continue")
        if not cont:
            break
        kwargs["_continue"] = cont
    catalogs: dict[str, dict] = {}
    try:  # the catalogs give the embodied factor and lifetime; a user may lack read access to them
        for c in api.list_cluster_custom_object(GROUP, VERSION, "modelcatalogs").get("items", []):
            catalogs[(c.get("metadata") or {}).get("name")] = c
    except Exception:  # noqa: BLE001 - report without them, the columns stay empty
        pass
    return items, catalogs


def run(args: argparse.Namespace) -> int:
    try:
        objects, catalogs = _list_objects(args.namespace, args.kubeconfig)
    except Exception as exc:  # the kubernetes client raises many types; report one line
        print(f"greenmodel report: cannot list GreenModels: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 1
    write(rows(objects, args.since, catalogs), args.output)
    return 0
