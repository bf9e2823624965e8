"""`greenmodel bench`: replay a request trace against hourly grid intensity through the real
planner and baselines, in simulated time (no cluster), and compare them side by side."""

from __future__ import annotations

import argparse
import json
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="trace-driven replay of the planner against baselines (no cluster)",
        description="Replay a request trace, stretched over --days with an hourly load shape, against hourly "
        "grid intensity (one Electricity Maps export per region) through four policies: static, intensity-cap, "
        "greenmodel (the real planner with hysteresis) and a hindsight oracle. Prints grams CO2e per million "
        "output tokens (Scope 2 and with embodied Scope 3), kWh, p95 SLO attainment, min quality and switches, "
        "by the planner's model and by the ground truth (a per-request engine simulation from measurements that "
        "imports none of the planner), which also picks and judges the baselines a platform engineer would run: "
        "best-fixed (hindsight), best-fixed-autoscaled (KEDA on waiting requests), carbon-cap, region-follow, "
        "model-choice and the relaxed oracle.",
    )
    p.add_argument("--intensity", nargs="+", required=True, metavar="FILE",
                   help="Electricity Maps hourly export(s), one per zone; each is a candidate region named by its Zone Id; "
                   "the first is the static baseline's region")
    p.add_argument("--trace", required=True, metavar="FILE", help="request trace, Azure format: TIMESTAMP,ContextTokens,GeneratedTokens")
    p.add_argument("--load-shape", metavar="FILE",
                   help="hourly load shape (',cpu_load'); default: the one hourly-load-shape-*.csv next to the trace")
    p.add_argument("--catalog", metavar="FILE", help="ModelCatalog YAML (default: the built-in default catalog)")
    p.add_argument("--greenmodel", metavar="FILE", help="GreenModel YAML (default: the built-in example)")
    p.add_argument("--days", type=float, default=None,
                   help="days to simulate from the first hour of the intensity files (default: all common hours)")
    p.add_argument("--pue", type=float, default=1.2, help="PUE applied to every region (default 1.2)")
    p.add_argument("--switch-overlap-minutes", type=float, default=10.0,
                   help="a region/variant switch runs old and new replicas side by side this long (default 10)")
    p.add_argument("--load-scale", type=float, default=1.0,
                   help="multiply the trace's request rate (default 1: the trace as recorded); stated in the output")
    p.add_argument("--min-quality", type=float, metavar="SCORE",
                   help="override the GreenModel's quality floor (spec.quality.minScore), e.g. 80 for an "
                   "equal-quality comparison with the static baseline")
    p.add_argument("--truth-hours", type=int, default=24, metavar="N",
                   help="judge every policy by the ground-truth simulator (per-request vLLM-style engine from "
                   "ML.ENERGY and Vidur measurements) over N hours spread over the period (default 24; 0: off; "
                   "-1: every hour)")
    p.add_argument("--truth-sample-seconds", type=float, default=60.0, metavar="S",
                   help="seconds of requests simulated per judged hour, after a 20 s warm-up (default 60)")
    p.add_argument("--energy-dir", metavar="DIR",
                   help="ML.ENERGY / Vidur / Qwen measurements for the ground truth, in the layout of "
                   "../shared/data/energy (default: the copy packaged with greenmodel)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument("--plot", metavar="OUT.png", help="write the figure (needs matplotlib)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import importlib.util

    missing = [m for m in ("numpy",) + (("matplotlib",) if args.plot else ()) if importlib.util.find_spec(m) is None]
    if missing:
        print(f"greenmodel bench: needs {', '.join(missing)}: pip install 'greenmodel-operator[bench]'", file=sys.stderr)
        return 2
    from greenmodel.bench import simulator
    from greenmodel.bench.data import DataError

    t0 = time.perf_counter()
    try:
        scenario = simulator.build_scenario(
            intensity_files=args.intensity,
            trace_file=args.trace,
            load_shape_file=args.load_shape,
            catalog_file=args.catalog,
            greenmodel_file=args.greenmodel,
            days=args.days,
            pue=args.pue,
            switch_overlap_minutes=args.switch_overlap_minutes,
            load_scale=args.load_scale,
            min_quality=args.min_quality,
        )
    except (DataError, simulator.ScenarioError, OSError) as exc:
        print(f"greenmodel bench: {exc}", file=sys.stderr)
        return 2
    t_load = time.perf_counter() - t0
    from greenmodel.bench.truth import TruthUnavailable

    try:
        result = simulator.run_all(scenario, truth_hours=None if args.truth_hours < 0 else args.truth_hours,
                                   truth_sample_seconds=args.truth_sample_seconds, energy_dir=args.energy_dir)
    except (TruthUnavailable, LookupError) as exc:
        print(f"greenmodel bench: ground truth: {exc} (--truth-hours 0 turns it off)", file=sys.stderr)
        return 2
    result["timings"]["loadSeconds"] = round(t_load, 3)
    if args.plot:
        tp = time.perf_counter()
        from greenmodel.bench.plot import write_plot

        write_plot(args.plot, scenario, result.pop("_runs"), policies=result["policies"])
        result["timings"]["plotSeconds"] = round(time.perf_counter() - tp, 3)
        result["plot"] = args.plot
    else:
        result.pop("_runs")
    if args.output == "json":
        json.dump(result, sys.stdout, indent=2, default=str)
        print()
    else:
        print(simulator.format_table(result))
    return 0
