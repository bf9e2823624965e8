#!/usr/bin/env python3
"""Run the trace-driven replay benchmark on the shared real data and print numbers + timings.

    .venv/bin/python benchmarks/bench_replay.py [--data ../shared/data] [--days 365] [--trace conversation]
                                                [--plot docs/benchmark.png] [--json out.json]

A year of hourly intensity for the six Electricity Maps zones in ../shared/data/grid, the Azure
conversation trace stretched with the 2022 hourly load shape, the default catalog and the example
GreenModel. Prints the same table as `greenmodel bench`, the wall time of each phase and the mean
planner call time. Numbers only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("GREENMODEL_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--days", type=float, default=None, help="default: every common hour (a year)")
    ap.add_argument("--trace", default="conversation", choices=("conversation", "code"))
    ap.add_argument("--zones", default="DE,ES,FR,GB,NL,PL",
                    help="zones in order; the first is the static baseline's region (default DE,ES,FR,GB,NL,PL: sorted, as a shell glob lists them)")
    ap.add_argument("--load-scale", type=float, default=1.0, help="multiply the trace's request rate (default 1)")
    ap.add_argument("--min-quality", type=float, default=None, help="override the quality floor (e.g. 80: equal quality)")
    ap.add_argument("--truth-hours", type=int, default=24,
                    help="hours judged by the ground-truth simulator, spread over the period (default 24; 0 off; -1 all)")
    ap.add_argument("--truth-sample-seconds", type=float, default=60.0, help="simulated seconds per judged hour")
    ap.add_argument("--plot", default=None, help="write the figure here (e.g. docs/benchmark.png)")
    ap.add_argument("--json", default=None, help="also write the JSON result here")
    args = ap.parse_args()

    from greenmodel.bench import simulator

    data = Path(args.data)
    files = [str(data / "grid" / "electricitymaps-2022" / f"{z}_2022_hourly.csv") for z in args.zones.split(",")]
    trace = str(data / "traces" / f"azure-llm-2023-{args.trace}.csv")
    missing = [f for f in files + [trace] if not Path(f).exists()]
    if missing:
        print(f"missing data files: {missing} (set --data or GREENMODEL_SHARED_DATA)", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    scenario = simulator.build_scenario(intensity_files=files, trace_file=trace, days=args.days,
                                         load_scale=args.load_scale, min_quality=args.min_quality)
    t1 = time.perf_counter()
    result = simulator.run_all(scenario, truth_hours=None if args.truth_hours < 0 else args.truth_hours,
                               truth_sample_seconds=args.truth_sample_seconds)
    t2 = time.perf_counter()
    runs = result.pop("_runs")
    if args.plot:
        from greenmodel.bench.plot import write_plot

        write_plot(args.plot, scenario, runs, policies=result["policies"])
    t3 = time.perf_counter()
    result["timings"]["loadSeconds"] = round(t1 - t0, 3)
    print(simulator.format_table(result))
    print()
    print(f"cpu cores available: {len(os.sched_getaffinity(0))}")
    print(f"load + stretch: {t1 - t0:6.2f} s")
    gt_s = result.get("groundTruth", {}).get("seconds", 0.0)
    print(f"replay (all policies): {t2 - t1 - gt_s:6.2f} s for {scenario.hours} hours x {len(scenario.regions)} regions")
    if gt_s:
        print(f"ground truth: {gt_s:6.2f} s, {result['groundTruth']['simulations']} simulations of "
              f"{result['groundTruth']['simulatedSeconds'] / max(1, result['groundTruth']['simulations']):.0f} s each")
    for name, pol in result["policies"].items():
        if "decideSeconds" in pol:  # the ground truth's baselines are chosen inside its time above
            print(f"  {name:14s} decide {pol['decideSeconds']:7.2f} s")
    calls = result["timings"].get("planCalls", 0)
    if calls:
        print(f"plan() calls: {calls}, mean {result['timings']['planSeconds'] / calls * 1e3:.3f} ms per call")
    if args.plot:
        print(f"plot: {t3 - t2:6.2f} s -> {args.plot} ({Path(args.plot).stat().st_size / 1024:.0f} KiB)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
