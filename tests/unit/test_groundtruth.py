"""The ground-truth simulator (greenmodel.groundtruth) against the measurements it is built from, and its engine's
scheduling rules. Expected figures come from the CSV rows read here with the csv module, never from the planner."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from greenmodel.groundtruth import engine, judge, measured, prefill

ENERGY = Path(__file__).resolve().parents[2] / "operator" / "greenmodel" / "data" / "energy"
H100, A100, L4 = "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L4"


def _v3_rows(model: str, gpu: str, gpus: int) -> list[dict]:
    with open(ENERGY / "mlenergy-v3-llm-configs.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["model_id"] == model and r["gpu_model"] == gpu
                and int(r["num_gpus"]) == gpus and r["task"] == "lm-arena-chat"]


def _config(curve, max_num_seqs=256, kv=10**9, layers=32, params=8.0, product=H100, tp=1, idle=70.0):
    pre = prefill.prefill_model(ENERGY / "vidur-mlp-profiles", product, tp, layers, params)
    return engine.EngineConfig(curve=curve, prefill=pre, max_num_seqs=max_num_seqs, kv_tokens=kv, idle_watts=idle)


@pytest.mark.parametrize("model,gpus,params", [("meta-llama/Llama-3.1-8B-Instruct", 1, 8.0),
                                               ("meta-llama/Llama-3.1-70B-Instruct", 4, 70.0)])
def test_saturated_engine_reproduces_the_measured_rows(model, gpus, params):
    """Closed loop at each measured row's average batch: that many one-token prompts, long outputs. The simulated
    output rate and energy per token are compared with the row's measured ones. The residual is the measurement's
    own prefill (its prompts were real; this run has none) and the gap between the median ITL the curve holds and
    the mean one: the simulated engine is faster, by 2 % at batch 8 up to ~30 % at the largest batches."""
    curve = measured.curve_for(ENERGY, model, H100, gpus, "bf16", params)
    assert curve.measured and "ML.ENERGY v3" in curve.source
    residuals = []
    for r in _v3_rows(model, "H100", gpus):
        cap = int(r["max_num_seqs"])
        n = max(1, round(float(r["avg_batch_size"])))
        cfg = _config(curve, max_num_seqs=n, layers=80 if gpus == 4 else 32, params=params, tp=gpus)
        res = engine.simulate(cfg, 1, np.zeros(n), np.ones(n, dtype=int), np.full(n, 10**6), duration_s=20.0,
                              measure_from_s=5.0)
        tput = res.output_tokens / res.duration_s
        jpt = res.energy_j / res.output_tokens
        measured_tput = float(r["output_throughput_tokens_per_sec"])
        measured_jpt = float(r["energy_per_token_joules"])
        residuals.append((cap, tput / measured_tput - 1, jpt / measured_jpt - 1))
        assert 0.0 <= tput / measured_tput - 1 < 0.35, (cap, tput, measured_tput)
        assert -0.30 < jpt / measured_jpt - 1 <= 0.0, (cap, jpt, measured_jpt)
    print("\n(batch cap, throughput residual, J/token residual):", [(c, round(t, 3), round(j, 3)) for c, t, j in residuals])


def test_curves_say_which_rule_derived_them():
    l4 = measured.curve_for(ENERGY, "meta-llama/Llama-3.1-8B-Instruct", L4, 1, "bf16", 8.0)
    assert "H100 measured" in l4.rule and "memory bandwidth" in l4.rule
    h = measured.curve_for(ENERGY, "meta-llama/Llama-3.1-8B-Instruct", H100, 1, "bf16", 8.0)
    assert math.isclose(l4.step_ms(64), h.step_ms(64) * 3.35 / 0.3)
    fp8 = measured.curve_for(ENERGY, "neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", H100, 1, "fp8", 8.0)
    assert "fp8 from bf16" in fp8.rule and fp8.step_ms(64) < h.step_ms(64)
    small = measured.curve_for(ENERGY, "meta-llama/Llama-3.2-3B-Instruct", H100, 1, "bf16", 3.2)
    assert "llama-3.1-8b-instruct" in small.rule and "active parameters" in small.rule
    mixtral = measured.curve_for(ENERGY, "mistralai/Mixtral-8x7B-Instruct-v0.1", H100, 4, "bf16", 12.9, moe=True)
    assert "v2" in mixtral.rule  # only v2 measured it: corrected to v3 by a model both measured


def test_kv_budget_preempts_and_recomputes():
    curve = measured.curve_for(ENERGY, "meta-llama/Llama-3.1-8B-Instruct", H100, 1, "bf16", 8.0)
    n = 40
    cfg = _config(curve, max_num_seqs=64, kv=4000)  # 40 x (50 prompt + 200 output) = 10,000 tokens: does not fit
    res = engine.simulate(cfg, 1, np.linspace(0, 0.1, n), np.full(n, 50), np.full(n, 200), duration_s=120.0)
    assert res.preemptions > 0
    assert res.completed == n
    assert res.output_tokens >= n * 200  # recomputed requests emit their tokens again


def test_a_kv_cache_full_of_half_prefilled_prompts_does_not_stall():
    curve = measured.curve_for(ENERGY, "meta-llama/Llama-3.1-8B-Instruct", H100, 1, "bf16", 8.0)
    cfg = _config(curve, max_num_seqs=64, kv=3000)
    # 10 prompts of 1,000 tokens at once: chunks of all of them fill the 3,000-token cache before any finishes
    res = engine.simulate(cfg, 1, np.zeros(10), np.full(10, 1000), np.full(10, 20), duration_s=60.0)
    assert res.completed == 10 and res.preemptions > 0
    too_long = engine.simulate(cfg, 1, np.zeros(1), np.full(1, 5000), np.full(1, 20), duration_s=10.0)
    assert too_long.rejected == 1 and too_long.completed == 0 and np.isnan(too_long.request_ttft_s[0])


def test_join_shortest_queue_spreads_and_overload_shows_in_ttft():
    curve = measured.curve_for(ENERGY, "meta-llama/Llama-3.1-8B-Instruct", H100, 1, "bf16", 8.0)
    cfg = _config(curve, max_num_seqs=8)
    # 10 requests/s of 200 output tokens (2,000 tok/s): one replica of 8 sequences at ~7.3 ms a step makes ~1,100
    t = np.arange(400) * 0.1
    one = engine.simulate(cfg, 1, t, np.full(400, 100), np.full(400, 200), duration_s=30.0)
    four = engine.simulate(cfg, 4, t, np.full(400, 100), np.full(400, 200), duration_s=30.0)
    assert one.p95_ttft_s() > 5 * four.p95_ttft_s()
    assert four.busy_s > 2 * one.busy_s * 0.9  # the work is spread over the replicas
    ok, judged_n = one.requests_within(1.5, 50.0)
    assert judged_n > 0 and ok < judged_n


def test_idle_replicas_draw_idle_power_only():
    curve = measured.curve_for(ENERGY, "meta-llama/Llama-3.1-8B-Instruct", H100, 1, "bf16", 8.0)
    cfg = _config(curve, idle=70.0)
    res = engine.simulate(cfg, 3, np.zeros(0), np.zeros(0), np.zeros(0), duration_s=100.0)
    assert res.energy_j == pytest.approx(3 * 70.0 * 100.0)


def test_chunked_prefill_budget_follows_vllm_defaults():
    assert engine.default_max_num_batched_tokens(79.6, H100) == 8192
    assert engine.default_max_num_batched_tokens(80, A100) == 2048
    assert engine.default_max_num_batched_tokens(22.5, L4) == 2048
    assert engine.default_max_num_batched_tokens(180, "NVIDIA-B200") == 16384


def test_prefill_uses_the_profile_of_the_gpu_family():
    p = prefill.prefill_model(ENERGY / "vidur-mlp-profiles", A100, 1, 32, 8.03)
    assert "a100_meta-llama_Meta-Llama-3-8B" in p.rule
    with open(ENERGY / "vidur-mlp-profiles" / "a100_meta-llama_Meta-Llama-3-8B.csv.gz", "rb") as f:
        import gzip
        rows = list(csv.DictReader(gzip.open(f, "rt")))
    at = {int(r["num_tokens"]): sum(float(v) for k, v in r.items() if k.endswith(".median"))
          for r in rows if r["num_tensor_parallel_workers"] == "1"}
    # 1024 tokens of the profiled model itself: 32 layers x (time at 1024 - time at 1 token)
    assert p.linear_ms(1024) == pytest.approx(32 * (at[1024] - at[1]), rel=1e-3)
    assert p.attention_ms(1024, 4096) > p.attention_ms(1024, 0) > 0


def test_workload_window_repeats_the_trace():
    w = judge.Workload(offsets_s=np.array([0.0, 1.0, 2.0]), prompt_tokens=np.array([1, 2, 3]),
                       output_tokens=np.array([4, 5, 6]), period_s=3.0)
    t, p, o = w.window(2.0, 4.0)
    assert list(t) == [0.0, 1.0, 2.0, 3.0]  # 2 | 0 1 2 (next period) -> offsets from the window start
    assert list(p) == [3, 1, 2, 3]
    assert judge.sampled_hours(10, 3) == [1, 5, 8]
    assert judge.sampled_hours(5, None) == [0, 1, 2, 3, 4]
