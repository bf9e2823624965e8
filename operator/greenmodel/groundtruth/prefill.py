"""Prefill time of a chunk of prompt tokens, from Vidur's measured per-layer operator times.

Vidur (microsoft/vidur, ``data/profiling/compute/``) measured every non-attention operator of one transformer layer
(embedding, norms, QKV and output projections, RoPE, MLP, residual adds) by the number of tokens in the batch and
the tensor-parallel degree: Llama-3-8B and Llama-3-70B on A100, Llama-2-7B and Llama-2-70B on H100. Time of a
chunk of ``n`` tokens, per layer, is the sum of the medians at ``n`` (interpolated between measured token counts).

Derived, and stated by :attr:`PrefillModel.rule`:

* another model: the profile of the same GPU family (A100 or H100) nearest in parameters, scaled by the ratio of
  active parameters (projections and MLP are matrix products whose work is proportional to them) and of layers;
* another GPU (L4, B200): the H100 profile (the A100 one for the L4) scaled by the dense BF16 TFLOP/s ratio;
* attention (not profiled): ``4 * n * (context + n/2) * hidden`` FLOPs per layer (scores and values, causal), at
  40 % of the GPU's dense BF16 peak;
* the time at one token (reading the weights once) is already paid by the decode step it rides on
  (:mod:`.engine`), so only the time above it is added.
"""

from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from greenmodel.groundtruth.measured import GPUS, gpu_key

# Architecture facts of the profiled models (their config.json): layers and parameters (billions).
PROFILES = {
    "a100_meta-llama_Meta-Llama-3-8B.csv": ("A100", 32, 8.03),
    "a100_meta-llama_Meta-Llama-3-70B.csv": ("A100", 80, 70.6),
    "h100_meta-llama_Llama-2-7b-hf.csv": ("H100", 32, 6.74),
    "h100_meta-llama_Llama-2-70b-hf.csv": ("H100", 80, 69.0),
}
OPERATORS = ("emb", "input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
             "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
ATTENTION_EFFICIENCY = 0.4


@lru_cache(maxsize=16)
def _profile(path: str, tp: int) -> tuple[np.ndarray, np.ndarray]:
    """(num_tokens, ms per layer) of one Vidur profile at tensor-parallel degree ``tp``."""
    rows: dict[int, float] = {}
    p = Path(path)
    if not p.exists() and Path(path + ".gz").exists():
        p = Path(path + ".gz")
    with (gzip.open(p, "rt", newline="") if p.suffix == ".gz" else open(p, newline="")) as f:
        for r in csv.DictReader(f):
            if int(r["num_tensor_parallel_workers"]) == tp:
                rows[int(r["num_tokens"])] = sum(float(r[f"time_stats.{op}.median"]) for op in OPERATORS)
    if not rows:
        raise LookupError(f"{path}: no rows at tensor-parallel degree {tp}")
    n = np.array(sorted(rows), dtype=float)
    return n, np.array([rows[int(k)] for k in n])


@dataclass(frozen=True)
class PrefillModel:
    tokens: np.ndarray  # measured token counts
    layer_ms: np.ndarray  # profile ms per layer at those counts (already scaled to this model and GPU)
    layers: int
    hidden: float
    tflops: float
    rule: str

    def linear_ms(self, n: float) -> float:
        """Non-attention time of ``n`` prompt tokens above the one-token floor (all layers)."""
        if n <= 0:
            return 0.0
        t = np.interp(n, self.tokens, self.layer_ms)
        if n > self.tokens[-1]:  # beyond the profile: linear in tokens
            t = self.layer_ms[-1] * n / self.tokens[-1]
        return float((t - self.layer_ms[0]) * self.layers)

    def linear_ms_table(self, max_tokens: int) -> list[float]:
        """``linear_ms(k)`` for k = 0..max_tokens (one vectorised interpolation)."""
        k = np.arange(max_tokens + 1, dtype=float)
        t = np.interp(k, self.tokens, self.layer_ms)
        beyond = k > self.tokens[-1]
        t[beyond] = self.layer_ms[-1] * k[beyond] / self.tokens[-1]
        out = (t - self.layer_ms[0]) * self.layers
        out[0] = 0.0
        return out.tolist()

    @property
    def attention_ms_per_token_pair(self) -> float:
        """ms per unit of ``n * (context + n/2)``: 4 x hidden x layers FLOPs (scores and values) at the
        attention efficiency."""
        return 4.0 * self.hidden * self.layers / (self.tflops * 1e12 * ATTENTION_EFFICIENCY) * 1000.0

    def attention_ms(self, n: float, context: float) -> float:
        """Attention of ``n`` new tokens over ``context`` earlier ones, all layers."""
        return n * (context + n / 2.0) * self.attention_ms_per_token_pair


def prefill_model(profiles_dir: str | Path, product: str, tp: int, layers: int, active_params_b: float) -> PrefillModel:
    """The prefill model of a deployment (its GPU, tensor-parallel degree, layers and active parameters)."""
    gpu = gpu_key(product)
    family = "A100" if gpu.startswith("A100") or gpu == "L4" else "H100"
    cands = [(name, fam, lay, p) for name, (fam, lay, p) in PROFILES.items() if fam == family]
    name, fam, lay, params = min(cands, key=lambda c: abs(math.log(c[3] / active_params_b)))
    n, ms = _profile(str(Path(profiles_dir) / name), tp)
    # per layer work scales with parameters per layer
    scale = (active_params_b / layers) / (params / lay)
    fam_tflops = GPUS["A100-80GB" if fam == "A100" else "H100"]["tflops"]
    gpu_tflops = GPUS[gpu]["tflops"]
    rule = f"Vidur {name.removesuffix('.csv')} (tp {tp}) x {scale:.2f} (active parameters per layer)"
    if gpu_tflops != fam_tflops:
        rule += f" x {fam_tflops / gpu_tflops:.2f} (dense BF16 TFLOP/s {fam_tflops:g}/{gpu_tflops:g})"
    hidden = math.sqrt(active_params_b * 1e9 / (12.0 * layers))  # P ~ 12 L d^2 for a transformer
    rule += f"; attention by FLOPs at {ATTENTION_EFFICIENCY:.0%} of {gpu_tflops:g} TFLOP/s x {tp} GPU(s)"
    return PrefillModel(tokens=n, layer_ms=ms * scale * fam_tflops / gpu_tflops, layers=layers, hidden=hidden,
                        tflops=gpu_tflops * tp, rule=rule)
