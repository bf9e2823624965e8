"""Judge the replay's policies by the ground truth (:mod:`greenmodel.groundtruth`), not by the planner's model.

This adapter is on the judged side: it reads what each policy chose every hour (variant, GPU, replicas, region,
switches) and the engine settings the operator would deploy for it (``--max-num-seqs`` = the planner's batch cap,
``--gpu-memory-utilization`` = the catalog's usable memory fraction), turns the catalog's facts about the model
(weights, layers, KV heads, parameters) into a :class:`~greenmodel.groundtruth.judge.Deployment`, and asks the
ground truth what happened. Scope 2 only: energy x PUE x the hour's intensity; a switch adds the new replicas'
idle power for the overlap.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from greenmodel.bench.metrics import PolicyRun
from greenmodel.groundtruth.judge import Deployment, Judge, Workload, sampled_hours

DEFAULT_ENERGY_DIR = Path(__file__).resolve().parents[1] / "data" / "energy"  # packaged copy, see its NOTICE


class TruthUnavailable(ValueError):
    """The ground truth cannot judge this scenario; the message says why."""


def workload(trace) -> Workload:
    gap = trace.duration_s / max(1, trace.requests - 1)
    return Workload(offsets_s=np.asarray(trace.offsets_s, dtype=float) - float(trace.offsets_s[0]),
                    prompt_tokens=np.asarray(trace.context_tokens), output_tokens=np.asarray(trace.generated_tokens),
                    period_s=trace.duration_s + gap)


def deployment(sc, model, variant: str, product: str) -> Deployment:
    v = model.variants[variant]
    gpu = model.gpus[product]
    if v.attention is None:
        raise TruthUnavailable(f"variant {variant} has no attention shape (layers, kvHeads, headDim): the ground "
                               "truth needs it for the KV cache and prefill")
    return Deployment(model_id=v.model_id, precision=v.precision.value, gpu_product=product,
                      gpus=model.gpus_per_replica(variant, product), gpu_memory_gib=gpu.memory_gi_b, idle_watts_per_gpu=gpu.idle_watts,
                      weights_gib=v.weight_memory_gi_b, layers=v.attention.layers, kv_heads=v.attention.kv_heads,
                      head_dim=v.attention.head_dim, active_params_b=v.active_b,
                      moe=v.architecture.value.lower() == "moe", max_num_seqs=model.batch_cap(variant, product),
                      gpu_memory_utilization=gpu.usable_memory_fraction)


def switch_overlap_kwh(sc, d: Deployment, replicas: int) -> float:
    """GPU energy a switch adds: the new replicas idle beside the old ones for the overlap."""
    return d.idle_watts_per_gpu * d.gpus * replicas / 1000.0 * sc.switch_overlap_minutes / 60.0


def judge_runs(sc, model, runs: list[PolicyRun], trace, *, hours: int | None = 48, sample_s: float = 60.0,
               warmup_s: float = 20.0, energy_dir: str | Path | None = None,
               baselines: bool = True) -> dict[str, Any]:
    """{"groundTruth": what was measured/derived/sampled, "policies": {name: figures}}; with ``baselines`` also
    the ground-truth-chosen baselines of :mod:`greenmodel.bench.baselines` (their runs in "baselineRuns")."""
    ed = Path(energy_dir) if energy_dir else DEFAULT_ENERGY_DIR
    if not (ed / "mlenergy-v3-llm-configs.csv").exists():
        raise TruthUnavailable(f"no measurements in {ed} (give --energy-dir: ML.ENERGY and Vidur files)")
    lat = sc.spec.latency
    judge = Judge(ed, workload(trace), lat.ttft_p95_milliseconds / 1000.0, lat.inter_token_p95_milliseconds,
                  sample_s=sample_s, warmup_s=warmup_s)
    judged = sampled_hours(sc.hours, hours)
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    extra: list[PolicyRun] = []
    binfo: dict[str, Any] = {}
    if baselines:
        from greenmodel.bench import baselines as bl

        extra, binfo = bl.build(sc, model, judge, judged)
    runs = list(runs) + extra
    rules: dict[str, dict[str, str]] = {}
    for run in runs:
        grams = tokens = kwh = 0.0
        met = within = total = 0.0
        worst_ttft = worst_itl = 0.0
        hourly = {"hours": [], "p95TtftSeconds": [], "p95ItlMilliseconds": []}
        for h in judged:
            d = deployment(sc, model, run.variant[h], run.gpu_product[h])
            load = float(sc.load.output_tokens_per_s[h])
            t = judge.hour(d, run.replicas[h], load, h)
            e = t.energy_kwh
            if run.switched[h]:
                e += switch_overlap_kwh(sc, d, run.replicas[h])
            grams += e * run.pue[h] * run.intensity[h]
            kwh += e
            tokens += t.output_tokens
            met += t.slo_met
            within += t.requests_within
            total += t.requests_judged
            worst_ttft, worst_itl = max(worst_ttft, t.p95_ttft_s), max(worst_itl, t.p95_itl_ms)
            hourly["hours"].append(h)
            hourly["p95TtftSeconds"].append(t.p95_ttft_s if math.isfinite(t.p95_ttft_s) else None)
            hourly["p95ItlMilliseconds"].append(t.p95_itl_ms if math.isfinite(t.p95_itl_ms) else None)
            rules[f"{d.model_id} on {d.gpus}x {d.gpu_product}"] = {"decode": t.curve_rule or "measured",
                                                                  "prefill": t.prefill_rule}
        n = len(judged)
        out[run.name] = {
            "gramsPerMillionTokens": grams / tokens * 1e6 if tokens else None,
            "sloAttainment": met / n if n else None,
            "requestsWithinSlo": within / total if total else None,
            "switches": int(sum(run.switched)),
            "itEnergyKwhPerHour": kwh / n if n else None,
            "worstHourP95TtftSeconds": worst_ttft if math.isfinite(worst_ttft) else None,
            "worstHourP95ItlMilliseconds": worst_itl if math.isfinite(worst_itl) else None,
            "hourly": hourly,
        }
    def g(name: str) -> float | None:
        return (out.get(name) or {}).get("gramsPerMillionTokens")

    steps = [("static", "static-greenest-region", "region (the static deployment in the greenest region)"),
             ("static-greenest-region", "best-fixed", "variant, GPU and peak sizing (one hindsight choice)"),
             ("best-fixed", "best-fixed-autoscaled", "right-sizing through the day (KEDA)"),
             ("best-fixed-autoscaled", "region-follow", "following the cleanest region hour by hour"),
             ("best-fixed-autoscaled", "relaxed-oracle", "every lever at once, hour by hour (the limit)")]
    decomposition = [{"from": a, "to": b, "lever": why, "factor": g(b) / g(a)}
                     for a, b, why in steps if g(a) and g(b) is not None]
    measured_pairs = sorted(k for k, v in rules.items() if v["decode"] == "measured")
    derived_pairs = {k: v["decode"] for k, v in sorted(rules.items()) if v["decode"] != "measured"}
    return {
        "groundTruth": {
            "simulator": "greenmodel.groundtruth: per-request vLLM-style engine (continuous batching, max-num-seqs, "
                         "KV-cache token budget, chunked prefill, recompute preemption), join-shortest-queue routing",
            "measured": "decode step time and GPU power by batch: ML.ENERGY v3/v2 rows; prefill operator times: "
                        "Vidur profiles; request arrivals and sizes: the trace",
            "derived": {"decodeCurves": derived_pairs, "measuredDecodeCurves": measured_pairs,
                        "prefill": {k: v["prefill"] for k, v in sorted(rules.items())},
                        "kvCache": "vLLM's rule: GPU memory x --gpu-memory-utilization - weights - 1.5 GiB per GPU, "
                                   "/ (2 x layers x kvHeads x headDim x 2 bytes)",
                        "idlePower": "the catalog's idleWatts per GPU (ML.ENERGY does not measure idle)"},
            "sampled": {"hoursJudged": len(judged), "hoursOfPeriod": sc.hours, "secondsPerHour": sample_s,
                        "warmupSeconds": warmup_s, "traceWindows": judge.windows,
                        "note": "each judged hour simulates warmup + sample seconds of the trace at that hour's "
                                "rate and scales the sample to the hour; hours are spread evenly over the period"},
            "simulations": judge.simulations, "simulatedSeconds": judge.simulated_s,
            "seconds": round(time.perf_counter() - t0, 2),
            "scope": "Scope 2 (GPU energy x PUE x intensity); embodied not included",
            "baselines": binfo,
            "decomposition": decomposition,
        },
        "policies": out,
        "baselineRuns": extra,
    }
