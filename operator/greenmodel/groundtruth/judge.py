"""Hour-by-hour ground truth of what a policy chose: energy, tokens and latency of its deployment at the load
that actually arrived, simulated request by request (:mod:`.engine`).

Sampled, and said so: each judged hour runs ``warmup_s + sample_s`` seconds of the request trace at that hour's
rate (the trace's own arrival times, divided by the hour's rate factor; the trace repeats end to end where a window
needs more than it holds) and scales the ``sample_s`` measured seconds to the hour. The window's offset into the
trace cycles through ``windows`` positions by hour, so the hours see different parts of the trace. Results are
cached by (deployment, replicas, rate factor to 3 significant digits, window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from greenmodel.groundtruth import engine, measured, prefill


@dataclass(frozen=True)
class Deployment:
    """One replica's facts (from the model's config and the GPU datasheet) and engine settings."""

    model_id: str
    precision: str  # bf16, fp8, int4-awq, ...
    gpu_product: str
    gpus: int  # per replica (tensor parallel)
    gpu_memory_gib: float
    idle_watts_per_gpu: float
    weights_gib: float
    layers: int
    kv_heads: int
    head_dim: int
    active_params_b: float
    moe: bool
    max_num_seqs: int
    gpu_memory_utilization: float


@dataclass(frozen=True)
class HourTruth:
    energy_kwh: float  # GPU energy of the hour (no PUE)
    output_tokens: float  # of the hour
    p95_ttft_s: float
    p95_itl_ms: float
    slo_met: bool
    requests_within: float  # of the hour (scaled from the window)
    requests_judged: float
    preemptions: int
    mean_waiting: float  # requests queued, not admitted, time-averaged over all replicas
    curve_rule: str  # "" when the decode curve was measured
    prefill_rule: str


@dataclass(frozen=True)
class Workload:
    """A request trace: arrival offsets (s, from 0, sorted), prompt and output tokens; it repeats every period_s."""

    offsets_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    period_s: float

    @property
    def output_tokens_per_s(self) -> float:
        return float(self.output_tokens.sum()) / self.period_s

    def window(self, start_s: float, length_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Requests of trace time [start_s, start_s + length_s), offsets from start_s, the trace repeated."""
        parts = []
        k0 = int(start_s // self.period_s)
        k = k0
        while k * self.period_s < start_s + length_s:
            t = self.offsets_s + k * self.period_s
            sel = (t >= start_s) & (t < start_s + length_s)
            parts.append((t[sel] - start_s, self.prompt_tokens[sel], self.output_tokens[sel]))
            k += 1
        return tuple(np.concatenate(x) for x in zip(*parts))  # type: ignore[return-value]


class Judge:
    def __init__(self, energy_dir: str | Path, workload: Workload, ttft_slo_s: float, itl_slo_ms: float,
                 sample_s: float = 60.0, warmup_s: float = 20.0, windows: int = 6):
        self.energy_dir = str(energy_dir)
        self.workload = workload
        self.ttft_slo_s, self.itl_slo_ms = ttft_slo_s, itl_slo_ms
        self.sample_s, self.warmup_s, self.windows = sample_s, warmup_s, windows
        self._cfg: dict[Deployment, engine.EngineConfig] = {}
        self._cache: dict[tuple, HourTruth] = {}
        self.simulations = 0
        self.simulated_s = 0.0

    def config(self, d: Deployment) -> engine.EngineConfig:
        if d not in self._cfg:
            curve = measured.curve_for(self.energy_dir, d.model_id, d.gpu_product, d.gpus, d.precision,
                                       d.active_params_b, d.moe)
            pre = prefill.prefill_model(Path(self.energy_dir) / "vidur-mlp-profiles", d.gpu_product, d.gpus,
                                        d.layers, d.active_params_b)
            # vLLM's KV cache dtype "auto" is the activation dtype (16-bit), fp8 weights included
            kv = engine.kv_tokens(d.gpu_memory_gib, d.gpus, d.gpu_memory_utilization, d.weights_gib, d.layers,
                                  d.kv_heads, d.head_dim)
            self._cfg[d] = engine.EngineConfig(
                curve=curve, prefill=pre, max_num_seqs=d.max_num_seqs, kv_tokens=kv,
                idle_watts=d.idle_watts_per_gpu * d.gpus,
                max_num_batched_tokens=engine.default_max_num_batched_tokens(d.gpu_memory_gib, d.gpu_product))
        return self._cfg[d]

    def hour(self, d: Deployment, replicas: int, output_tokens_per_s: float, hour_index: int) -> HourTruth:
        """The ground truth of ``replicas`` replicas of ``d`` serving ``output_tokens_per_s`` for one hour."""
        factor = output_tokens_per_s / self.workload.output_tokens_per_s
        f = float(f"{factor:.3g}") if factor > 0 else 0.0
        w = hour_index % self.windows
        key = (d, replicas, f, w)
        if key not in self._cache:
            self._cache[key] = self._simulate(d, replicas, f, w)
        return self._cache[key]

    def _simulate(self, d: Deployment, replicas: int, factor: float, w: int) -> HourTruth:
        cfg = self.config(d)
        total = self.warmup_s + self.sample_s
        scale = 3600.0 / self.sample_s
        if factor <= 0:
            return HourTruth(cfg.idle_watts * replicas * 3600 / 3.6e6, 0.0, 0.0, 0.0, True, 0.0, 0.0, 0, 0.0,
                             cfg.curve.rule, cfg.prefill.rule)
        start = w * self.workload.period_s / self.windows
        t, p, o = self.workload.window(start, total * factor)
        r = engine.simulate(cfg, replicas, t / factor, p, o, total, measure_from_s=self.warmup_s)
        self.simulations += 1
        self.simulated_s += total
        ok, judged = r.requests_within(self.ttft_slo_s, self.itl_slo_ms)
        return HourTruth(energy_kwh=r.energy_j * scale / 3.6e6, output_tokens=r.output_tokens * scale,
                         p95_ttft_s=r.p95_ttft_s(), p95_itl_ms=r.p95_itl_ms(),
                         slo_met=r.within(self.ttft_slo_s, self.itl_slo_ms),
                         requests_within=ok * scale, requests_judged=judged * scale, preemptions=r.preemptions,
                         mean_waiting=r.mean_waiting,
                         curve_rule=cfg.curve.rule, prefill_rule=cfg.prefill.rule)


def sampled_hours(hours: int, budget: int | None) -> list[int]:
    """Every hour, or ``budget`` hours spread evenly over the period (stratified by position, so day and night and
    every week are represented)."""
    if budget is None or budget >= hours:
        return list(range(hours))
    step = hours / budget
    return sorted({min(hours - 1, int(math.floor(i * step + step / 2))) for i in range(budget)})
