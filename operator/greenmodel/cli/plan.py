"""`greenmodel plan`: run the pure planner on a GreenModel file, offline.

    greenmodel plan -f GREENMODEL.yaml [--catalog CATALOG.yaml] [--config OPERATOR-CONFIG.yaml]
                    [--intensity REGION=GRAMS_PER_KWH]... [--pue REGION=PUE]...
                    [--free-gpus REGION/GPU_PRODUCT=COUNT]... [--load OUTPUT_TOKENS_PER_S]
                    [-o table|json|yaml|deployment]

Without --catalog the packaged default catalog is used. With --config, the operator config's regions, PUEs
and static intensities are the inputs (as the operator plans when the chain has only static data);
--intensity and --pue override them. Candidate regions: the spec's placement.regions, else those given
with --intensity or --config. GPUs are unlimited unless --free-gpus says. -o json and -o yaml include, under
`status`, exactly the status fields the operator writes for this plan (the same mapping as the live pass).
-o deployment prints the objects the operator would apply for the chosen placement (its Deployment, and the
model-cache PVC and download Job when the catalog has spec.modelCache), as YAML (docs/serving.md).
Exit 0 with a plan; 2 with a one-line message naming the field for invalid input; 3 when no
candidate is feasible (with the explanation).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from greenmodel.api.v1alpha1 import (
    GreenModel,
    InvalidObject,
    ModelCatalog,
    parse_greenmodel,
    parse_modelcatalog,
)
from greenmodel.kube import builders
from greenmodel.planning import Intensity, Observed, RegionObs, plan
from greenmodel.planning.serving import RuntimeProblem, serving_spec
from greenmodel.planning.status import plan_to_json
from greenmodel.reconcile.observe import static_intensity
from greenmodel.settings import Settings, SettingsError, load_settings

EXIT_OK, EXIT_INVALID, EXIT_INFEASIBLE = 0, 2, 3
DEFAULT_PUE = 1.2


class UsageError(Exception):
    pass


def register(subparsers) -> None:
    p = subparsers.add_parser("plan", help="plan variant, region, GPU and replicas for a GreenModel (offline)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--filename", required=True, help="GreenModel YAML file ('-' for stdin)")
    p.add_argument("--catalog", help="ModelCatalog YAML file (default: the packaged default catalog)")
    p.add_argument("--config", metavar="OPERATOR-CONFIG.yaml",
                   help="take regions, PUEs and static intensities from an operator config (greenmodel run --config)")
    p.add_argument("--intensity", action="append", default=[], metavar="REGION=GRAMS_PER_KWH",
                   help="grid intensity of a region, gCO2e/kWh (repeatable)")
    p.add_argument("--free-gpus", action="append", default=[], metavar="REGION/GPU_PRODUCT=COUNT",
                   help="free GPUs of a product in a region (repeatable); unlimited if not given")
    p.add_argument("--pue", action="append", default=[], metavar="REGION=PUE",
                   help=f"facility PUE of a region (repeatable; default {DEFAULT_PUE})")
    p.add_argument("--load", type=float, metavar="OUTPUT_TOKENS_PER_S", help="override spec.load (output tokens/s)")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml", "deployment"), default="table")
    p.set_defaults(func=run)


def _load_yaml(path: str, what: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {path}: {exc.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{what}: {path} is not valid YAML{where}: {problem}") from None
    if len(docs) != 1:
        raise UsageError(f"{what}: {path} must hold exactly one object, found {len(docs)}")
    return docs[0]


def default_catalog_text() -> str:
    return resources.files("greenmodel").joinpath("data/default-catalog.yaml").read_text()


def load_default_catalog() -> ModelCatalog:
    return parse_modelcatalog(yaml.safe_load(default_catalog_text()))


def _kv(items: list[str], flag: str, sep: str = "=") -> list[tuple[str, str]]:
    out = []
    for it in items:
        key, eq, val = it.partition(sep)
        if not eq or not key or not val:
            raise UsageError(f"{flag}: expected KEY{sep}VALUE, got {it!r}")
        out.append((key.strip(), val.strip()))
    return out


def _num(val: str, flag: str, *, integer: bool = False, minimum: float = 0.0) -> float:
    try:
        x = int(val) if integer else float(val)
    except ValueError:
        raise UsageError(f"{flag}: {val!r} is not a {'whole ' if integer else ''}number") from None
    if not math.isfinite(x) or x < minimum:
        raise UsageError(f"{flag}: {val!r} must be >= {minimum:g}")
    return x


def build_observed(gm: GreenModel, args, now: datetime) -> Observed:
    intensities: dict[str, float] = {}
    for region, val in _kv(args.intensity, "--intensity"):
        intensities[region] = _num(val, "--intensity")
    pues: dict[str, float] = {}
    for region, val in _kv(args.pue, "--pue"):
        pues[region] = _num(val, "--pue", minimum=1.0)
    free: dict[str, dict[str, int]] = {}
    for key, val in _kv(args.free_gpus, "--free-gpus"):
        region, slash, product = key.partition("/")
        if not slash or not region or not product:
            raise UsageError(f"--free-gpus: expected REGION/GPU_PRODUCT=COUNT, got {key}={val}")
        free.setdefault(region, {})[product] = int(_num(val, "--free-gpus", integer=True))
    settings = _config(args.config) if args.config else None
    configured = sorted(settings.carbon.regions) if settings else []
    regions = list(gm.spec.placement.regions or sorted(set(intensities) | set(configured)))
    if not regions:
        raise UsageError("--intensity: give at least one REGION=GRAMS_PER_KWH (spec.placement.regions is unset)")
    obs = {}
    for r in regions:
        inten = intensities.get(r)
        static = static_intensity(settings, r) if settings else None
        obs[r] = RegionObs(
            intensity=static if inten is None else Intensity(inten, "cli", r, now, "Measured"),
            pue=pues.get(r, (settings.pue_for_region(r) if settings else None) or DEFAULT_PUE),
            free_gpus=(free.get(r, {}) if free else None),
            static_intensity=static,
        )
    return Observed(regions=obs)


def _config(path: str) -> Settings:
    try:
        return load_settings(path)
    except SettingsError as exc:
        raise UsageError(f"--config: {exc}") from None


def _table(j: dict[str, Any]) -> str:
    lines = []
    if j["variant"]:
        p = j["predicted"]
        i = j["intensity"]
        lines.append(f"{'FEASIBLE' if j['feasible'] else 'INFEASIBLE (best effort)'}: {j['reason']}")
        lines.append(f"  variant     {j['variant']}  ({' '.join(j['runtimeArgs']) or 'no extra runtime args'})")
        lines.append(f"  placement   {j['replicas']} x {j['gpusPerReplica']} {j['gpuProduct']} in {j['region']}")
        lines.append(f"  intensity   {i['gramsPerKilowattHour']:g} gCO2e/kWh ({i['kind']}, {i['source']})")
        g = p.get("gramsPerMillionTokens")
        lines.append(f"  predicted   p95 TTFT {p['ttftP95Milliseconds']:.0f} ms, p95 ITL {p['interTokenP95Milliseconds']:.1f} ms, "
                     f"{p['powerWatts']:.0f} W, utilisation {p['utilization']:.0%}, "
                     + (f"{g:.2f} gCO2e/Mtok (embodied {p['embodiedGramsPerMillionTokens']:.2f})" if g is not None
                        else f"{p['gramsPerHour']:.1f} gCO2e/h at zero load"))
        lines.append(f"  load        {j['load']['outputTokensPerSecond']:g} output tok/s ({j['load']['source']})")
    else:
        lines.append(f"INFEASIBLE: {j['reason']}")
    for f in j["failedConstraints"]:
        lines.append(f"  failed      {f['field']}: {f['reason']}: {f['message']}")
    for w in j["warnings"]:
        lines.append(f"  warning     {w}")
    if j["alternatives"]:
        lines.append("")
        lines.append(f"{'VARIANT':<26} {'REGION':<16} {'GPU':<22} {'REPL':>4} {'gCO2e/Mtok':>10} {'TTFT ms':>8} "
                     f"{'ITL ms':>7}  WHY NOT")
        for a in j["alternatives"][:25]:
            p = a.get("predicted") or {}
            g = p.get("gramsPerMillionTokens")
            lines.append(
                f"{a['variant']:<26} {a.get('region') or '*':<16} {a.get('gpuProduct') or '*':<22} "
                f"{a.get('replicas') if a.get('replicas') is not None else '-':>4} "
                f"{(f'{g:.2f}' if g is not None else '-'):>10} "
                f"{(format(p['ttftP95Milliseconds'], '.0f') if p else '-'):>8} "
                f"{(format(p['interTokenP95Milliseconds'], '.1f') if p else '-'):>7}  "
                f"{a['reason']}: {a.get('message', '')}")
        if len(j["alternatives"]) > 25:
            lines.append(f"... {len(j['alternatives']) - 25} more (-o json shows all)")
    return "\n".join(lines)


def run(args, now: datetime | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    try:
        body = _load_yaml(args.filename, "-f")
        try:
            gm = parse_greenmodel(body)
        except InvalidObject as exc:
            raise UsageError(f"{args.filename}: {exc}") from None
        try:
            catalog = (parse_modelcatalog(_load_yaml(args.catalog, "--catalog")) if args.catalog
                       else load_default_catalog())
        except InvalidObject as exc:
            raise UsageError(f"--catalog {args.catalog or '(default)'}: {exc}") from None
        spec = gm.spec
        if args.load is not None:
            load = _num(str(args.load), "--load")
            spec = spec.model_copy(update={"load": spec.load.model_copy(
                update={"output_tokens_per_second": load, "requests_per_second": None})})
        observed = build_observed(gm, args, now)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    result = plan(spec, catalog.spec, observed, now)
    j = plan_to_json(result, now)
    if args.output == "deployment":
        return _print_objects(gm, spec, catalog, result)
    if args.output == "json":
        print(json.dumps(j, indent=2, default=str))
    elif args.output == "yaml":
        print(yaml.safe_dump(json.loads(json.dumps(j, default=str)), sort_keys=False, width=120), end="")
    else:
        print(_table(j))
    if not result.feasible:
        print(f"error: no feasible candidate: {result.message}", file=sys.stderr)
        return EXIT_INFEASIBLE
    return EXIT_OK


def _print_objects(gm: GreenModel, spec, catalog: ModelCatalog, result) -> int:
    """The children the operator would apply for the chosen placement (the same builders as the live pass)."""
    c = result.chosen
    if not result.feasible or c is None:
        print(f"error: no feasible candidate: {result.message}", file=sys.stderr)
        return EXIT_INFEASIBLE
    variant = next(v for v in catalog.spec.variants if v.name == c.variant)
    try:
        serving = serving_spec(catalog.spec, variant, c, spec)
    except RuntimeProblem as exc:
        print(f"error: {exc.reason}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    owner = builders.OwnerRef(gm.metadata.name or "greenmodel", gm.metadata.namespace or "default", "<uid>")
    docs = []
    mc = catalog.spec.model_cache
    if serving.weights.source == "cache" and mc is not None:
        docs += [builders.build_cache_claim(owner, serving, mc.storage_class_name, mc.access_mode),
                 builders.build_download_job(owner, c.placement, serving)]
    docs.append(builders.build_deployment(owner, c.placement, c.replicas, serving))
    print(yaml.safe_dump_all(docs, sort_keys=False, width=120), end="")
    return EXIT_OK
