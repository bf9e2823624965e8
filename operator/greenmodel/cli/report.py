"""`greenmodel report`: export each GreenModel's accumulated energy and emissions, with the
inputs of every figure, for a sustainability report.

    greenmodel report [--namespace NS] [--since DATE] [-o csv|json] [--kubeconfig FILE]

Reads ``status.emissions`` of the GreenModels through the Kubernetes API (read-only). The
figures are the operator's running totals since it started accounting for that GreenModel, as
last written to status (at most an hour old, see docs/accounting.md). ``--since DATE`` keeps the
GreenModels whose accounting was updated on or after DATE and sums the UTC-day buckets
(``emissions.daily``, the last 35 days) from DATE's day on; when DATE is earlier than the oldest
bucket kept, and accounting began before that bucket, the row says so in ``coverage`` (and on
stderr): the totals then start at the oldest bucket. Without daily buckets the row covers the whole
accounting window and says so.

Every figure comes with its inputs: intensity source and value, PUE, embodied kgCO2e per GPU and
lifetime (of the last accounted interval, from ``emissions.inputs``; else from status and the
ModelCatalog), and whether energy was measured (DCGM/Kepler) or estimated, and in what split.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import date, datetime, timezone
from typing import Any, Iterable

GROUP, VERSION, PLURAL = "greenmodel.dev", "v1alpha1", "greenmodels"

# Column order of the CSV: identity, window, energy (and how it was obtained), emissions, SCI, inputs, notes.
COLUMNS = [
    "namespace", "name", "since", "lastUpdated", "hours",
    "energyKilowattHours", "measuredEnergyKilowattHours", "estimatedEnergyKilowattHours", "energySource",
    "facilityEnergyKilowattHours",
    "scope2Grams", "embodiedGrams", "totalGrams", "outputTokens",
    "scope2GramsPerMillionTokens", "gramsPerMillionTokens", "sciGramsPerThousandTokens",
    "intensitySources", "gramsPerKilowattHour", "regions", "pue", "gpuProduct", "gpus",
    "embodiedKgCO2ePerGPU", "lifetimeYears", "lifetimeHours", "outputTokensSource", "coverage",
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


def _f(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _kwh(d: dict, joules_key: str, kwh_key: str) -> float | None:
    j = _f(d.get(joules_key))
    return j / 3.6e6 if j is not None else _f(d.get(kwh_key))


def rows(objects: Iterable[dict], since: datetime | None = None,
         catalogs: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """One row per GreenModel from raw API objects (pure: unit-tested without a cluster).

    The figures come from ``status.emissions`` (api.v1alpha1.Emissions); the inputs behind them
    from ``status.emissions.inputs`` when the operator recorded them, else from what status shows
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
        life_years = _get(inputs, "lifetimeYears", default=gpu.get("lifetimeYears"))
        source = _get(inputs, "intensitySource", "intensitySources", default=(
            f"{intensity.get('source')}/{intensity.get('zone')}" if intensity.get("source") else None))
        measured_kwh = _kwh(em, "measuredEnergyJoules", "measuredEnergyKilowattHours")
        estimated_kwh = _kwh(em, "estimatedEnergyJoules", "estimatedEnergyKilowattHours")
        row = {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "since": start.isoformat() if start else None,
            "lastUpdated": last.isoformat() if last else None,
            "hours": round((last - start).total_seconds() / 3600.0, 3) if start and last else None,
            "energyKilowattHours": _kwh(em, "energyJoules", "energyKilowattHours"),
            "measuredEnergyKilowattHours": measured_kwh,
            "estimatedEnergyKilowattHours": estimated_kwh,
            "facilityEnergyKilowattHours": _get(em, "facilityEnergyKilowattHours"),
            "energySource": _get(em, "energySource"),
            "scope2Grams": _f(_get(em, "scope2Grams")),
            "embodiedGrams": _f(_get(em, "scope3Grams", "embodiedGrams")),
            "totalGrams": None,
            "outputTokens": _f(_get(em, "outputTokens")),
            "scope2GramsPerMillionTokens": None,
            "gramsPerMillionTokens": None,
            "sciGramsPerThousandTokens": _get(em, "sciGramsPerThousandTokens"),
            "intensitySources": _join(source),
            "gramsPerKilowattHour": _get(inputs, "gramsPerKilowattHour", default=intensity.get("gramsPerKilowattHour")),
            "regions": _join(_get(inputs, "region", "regions", default=status.get("region"))),
            "pue": _join(_get(inputs, "pue")),
            "gpuProduct": _get(inputs, "gpuProduct", default=status.get("gpuProduct")),
            "gpus": _get(inputs, "gpus"),
            "embodiedKgCO2ePerGPU": _join(_get(inputs, "embodiedKilogramsPerGpu", "embodiedKilogramsPerGPU",
                                               default=gpu.get("embodiedKilograms"))),
            "lifetimeYears": life_years,
            "lifetimeHours": _join(life_years * 8760.0 if isinstance(life_years, (int, float)) else life_years),
            "outputTokensSource": _get(inputs, "outputTokensSource"),
            "coverage": "all accounting since it began",
        }
        daily = _get(em, "daily", default=None)
        if since is not None:
            row.update(_since_totals(since, start, daily if isinstance(daily, list) else []))
        tokens = row["outputTokens"]
        if row["scope2Grams"] is not None or row["embodiedGrams"] is not None:
            row["totalGrams"] = float(row["scope2Grams"] or 0) + float(row["embodiedGrams"] or 0)
        if tokens:
            if row["scope2Grams"] is not None:
                row["scope2GramsPerMillionTokens"] = row["scope2Grams"] / (tokens / 1e6)
            row["gramsPerMillionTokens"] = row["totalGrams"] / (tokens / 1e6)
            row["sciGramsPerThousandTokens"] = row["totalGrams"] / (tokens / 1e3)
        elif since is not None:
            row["sciGramsPerThousandTokens"] = None
        out.append(row)
    out.sort(key=lambda r: (r["namespace"] or "", r["name"] or ""))
    return out


def _since_totals(since: datetime, start: datetime | None, daily: list[dict]) -> dict[str, Any]:
    """Totals from the UTC-day buckets on or after ``since``'s day, and what they cover."""
    if not daily:
        return {"coverage": "no daily buckets in status: totals cover all accounting since it began, "
                            f"not just since {since.date().isoformat()}"}
    day0 = since.astimezone(timezone.utc).date().isoformat()
    kept = [d for d in daily if str(d.get("date", "")) >= day0]
    oldest = min(str(d.get("date", "")) for d in daily)
    upd: dict[str, Any] = {
        "since": datetime.fromisoformat(max(day0, oldest) + "T00:00:00+00:00").isoformat(),
        "energyKilowattHours": sum(_kwh(d, "energyJoules", "energyKilowattHours") or 0.0 for d in kept),
        "measuredEnergyKilowattHours": sum(_kwh(d, "measuredEnergyJoules", "measuredEnergyKilowattHours") or 0.0
                                           for d in kept),
        "scope2Grams": sum(_f(d.get("scope2Grams")) or 0.0 for d in kept),
        "embodiedGrams": sum(_f(d.get("scope3Grams")) or 0.0 for d in kept),
        "outputTokens": sum(_f(d.get("outputTokens")) or 0.0 for d in kept),
        "facilityEnergyKilowattHours": None,
    }
    if any("measuredEnergyJoules" in d or "measuredEnergyKilowattHours" in d for d in kept):
        upd["estimatedEnergyKilowattHours"] = upd["energyKilowattHours"] - upd["measuredEnergyKilowattHours"]
    else:
        upd["measuredEnergyKilowattHours"] = upd["estimatedEnergyKilowattHours"] = None
    began = start.date().isoformat() if start else None
    if day0 < oldest and (began is None or began < oldest):
        upd["coverage"] = (f"--since {day0} is earlier than the oldest daily bucket kept ({oldest}; at most "
                           f"{len(daily)} days are kept): totals cover {oldest} onwards only")
    else:
        upd["coverage"] = f"UTC days from {max(day0, oldest)}" + (
            f" (--since {since.isoformat()} rounded down to its UTC day)" if since.time() != datetime.min.time()
            else "")
    return upd


def write(rows_: list[dict[str, Any]], fmt: str, stream=None) -> None:
    stream = stream if stream is not None else sys.stdout
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
    result = rows(objects, args.since, catalogs)
    for r in result:
        if "earlier than the oldest" in (r.get("coverage") or "") or "no daily buckets" in (r.get("coverage") or ""):
            print(f"greenmodel report: {r['namespace']}/{r['name']}: {r['coverage']}", file=sys.stderr)
    write(result, args.output)
    return 0
