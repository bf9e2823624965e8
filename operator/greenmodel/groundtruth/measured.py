"""Decode step time and GPU power by batch size, from ML.ENERGY's measured vLLM rows.

A :class:`Curve` is one (model, GPU, GPU count, precision) with its measured points: the steady-state average
batch, the median inter-token latency (one decode step of the whole batch) and the average power of all its GPUs.
Between points it interpolates linearly; below the smallest measured batch it holds the smallest batch's step
time and power (an overestimate of both, stated); above the largest it holds the largest.

Where no row was measured for a deployment, :func:`curve_for` derives one and names its rule in ``Curve.rule``
(empty for measured curves). The rules, in the order tried:

1. ``measured``: the model on that GPU with that GPU count in v3. v2 ran an older vLLM (its decode steps are 2-4x
   slower than v3's on the same H100), so a model v3 never measured takes its v2 H100 rows scaled, batch by batch, by
   the v3/v2 step-time and power ratio of a model measured on H100 by both with the same GPU count (itself where
   possible, else Llama-3.1-8B for one GPU, Llama-3.1-70B for four).
2. ``other-precision``: fp8 or int4 from the same model's bf16 curve, step time divided by the decode speed-up at
   batch 1 measured for Qwen3 on an H20 (``qwen3-speed-h20.csv``, SGLang, input length 1, nearest model size);
   power kept.
3. ``other-gpu``: the same model on another measured GPU with the same count (H100 first), step time scaled by
   the memory bandwidth ratio (decode is bandwidth-bound), power by the TDP ratio.
4. ``other-model``: the v3 chat-measured model of the same architecture (dense or MoE) and GPU count whose active
   parameters are nearest, on that GPU or else on an H100 (then rule 3), step time scaled by the active-parameter
   ratio (weights read per step), power kept.

Datasheet facts used by the rules (NVIDIA product pages): memory bandwidth TB/s and TDP W.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

# GPU facts: memory bandwidth (TB/s), board power (W), dense BF16 TFLOP/s (NVIDIA datasheets).
GPUS: dict[str, dict[str, float]] = {
    "H100": {"bandwidth": 3.35, "tdp": 700.0, "tflops": 989.0},
    "A100-80GB": {"bandwidth": 2.039, "tdp": 400.0, "tflops": 312.0},
    "A100-40GB": {"bandwidth": 1.555, "tdp": 400.0, "tflops": 312.0},
    "B200": {"bandwidth": 8.0, "tdp": 1000.0, "tflops": 2250.0},
    "L4": {"bandwidth": 0.3, "tdp": 72.0, "tflops": 121.0},
}
CHAT_TASKS = ("lm-arena-chat", "chat")


def gpu_key(product: str) -> str:
    """A node label / dataset GPU name -> a key of :data:`GPUS` ('NVIDIA-H100-80GB-HBM3' -> 'H100')."""
    p = product.upper().replace(" ", "-")
    if "H100" in p:
        return "H100"
    if "A100" in p:
        return "A100-40GB" if "40G" in p else "A100-80GB"
    if "B200" in p:
        return "B200"
    if re.search(r"(^|-)L4($|-)", p):
        return "L4"
    raise KeyError(f"no datasheet facts for GPU {product!r}")


def model_key(model_id: str) -> str:
    """'meta-llama/Meta-Llama-3.1-8B-Instruct' and 'meta-llama/Llama-3.1-8B-Instruct' -> 'llama-3.1-8b-instruct'."""
    name = model_id.rsplit("/", 1)[-1].lower()
    return re.sub(r"^meta-llama-", "llama-", name)


def precision_key(p: str) -> str:
    p = p.lower()
    if p in ("bfloat16", "bf16", "fp16", "float16"):
        return "bf16"
    if p.startswith("fp8"):
        return "fp8"
    if p.startswith("int4") or "awq" in p or "gptq" in p:
        return "int4"
    return p


@dataclass(frozen=True)
class Curve:
    model: str
    gpu: str
    gpus: int
    precision: str
    batch: np.ndarray
    itl_ms: np.ndarray
    power_w: np.ndarray
    active_params_b: float
    source: str
    moe: bool = False
    version: str = "v3"  # ML.ENERGY leaderboard version
    task: str = ""
    rule: str = ""  # "" = measured; else the derivation, with its numbers

    @property
    def measured(self) -> bool:
        return not self.rule

    def step_ms(self, batch: float) -> float:
        return float(np.interp(batch, self.batch, self.itl_ms))

    def watts(self, batch: float) -> float:
        return float(np.interp(batch, self.batch, self.power_w))


def _curve(points: list[tuple[float, float, float]], **kw) -> Curve:
    points.sort()
    a = np.array(points, dtype=float)
    return Curve(batch=a[:, 0], itl_ms=a[:, 1], power_w=a[:, 2], **kw)


@lru_cache(maxsize=4)
def load(energy_dir: str) -> tuple[Curve, ...]:
    """Every measured curve of ``mlenergy-v3-llm-configs.csv`` and ``mlenergy-v2-llm-configs.csv`` in ``energy_dir``
    (chat tasks preferred: a (model, GPU, count) measured on a chat task keeps only those rows)."""
    d = Path(energy_dir)
    groups: dict[tuple, dict[str, list]] = {}
    with open(d / "mlenergy-v3-llm-configs.csv", newline="") as f:
        for r in csv.DictReader(f):
            key = ("v3", model_key(r["model_id"]), gpu_key(r["gpu_model"]), int(r["num_gpus"]),
                   precision_key(r["weight_precision"]))
            g = groups.setdefault(key, {"params": float(r["activated_params_billions"]), "tasks": {},
                                        "moe": "moe" in r["architecture"].lower()})
            g["tasks"].setdefault(r["task"], []).append(
                (float(r["avg_batch_size"]), float(r["median_itl_ms"]), float(r["avg_power_watts"])))
    with open(d / "mlenergy-v2-llm-configs.csv", newline="") as f:
        for r in csv.DictReader(f):
            m = model_key(r["Model"])
            key = ("v2", m, gpu_key(r["GPU"]), int(r["TP"]) * int(r["PP"]), "bf16")
            tput, out_tok = float(r["Token tput (tok/s)"]), float(r["Avg Output Tokens"])
            # v2 has no power column: average power = energy per request x requests per second.
            watts = float(r["Energy/req (J)"]) * tput / out_tok
            g = groups.setdefault(key, {"params": _params_from_name(m), "tasks": {}, "moe": "mixtral" in m})
            g["tasks"].setdefault(r["task"], []).append(
                (float(r["Avg BS (reqs)"]), float(r["Avg TPOT (s)"]) * 1000.0, watts))
    out = []
    for (ver, m, gpu, n, prec), g in groups.items():
        task = next((t for t in CHAT_TASKS if t in g["tasks"]), sorted(g["tasks"])[0])
        src = f"ML.ENERGY {ver} ({task}; {len(g['tasks'][task])} rows)"
        if ver == "v2":
            src += ", power = energy per request x request rate"
        out.append(_curve(list(g["tasks"][task]), model=m, gpu=gpu, gpus=n, precision=prec,
                          active_params_b=g["params"], source=src, version=ver, task=task, moe=g["moe"]))
    return tuple(out)


def _params_from_name(m: str) -> float:
    """Active parameters (billions) from a model name: 'mixtral-8x7b' -> 12.9 (2 of 8 experts), 'x-8b' -> 8."""
    if "mixtral-8x7b" in m:
        return 12.9
    if "mixtral-8x22b" in m:
        return 39.0
    found = re.findall(r"(\d+(?:\.\d+)?)b(?![a-z])", m)
    return float(found[-1]) if found else math.nan


@lru_cache(maxsize=4)
def _quant_speedup(energy_dir: str) -> dict[tuple[str, str], float]:
    """{(model size e.g. '8B', 'fp8'|'int4'): decode tokens/s ratio to BF16 at input length 1} (SGLang rows)."""
    rows: dict[tuple[str, str], float] = {}
    with open(Path(energy_dir) / "qwen3-speed-h20.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["engine"] == "SGLang" and r["input_len"] == "1":
                rows[(r["model"], r["quant"].upper())] = float(r["tokens_per_s"])
    out = {}
    for (model, q), tps in rows.items():
        base = rows.get((model, "BF16"))
        size = model.rsplit("-", 1)[-1]
        if base and q != "BF16":
            kind = "fp8" if q.startswith("FP8") else "int4" if "INT4" in q else None
            if kind:
                out[(size, kind)] = max(out.get((size, kind), 0.0), tps / base)
    return out


def curve_for(energy_dir: str | Path, model_id: str, product: str, gpus: int, precision: str,
              active_params_b: float, moe: bool = False) -> Curve:
    """The measured curve of this deployment, or one derived by the first rule of the module docstring that
    applies (its ``rule`` says which, with the numbers)."""
    ed = str(energy_dir)
    curves = load(ed)
    m, gpu, prec = model_key(model_id), gpu_key(product), precision_key(precision)
    base_m = re.sub(r"-(fp8|awq.*|gptq.*|int4.*)$", "", m)

    def find(model: str, g: str, n: int, p: str) -> Curve | None:
        hits = [c for c in curves if c.model == model and c.gpu == g and c.gpus == n and c.precision == p]
        v3 = [c for c in hits if c.version == "v3"]
        if v3:
            return v3[0]
        # v2 only for a model v3 never measured, and only its H100 rows (corrected to v3's vLLM): other GPUs are
        # then derived from those by rule 3, so every GPU ratio in the ground truth is the same datasheet ratio
        if g == "H100" and hits and not any(c.model == model and c.version == "v3" for c in curves):
            return to_v3(hits[0])
        return None

    def to_v3(c: Curve) -> Curve:
        """v2 ran an older vLLM (decode steps 2-3x slower on the same H100): where the model was measured on an
        H100 by both, the v2 curve is scaled by that H100 v3/v2 step-time and power ratio at each batch."""
        both = sorted({x.model for x in curves if x.gpu == "H100" and x.gpus == c.gpus and x.version == "v2"}
                      & {x.model for x in curves if x.gpu == "H100" and x.gpus == c.gpus and x.version == "v3"},
                      key=lambda mm: (mm != c.model, mm))
        if not both:
            raise LookupError(f"{c.model}: only ML.ENERGY v2 rows and no model with {c.gpus} H100 GPU(s) in both "
                              "v2 and v3 to correct them by")
        ref = both[0]
        h2 = [x for x in curves if x.model == ref and x.gpu == "H100" and x.gpus == c.gpus and x.version == "v2"]
        h3 = [x for x in curves if x.model == ref and x.gpu == "H100" and x.gpus == c.gpus and x.version == "v3"]
        b = c.batch
        ft = np.array([h3[0].step_ms(x) / h2[0].step_ms(x) for x in b])
        fp = np.array([h3[0].watts(x) / h2[0].watts(x) for x in b])
        return replace(c, itl_ms=c.itl_ms * ft, power_w=c.power_w * fp,
                       rule=(c.rule + "; " if c.rule else "") + f"ML.ENERGY v2 (older vLLM) scaled to v3 by the H100 v3/v2 "
                       f"ratio of {ref} with {c.gpus} GPU(s) (step time x {ft.min():.2f}-{ft.max():.2f}, power x {fp.min():.2f}-{fp.max():.2f})")

    def on_gpu(model: str, n: int, p: str) -> Curve | None:
        c = find(model, gpu, n, p)
        if c:
            return c
        if gpu == "A100-80GB" and (c := find(model, "A100-40GB", n, p)):
            f = GPUS["A100-40GB"]["bandwidth"] / GPUS["A100-80GB"]["bandwidth"]
            return replace(c, gpu=gpu, itl_ms=c.itl_ms * f,
                           rule=f"A100-40GB measured; {c.rule + '; ' if c.rule else ''}step time x {f:.3f} "
                                f"(memory bandwidth 1.555/2.039 TB/s)")
        return None

    def other_gpu(model: str, n: int, p: str) -> Curve | None:
        for g in ("H100", "A100-80GB", "A100-40GB", "B200"):
            c = find(model, g, n, p)
            if c and g != gpu:
                fb = GPUS[g]["bandwidth"] / GPUS[gpu]["bandwidth"]
                fp = GPUS[gpu]["tdp"] / GPUS[g]["tdp"]
                return replace(c, gpu=gpu, itl_ms=c.itl_ms * fb, power_w=c.power_w * fp,
                               rule=f"{g} measured; {c.rule + '; ' if c.rule else ''}step time x {fb:.2f} "
                                    f"(memory bandwidth), power x {fp:.2f} (TDP)")
        return None

    def with_precision(c: Curve | None) -> Curve | None:
        if c is None or prec == "bf16" or c.precision == prec:
            return c
        speed = _quant_speedup(ed)
        size = _nearest_size(active_params_b, {s for s, k in speed if k == prec})
        if size is None:
            return None
        s = speed[(size, prec)]
        rule = (f"{c.rule + '; ' if c.rule else ''}{prec} from bf16: step time / {s:.2f} "
                f"(Qwen3-{size} {prec} vs BF16 decode speed at batch 1, H20, SGLang)")
        return replace(c, precision=prec, itl_ms=c.itl_ms / s, rule=rule)

    c = on_gpu(m, gpus, prec) or on_gpu(base_m, gpus, prec)
    if c:
        return c
    c = with_precision(on_gpu(base_m, gpus, "bf16"))
    if c:
        return c
    c = other_gpu(base_m, gpus, prec) or with_precision(other_gpu(base_m, gpus, "bf16"))
    if c:
        return c
    # rule 4: the nearest measured model by active parameters (same GPU count), on this GPU if measured there
    # a current (v3) chat measurement of the same architecture (dense or MoE), on this GPU or else on an H100
    cands = [x for x in curves if x.gpus == gpus and x.precision == "bf16" and x.version == "v3" and x.moe == moe
             and x.task in CHAT_TASKS and x.gpu in (gpu, "H100")]
    if not cands:
        raise LookupError(f"no measured curve with {gpus} GPU(s) to derive {model_id} on {product} from")
    cands.sort(key=lambda x: (x.gpu != gpu, abs(math.log(x.active_params_b / active_params_b)), x.model))
    ref = cands[0]
    ratio = active_params_b / ref.active_params_b
    base = on_gpu(ref.model, gpus, "bf16") or other_gpu(ref.model, gpus, "bf16")
    assert base is not None
    c = replace(base, model=m, active_params_b=active_params_b, itl_ms=base.itl_ms * ratio, moe=moe,
                rule=f"{ref.model} ({ref.active_params_b:g}B active) on {ref.gpu}{'; ' + base.rule if base.rule else ''}; "
                     f"step time x {ratio:.2f} (active parameters)")
    return with_precision(c) or c


def _nearest_size(params_b: float, sizes: set[str]) -> str | None:
    def b(s: str) -> float:
        return float(s.rstrip("B"))

    sizes = {s for s in sizes if re.fullmatch(r"\d+(\.\d+)?B", s)}
    return min(sizes, key=lambda s: abs(math.log(b(s) / params_b))) if sizes else None
