"""Time plan() on 50 variants x 10 regions x 4 GPU products (prints numbers; asserts nothing).

    .venv/bin/python benchmarks/bench_plan.py [--repeat 200]

The catalog is synthetic but shaped like the default one: each variant has a profile on each of the
4 GPU products with an 8-point batch table; 10 regions with distinct intensities, PUEs and finite
free-GPU counts (so the free-capacity check runs for every candidate). The current placement is set,
so hysteresis runs too. Reported: median and p95 wall time of one plan() call, and per candidate.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import datetime, timedelta, timezone

from greenmodel.api.v1alpha1 import GreenModelSpec, ModelCatalogSpec
from greenmodel.planning import CurrentPlacement, Intensity, Observed, RegionObs, plan

PRODUCTS = ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4", "NVIDIA-B200"]
NOW = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)


def build(n_variants=50, n_regions=10, seed=1):
    rng = random.Random(seed)
    gpus = [{"product": p, "memoryGiB": m, "idleWatts": i, "maxWatts": w}
            for p, m, i, w in zip(PRODUCTS, (79.6, 80, 22.5, 180), (70, 55, 16, 140), (700, 400, 72, 1000))]
    variants = []
    for v in range(n_variants):
        speed = rng.uniform(0.5, 2.0)
        profiles = []
        for k, p in enumerate(PRODUCTS):
            f = (1.0, 0.7, 0.1, 1.6)[k] * speed
            pts = []
            for j, b in enumerate((8, 16, 32, 64, 128, 256, 512, 768)):
                pts.append({"maxBatchSize": b, "outputTokensPerSecond": 1000 * f * (b / 8) ** 0.7,
                            "interTokenP95Milliseconds": 8 / speed * (1 + j * 0.6),
                            "powerWatts": gpus[k]["idleWatts"] + (gpus[k]["maxWatts"] - gpus[k]["idleWatts"]) * (0.5 + j / 16)})
            profiles.append({"gpuProduct": p, "gpusPerReplica": 1, "prefillTokensPerSecond": 20000 * f, "batch": pts})
        variants.append({"name": f"v{v}", "family": "bench", "modelId": f"org/v{v}", "parametersBillions": 8,
                         "weightMemoryGiB": 8, "quality": {"MMLU": rng.uniform(55, 85)}, "profiles": profiles})
    catalog = ModelCatalogSpec.model_validate({"gpus": gpus, "variants": variants})
    regions = {f"region-{r}": RegionObs(Intensity(rng.uniform(20, 800), "bench", f"Z{r}", NOW - timedelta(minutes=10)),
                                        pue=rng.uniform(1.05, 1.5), free_gpus={p: rng.randint(0, 64) for p in PRODUCTS})
               for r in range(n_regions)}
    observed = Observed(regions=regions, current=CurrentPlacement("v0", "region-0", PRODUCTS[0], 2,
                                                                  NOW - timedelta(hours=2)))
    spec = GreenModelSpec.model_validate({"model": {"family": "bench"}, "quality": {"benchmark": "MMLU", "minScore": 50},
                                          "load": {"outputTokensPerSecond": 12000}, "maxReplicas": 64,
                                          "policy": "Balanced"})
    return spec, catalog, observed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    spec, catalog, observed = build()
    p = plan(spec, catalog, observed, NOW)  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        p = plan(spec, catalog, observed, NOW)
        times.append(time.perf_counter() - t0)
    times.sort()
    med = statistics.median(times) * 1e3
    p95 = times[int(0.95 * (len(times) - 1))] * 1e3
    n = 50 * 10 * 4
    print(f"plan(): 50 variants x 10 regions x 4 GPU products = {n} candidates, {args.repeat} runs")
    print(f"  median {med:.3f} ms, p95 {p95:.3f} ms, {med * 1e3 / n:.2f} us per candidate (target: well under 5 ms)")
    print(f"  evaluated {p.evaluated}, rejected {len(p.rejected)} kept in detail, feasible={p.feasible}, "
          f"chosen {p.chosen.variant}/{p.chosen.region}/{p.chosen.gpu_product} x{p.chosen.replicas} ({p.reason})")


if __name__ == "__main__":
    main()
