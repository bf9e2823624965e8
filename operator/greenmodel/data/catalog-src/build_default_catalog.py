"""Build operator/greenmodel/data/default-catalog.yaml from the measured data sets (run by hand).

    .venv/bin/python operator/greenmodel/data/catalog-src/build_default_catalog.py ../shared/data/energy

Every number written carries its source in a YAML comment; derivations are stated in
operator/greenmodel/data/NOTICE-catalog and docs/planner.md. This script reads the CSVs, it does not
download anything. The output is committed; tests never run this script.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "default-catalog.yaml"
V3 = "ML.ENERGY leaderboard v3 (Apache-2.0), lm-arena-chat, vLLM"

# ---- GPU products ---------------------------------------------------------------------------------
# memory GiB: total memory nvidia-smi reports (H100 81559 MiB, A100 81920 MiB, L4 23034 MiB).
GPUS = {
    "NVIDIA-H100-80GB-HBM3": dict(memory=79.6, bw=3.35, tdp=700, idle=70, bf16_tflops=989),
    "NVIDIA-A100-SXM4-80GB": dict(memory=80, bw=2.039, tdp=400, idle=55, bf16_tflops=312),
    "NVIDIA-L4": dict(memory=22.5, bw=0.300, tdp=72, idle=16, bf16_tflops=121),
}
GPU_COMMENTS = {
    "NVIDIA-H100-80GB-HBM3": "H100 SXM5 datasheet: 80 GB HBM3, 3.35 TB/s, 700 W TDP, 989 dense BF16 TFLOPS; idle 70 W is a typical nvidia-smi reading (replace with your DCGM idle)",
    "NVIDIA-A100-SXM4-80GB": "A100 SXM4 80GB datasheet: 2,039 GB/s, 400 W TDP, 312 BF16 TFLOPS; idle 55 W typical nvidia-smi reading",
    "NVIDIA-L4": "L4 datasheet: 24 GB GDDR6, 300 GB/s, 72 W TDP, 121 dense BF16 TFLOPS; idle 16 W typical nvidia-smi reading",
}
EMBODIED_KG = 150 + 1000 / 8  # CCF: 150 kgCO2e per GPU + 1,000 kgCO2e per server shared by 8 GPUs
LIFETIME_YEARS = 4  # CCF default server lifetime
PREFILL_MFU = 0.4  # assumed model-FLOPs utilisation of prefill
VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"

# ---- attention shape per checkpoint (its config.json) ----------------------------------------------
# (num_hidden_layers, num_key_value_heads, head_dim, max_position_embeddings). Gemma 3 interleaves
# 1024-token sliding-window layers (5 of 6); counting every layer as full attention overstates its KV need,
# so the planner errs on the side of a placement vLLM accepts.
ATTENTION = {
    "meta-llama/Llama-3.2-3B-Instruct": (28, 8, 128, 131072),
    "microsoft/Phi-4-mini-instruct": (32, 8, 128, 131072),
    "mistralai/Mistral-7B-Instruct-v0.3": (32, 8, 128, 32768),
    "meta-llama/Llama-3.1-8B-Instruct": (32, 8, 128, 131072),
    "neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8": (32, 8, 128, 131072),
    "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4": (32, 8, 128, 131072),
    "google/gemma-3-12b-it": (48, 8, 256, 131072),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (32, 8, 128, 32768),
    "meta-llama/Llama-3.1-70B-Instruct": (80, 8, 128, 131072),
    "Qwen/Qwen3-30B-A3B-Instruct-2507": (48, 4, 128, 262144),
    "Qwen/Qwen3-32B": (64, 8, 128, 40960),
    "Qwen/Qwen3-32B-FP8": (64, 8, 128, 40960),
    "Qwen/Qwen3-14B": (40, 8, 128, 40960),
    "Qwen/Qwen3-8B": (36, 8, 128, 40960),
}


def v3_rows(energy: Path, model: str, gpus: int) -> list[dict]:
    rows = [r for r in csv.DictReader(open(energy / "mlenergy-v3-llm-configs.csv"))
            if r["model_id"] == model and r["gpu_model"] == "H100" and r["task"] == "lm-arena-chat"
            and int(r["num_gpus"]) == gpus]
    best: dict[int, dict] = {}
    for r in rows:  # duplicates of a batch cap: keep the lower-energy run
        b = int(r["max_num_seqs"])
        if b not in best or float(r["energy_per_token_joules"]) < float(best[b]["energy_per_token_joules"]):
            best[b] = r
    pts = []
    for b in sorted(best):
        r = best[b]
        pts.append(dict(b=b, tps=float(r["output_throughput_tokens_per_sec"]), itl=float(r["p95_itl_ms"]),
                        p=float(r["avg_power_watts"])))
    if not pts:
        raise SystemExit(f"no v3 rows for {model} on {gpus} H100")
    return pts


def scale(pts, itl=1.0, tps=1.0, p=1.0, max_b=None):
    return [dict(b=x["b"], tps=x["tps"] * tps, itl=x["itl"] * itl, p=x["p"] * p) for x in pts
            if max_b is None or x["b"] <= max_b]


def quant(pts, r1: float, r_top: float):
    """Weight quantisation speed-up r(b): r1 at batch <= 8 (memory-bound), r_top at the largest
    batch (compute-bound), log-linear in batch between. ITL / r, throughput x r, power unchanged."""
    bmax = pts[-1]["b"]
    out = []
    for x in pts:
        if x["b"] <= 8 or bmax <= 8:
            r = r1
        else:
            t = math.log(x["b"] / 8) / math.log(bmax / 8)
            r = r1 + (r_top - r1) * t
        out.append(dict(b=x["b"], tps=x["tps"] * r, itl=x["itl"] / r, p=x["p"]))
    return out


def to_gpu(pts, product: str, gpus: int, max_b: int | None = None):
    """Derive another GPU product from H100 measurements: decode is memory-bandwidth bound, so ITL
    scales by H100/target bandwidth and throughput by its inverse; per-GPU power maps the H100's
    busy range (idle..700 W) linearly onto the target's (idle..TDP)."""
    h, t = GPUS["NVIDIA-H100-80GB-HBM3"], GPUS[product]
    if product == "NVIDIA-A100-SXM4-80GB":
        # Measured, not bandwidth-derived: ML.ENERGY v2 ran Llama-3.1-8B on A100-SXM4-40GB and H100 in one
        # harness (batch 128): TPOT 79.3 vs 56.7 ms, 1517 vs 2153 tok/s, 188 vs 281 W. The 80GB A100 has
        # 31% more bandwidth than the 40GB one, so these ratios are conservative for it.
        return [dict(b=x["b"], tps=x["tps"] * 1517 / 2153, itl=x["itl"] * 79.3 / 56.7, p=x["p"] * 188 / 281)
                for x in pts if max_b is None or x["b"] <= max_b]
    k = h["bw"] / t["bw"]
    out = []
    for x in pts:
        if max_b is not None and x["b"] > max_b:
            continue
        per_gpu = x["p"] / gpus
        frac = max(0.0, min(1.0, (per_gpu - h["idle"]) / (h["tdp"] - h["idle"])))
        out.append(dict(b=x["b"], tps=x["tps"] / k, itl=x["itl"] * k,
                        p=gpus * (t["idle"] + frac * (t["tdp"] - t["idle"]))))
    return out


def prefill(product: str, gpus: int, active_b: float) -> float:
    return PREFILL_MFU * GPUS[product]["bf16_tflops"] * 1e12 * gpus / (2 * active_b * 1e9)


# ---- variants ----------------------------------------------------------------------------------------
def variants(energy: Path):
    L8 = v3_rows(energy, "meta-llama/Llama-3.1-8B-Instruct", 1)
    # Size scaling exponent 0.75, calibrated on Qwen3-8B vs Qwen3-14B in v3 (ITL ratio 0.657 at batch 8 and
    # 0.628 at batch 256 for a parameter ratio of 0.554: exponents 0.71 and 0.79).
    def smaller(pts, params):
        k = (params / 8.03) ** 0.75
        return scale(pts, itl=k, tps=1 / k)

    H = "NVIDIA-H100-80GB-HBM3"
    out = []

    def add(name, family, model_id, params, active, precision, weights_gib, quality, qsrc, profiles, arch="Dense",
            args=(), note=""):
        out.append(dict(name=name, family=family, model_id=model_id, params=params, active=active,
                        precision=precision, weights=weights_gib, quality=quality, qsrc=qsrc, profiles=profiles,
                        arch=arch, args=list(args), note=note))

    def std_profiles(h100_pts, h100_src, gpus, active, l4=True, a100=True, fp8=False):
        profs = [dict(product=H, gpus=gpus, pts=h100_pts, src=h100_src, prefill=prefill(H, gpus, active))]
        if a100:
            profs.append(dict(product="NVIDIA-A100-SXM4-80GB", gpus=gpus,
                              pts=to_gpu(h100_pts, "NVIDIA-A100-SXM4-80GB", gpus),
                              src="derived from the H100 rows x ML.ENERGY v2 same-harness ratios A100-SXM4-40GB/H100 "
                                  "for Llama-3.1-8B at batch 128 (ITL x1.40, throughput x0.70, power x0.67)" + ("; fp8 runs weight-only (Marlin) on Ampere" if fp8 else ""),
                              prefill=prefill("NVIDIA-A100-SXM4-80GB", gpus, active)))
        if l4:
            profs.append(dict(product="NVIDIA-L4", gpus=gpus, pts=to_gpu(h100_pts, "NVIDIA-L4", gpus, max_b=32),
                              src="derived from the H100 rows: bandwidth ratio 3.35/0.300 on ITL and throughput, "
                                  "power mapped onto 16..72 W, batch <= 32 (24 GB leaves little KV cache)",
                              prefill=prefill("NVIDIA-L4", gpus, active)))
        return profs

    # --- general-chat: the Green AI comparison models, plus Llama 3.1 8B/70B variants ---
    add("llama-3.2-3b-bf16", "general-chat", "meta-llama/Llama-3.2-3B-Instruct", 3.21, None, "bf16", 6.0,
        {"MMLU": 63.4}, "Meta Llama 3.2 model card, instruct MMLU (5-shot) 63.4",
        std_profiles(smaller(L8, 3.21), f"derived: {V3} Llama-3.1-8B rows scaled by (3.21/8.03)^0.75", 1, 3.21))
    add("phi-4-mini-bf16", "general-chat", "microsoft/Phi-4-mini-instruct", 3.84, None, "bf16", 7.2,
        {"MMLU": 67.3}, "Microsoft Phi-4-mini-instruct model card, MMLU (5-shot) 67.3",
        std_profiles(smaller(L8, 3.84), f"derived: {V3} Llama-3.1-8B rows scaled by (3.84/8.03)^0.75", 1, 3.84))
    # Mistral 7B: v2 measured it beside Llama-3.1-8B in the same harness (H100, batch 128): TPOT 59.2 vs 56.7 ms,
    # 2022 vs 2153 tok/s, 255 vs 281 W. Apply those ratios to the v3 Llama rows so both use one harness.
    add("mistral-7b-v0.3-bf16", "general-chat", "mistralai/Mistral-7B-Instruct-v0.3", 7.25, None, "bf16", 13.5,
        {"MMLU": 60.1}, "Mistral 7B paper (arXiv:2310.06825) MMLU 60.1 (v0.1 base; v0.3 publishes none)",
        std_profiles(scale(L8, itl=59.2 / 56.7, tps=2022 / 2153, p=255 / 281),
                     f"derived: {V3} Llama-3.1-8B rows x ML.ENERGY v2 same-harness ratios Mistral-7B-v0.3/Llama-3.1-8B",
                     1, 7.25))
    add("llama-3.1-8b-bf16", "general-chat", "meta-llama/Llama-3.1-8B-Instruct", 8.03, None, "bf16", 15.0,
        {"MMLU": 69.4}, "Meta Llama 3.1 model card, 8B instruct MMLU (5-shot) 69.4",
        std_profiles(L8, f"measured: {V3}, 1x H100", 1, 8.03))
    # Quantised 8B: speed-ups from Qwen's own Qwen3-8B measurements on H20 at batch 1 (SGLang, input 1):
    # FP8 150.25/81.73 = 1.84x, AWQ-INT4 144.11/81.73 = 1.76x. At large batch decode turns compute-bound:
    # assumed 1.3x (fp8 tensor cores) and 0.9x (int4 dequantisation overhead) at the largest batch.
    # Quality: Qwen2-7B MMLU drops (Qwen docs): GPTQ-Int8 -1.4, AWQ -3.1; fp8 assumed like int8.
    add("llama-3.1-8b-fp8", "general-chat", "neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", 8.03, None, "fp8", 8.5,
        {"MMLU": 68.0}, "69.4 - 1.4 (Qwen2-7B GPTQ-Int8 MMLU drop, Qwen quantisation benchmark; fp8 assumed alike)",
        std_profiles(quant(L8, 150.25 / 81.73, 1.3), f"derived: {V3} Llama-3.1-8B rows x fp8 speed-up "
                     "(Qwen3-8B H20: 1.84x at batch 1, assumed 1.3x at the largest batch)", 1, 8.03, fp8=True),
        )
    add("llama-3.1-8b-int4-awq", "general-chat", "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", 8.03, None,
        "int4-awq", 5.4, {"MMLU": 66.3}, "69.4 - 3.1 (Qwen2-7B AWQ MMLU drop, Qwen quantisation benchmark)",
        std_profiles(quant(L8, 144.11 / 81.73, 0.9), f"derived: {V3} Llama-3.1-8B rows x AWQ speed-up "
                     "(Qwen3-8B H20: 1.76x at batch 1, assumed 0.9x at the largest batch)", 1, 8.03),
        )
    G12 = v3_rows(energy, "google/gemma-3-12b-it", 1)
    add("gemma-3-12b-bf16", "general-chat", "google/gemma-3-12b-it", 12.2, None, "bf16", 23.0,
        {"MMLU": 74.5}, "Gemma 3 technical report, 12B pre-trained MMLU 74.5 (there is no Gemma 3 9B; 12B is the nearest)",
        std_profiles(G12, f"measured: {V3}, 1x H100", 1, 12.2, l4=False))
    # Mixtral: v2 measured it on 4x H100 beside Llama-3.1-8B on 1x H100 (batch 128): TPOT 92.2 vs 56.7 ms,
    # 1307 vs 2153 tok/s, 868 vs 281 W. Applied to the v3 Llama rows (one harness).
    add("mixtral-8x7b-bf16", "general-chat", "mistralai/Mixtral-8x7B-Instruct-v0.1", 46.7, 12.9, "bf16", 87.0,
        {"MMLU": 70.6}, "Mixtral of Experts paper (arXiv:2401.04088) MMLU 70.6",
        std_profiles(scale(L8, itl=92.2 / 56.7, tps=1307 / 2153, p=868 / 281),
                     f"derived: {V3} Llama-3.1-8B rows x ML.ENERGY v2 same-harness ratios Mixtral-8x7B(4xH100)/Llama-3.1-8B",
                     4, 12.9, l4=False), arch="MoE")
    add("llama-3.1-70b-bf16", "general-chat", "meta-llama/Llama-3.1-70B-Instruct", 70.6, None, "bf16", 131.5,
        {"MMLU": 83.6}, "Meta Llama 3.1 model card, 70B instruct MMLU (5-shot) 83.6",
        std_profiles(v3_rows(energy, "meta-llama/Llama-3.1-70B-Instruct", 4), f"measured: {V3}, 4x H100", 4, 70.6,
                     l4=False))

    # --- qwen3-30b-class: MoE vs dense of similar quality, and smaller distilled siblings ---
    Q = "Qwen3 technical report (arXiv:2505.09388), base-model MMLU"
    add("qwen3-30b-a3b-bf16", "qwen3-30b-class", "Qwen/Qwen3-30B-A3B-Instruct-2507", 30.5, 3.3, "bf16", 56.9,
        {"MMLU": 81.4}, f"{Q}: Qwen3-30B-A3B-Base 81.38",
        std_profiles(v3_rows(energy, "Qwen/Qwen3-30B-A3B-Instruct-2507", 1), f"measured: {V3}, 1x H100", 1, 3.3,
                     l4=False), arch="MoE")
    add("qwen3-30b-a3b-bf16-tp2", "qwen3-30b-class", "Qwen/Qwen3-30B-A3B-Instruct-2507", 30.5, 3.3, "bf16", 56.9,
        {"MMLU": 81.4}, f"{Q}: Qwen3-30B-A3B-Base 81.38",
        std_profiles(v3_rows(energy, "Qwen/Qwen3-30B-A3B-Instruct-2507", 2), f"measured: {V3}, 2x H100", 2, 3.3,
                     l4=False), arch="MoE")
    Q32 = v3_rows(energy, "Qwen/Qwen3-32B", 1)
    add("qwen3-32b-bf16", "qwen3-30b-class", "Qwen/Qwen3-32B", 32.8, None, "bf16", 61.0,
        {"MMLU": 83.6}, f"{Q}: Qwen3-32B-Base 83.61",
        std_profiles(Q32, f"measured: {V3}, 1x H100", 1, 32.8, l4=False))
    add("qwen3-32b-bf16-tp2", "qwen3-30b-class", "Qwen/Qwen3-32B", 32.8, None, "bf16", 61.0,
        {"MMLU": 83.6}, f"{Q}: Qwen3-32B-Base 83.61",
        std_profiles(v3_rows(energy, "Qwen/Qwen3-32B", 2), f"measured: {V3}, 2x H100", 2, 32.8, l4=False),
        )
    add("qwen3-32b-fp8", "qwen3-30b-class", "Qwen/Qwen3-32B-FP8", 32.8, None, "fp8", 32.0,
        {"MMLU": 82.6}, f"{Q} 83.61 - 1.0 (Qwen2-72B GPTQ-Int8 MMLU drop; fp8 assumed alike)",
        std_profiles(quant(Q32, 46.17 / 20.72, 1.3), f"derived: {V3} Qwen3-32B 1x H100 rows x fp8 speed-up "
                     "(Qwen3-32B H20 batch 1: 2.23x, assumed 1.3x at the largest batch)", 1, 32.8, l4=False, fp8=True),
        )
    add("qwen3-14b-bf16", "qwen3-30b-class", "Qwen/Qwen3-14B", 14.8, None, "bf16", 27.5,
        {"MMLU": 81.1}, f"{Q}: Qwen3-14B-Base 81.05",
        std_profiles(v3_rows(energy, "Qwen/Qwen3-14B", 1), f"measured: {V3}, 1x H100", 1, 14.8, l4=False))
    add("qwen3-8b-bf16", "qwen3-30b-class", "Qwen/Qwen3-8B", 8.2, None, "bf16", 15.3,
        {"MMLU": 76.9}, f"{Q}: Qwen3-8B-Base 76.89",
        std_profiles(v3_rows(energy, "Qwen/Qwen3-8B", 1), f"measured: {V3}, 1x H100", 1, 8.2))
    return out


def fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 100 else f"{x:.0f}"


def render(energy: Path) -> str:
    L = []
    w = L.append
    w("# Default ModelCatalog for greenmodel-operator.")
    w("# DEFAULTS TO REPLACE WITH YOUR OWN MEASUREMENTS: every figure below comes from a public source named in")
    w("# the comment beside it, or is derived from one by a scaling stated there (see NOTICE-catalog and")
    w("# docs/planner.md). Generated by catalog-src/build_default_catalog.py from ../shared/data/energy.")
    w("# Powers are GPU power only (no CPU), as ML.ENERGY measures; PUE is applied per region by the planner.")
    w("apiVersion: greenmodel.dev/v1alpha1")
    w("kind: ModelCatalog")
    w("metadata:")
    w("  name: default")
    w("spec:")
    w("  gpus:")
    for product, g in GPUS.items():
        w(f"    # {GPU_COMMENTS[product]}")
        w(f"    - product: {product}")
        w(f"      memoryGiB: {g['memory']}")
        w(f"      idleWatts: {g['idle']}")
        w(f"      maxWatts: {g['tdp']}")
        w(f"      embodiedKilograms: {EMBODIED_KG:g}  # Cloud Carbon Footprint: 150 kg per GPU + 1,000 kg server / 8 GPUs")
        w(f"      lifetimeYears: {LIFETIME_YEARS}  # Cloud Carbon Footprint default hardware lifetime")
        w("      usableMemoryFraction: 0.9  # vLLM --gpu-memory-utilization default")
    w("  runtimes:")
    w("    # The serving engine's pods on this cluster (admin-owned): see docs/serving.md. Requests are per GPU.")
    w("    - name: vLLM")
    w(f"      image: {VLLM_IMAGE}")
    w("      resources: {cpu: \"4\", memory: 32Gi, ephemeralStorage: 10Gi}")
    w("      resourcesByGpuProduct:")
    w("        # g2-standard-8 (1x L4): 8 vCPU, 32 GB; leave room for the node's own daemons")
    w("        - {gpuProduct: NVIDIA-L4, cpu: \"4\", memory: 24Gi, ephemeralStorage: 10Gi}")
    w("  variants:")
    for v in variants(energy):
        if v["note"]:
            w(f"    # {v['note']}")
        w(f"    - name: {v['name']}")
        w(f"      family: {v['family']}")
        w(f"      modelId: {v['model_id']}")
        w(f"      architecture: {v['arch']}")
        w(f"      parametersBillions: {v['params']}  # model card")
        if v["active"]:
            w(f"      activeParametersBillions: {v['active']}  # model card: parameters active per token")
        w(f"      precision: {v['precision']}")
        w(f"      weightMemoryGiB: {v['weights']}  # size of the published weights")
        layers, kv, hd, ctx = ATTENTION[v["model_id"]]
        w(f"      contextLength: {ctx}  # config.json max_position_embeddings")
        w(f"      attention: {{layers: {layers}, kvHeads: {kv}, headDim: {hd}}}  # config.json: num_hidden_layers, "
          "num_key_value_heads, head_dim")
        w(f"      quality:")
        for k, s in v["quality"].items():
            w(f"        {k}: {s}  # {v['qsrc']}")
        w(f"      runtime:")
        w(f"        name: vLLM")
        if v["args"]:
            w(f"        args: [{', '.join(repr(a).replace(chr(39), chr(34)) for a in v['args'])}]")
        else:
            w(f"        args: []")
        w(f"      profiles:")
        for p in v["profiles"]:
            w(f"        - gpuProduct: {p['product']}")
            w(f"          gpusPerReplica: {p['gpus']}")
            w(f"          prefillTokensPerSecond: {p['prefill']:.0f}  # derived: {PREFILL_MFU} MFU x peak BF16 FLOPs x GPUs / (2 x active params)")
            if not p["src"].startswith("measured"):
                w(f"          derived: \"{p['src']}\"")
            else:
                w(f"          # {p['src']}")
            w(f"          batch:")
            for x in p["pts"]:
                w(f"            - {{maxBatchSize: {x['b']}, outputTokensPerSecond: {fmt(x['tps'])}, "
                  f"interTokenP95Milliseconds: {fmt(x['itl'])}, powerWatts: {fmt(x['p'])}}}")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    energy = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/energy")
    OUT.write_text(render(energy))
    print(f"wrote {OUT}")
