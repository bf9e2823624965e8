"""A vLLM-style serving engine, simulated request by request (continuous batching, chunked prefill, KV limit).

Each replica runs the scheduler of vLLM's V1 engine, simplified to what changes time and energy:

* every step, each running request that has finished its prefill decodes one token;
* the rest of the step's token budget (``max_num_batched_tokens``) goes to prompt chunks: first of running requests
  still in prefill, then of waiting requests admitted in arrival order while fewer than ``max_num_seqs`` run and
  the KV cache has room for the chunk (chunked prefill);
* KV use is the prompt tokens prefilled plus the tokens generated; when a decode would overflow the KV budget the
  newest running request is preempted and recomputed later (vLLM's recompute preemption);
* a request's first token comes at the end of the step that completes its prompt (TTFT); each later step it
  decodes in is one inter-token interval (ITL).

Step time is the measured decode step at the step's decode batch (:class:`~greenmodel.groundtruth.measured.Curve`,
at least one: a forward pass reads the weights once) plus the prefill time of its prompt chunks
(:class:`~greenmodel.groundtruth.prefill.PrefillModel`). Power is the measured power at that decode batch while
decoding, the power of the largest measured batch while prefilling (compute-bound), and the GPUs' idle power while a
replica has nothing to do. Requests are routed to the replica with the fewest requests in it (join-shortest-queue).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from greenmodel.groundtruth.measured import Curve
from greenmodel.groundtruth.prefill import PrefillModel


@dataclass(frozen=True)
class EngineConfig:
    curve: Curve
    prefill: PrefillModel
    max_num_seqs: int
    kv_tokens: int  # KV cache capacity of one replica, in tokens
    idle_watts: float  # all the replica's GPUs, nothing running
    max_num_batched_tokens: int = 2048  # see default_max_num_batched_tokens


@dataclass
class Result:
    duration_s: float  # measured window
    replicas: int
    itl_ms: np.ndarray  # distinct step durations of decode steps
    itl_weight: np.ndarray  # tokens decoded in them
    energy_j: float
    output_tokens: int
    requests: int
    completed: int
    preemptions: int
    busy_s: float
    request_ttft_s: np.ndarray  # per request of the window; nan: no first token by the end
    request_tpot_ms: np.ndarray  # its mean time per output token after the first (so far)
    request_waited_s: np.ndarray  # from its arrival to the end of the run
    rejected: int = 0  # requests longer than the KV cache (vLLM refuses them)
    mean_waiting: float = 0.0  # time-averaged requests queued and not yet admitted, all replicas (vllm:num_requests_waiting)

    def p95_ttft_s(self) -> float:
        """p95 TTFT of the window's requests; one still without its first token counts at its wait so far (a
        lower bound of its TTFT)."""
        t = np.where(np.isnan(self.request_ttft_s), self.request_waited_s, self.request_ttft_s)
        return float(np.percentile(t, 95)) if t.size else math.nan

    def p95_itl_ms(self) -> float:
        return weighted_percentile(self.itl_ms, self.itl_weight, 95.0)

    def within(self, ttft_s: float, itl_ms: float) -> bool:
        """The window's p95 TTFT and p95 ITL both meet the SLO (a window without requests meets it)."""
        ttft, itl = self.p95_ttft_s(), self.p95_itl_ms()
        return (math.isnan(ttft) or ttft <= ttft_s) and (math.isnan(itl) or itl <= itl_ms)

    def requests_within(self, ttft_s: float, itl_ms: float) -> tuple[int, int]:
        """(requests within the SLO, requests judged): TTFT within and mean time per output token within; a request
        still without its first token is judged (as late) once it has waited longer than the TTFT SLO."""
        has = ~np.isnan(self.request_ttft_s)
        ok = has & (self.request_ttft_s <= ttft_s) & (self.request_tpot_ms <= itl_ms)
        judged = has | (self.request_waited_s > ttft_s)
        return int(ok.sum()), int(judged.sum())


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if values.size == 0 or weights.sum() <= 0:
        return math.nan
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    return float(v[np.searchsorted(cum, q / 100.0 * cum[-1])])


class _Req:
    __slots__ = ("arrival", "prompt", "output", "prefilled", "first_token", "last_token", "entry_step", "order",
                 "finish_step", "done_tokens")

    def __init__(self, arrival: float, prompt: int, output: int):
        self.arrival, self.prompt, self.output = arrival, prompt, output
        self.prefilled = 0
        self.first_token = self.last_token = -1.0
        self.entry_step = -1  # the step whose end emitted its first token
        self.order = 0  # admission order (the newest is preempted first)
        self.finish_step = -1
        self.done_tokens = 0  # tokens generated when it finished (0 while running)


class _Replica:
    __slots__ = ("waiting", "prefilling", "decoding", "finish_at", "kv_used", "step", "stepping", "last_end",
                 "admitted")

    def __init__(self) -> None:
        self.waiting: deque[_Req] = deque()
        self.prefilling: list[_Req] = []  # admitted, prompt not finished (admission order)
        self.decoding: dict[int, _Req] = {}  # id -> request
        self.finish_at: dict[int, list[_Req]] = {}  # step -> requests whose last token that step emits
        self.kv_used = 0
        self.step = 0  # steps run
        self.stepping = False
        self.last_end = 0.0
        self.admitted = 0

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self.prefilling) + len(self.decoding)

    def generated(self, q: _Req) -> int:
        """Tokens ``q`` has generated so far (one at its prefill step, one per step since)."""
        if q.done_tokens:
            return q.done_tokens
        return 0 if q.entry_step < 0 else 1 + self.step - q.entry_step


def simulate(cfg: EngineConfig, replicas: int, arrival_s: np.ndarray, prompt_tokens: np.ndarray,
             output_tokens: np.ndarray, duration_s: float, measure_from_s: float = 0.0) -> Result:
    """Serve the requests (sorted by arrival, seconds from 0) on ``replicas`` replicas until ``duration_s``.

    Only what happens from ``measure_from_s`` on is counted (a warm-up before it fills the queues): steps that
    start then, the first tokens of requests that arrived then, idle time then. Requests still in flight at the end
    count their tokens and energy so far. Idle time is charged at ``cfg.idle_watts`` per replica."""
    if replicas < 1:
        raise ValueError("replicas must be >= 1")
    reps = [_Replica() for _ in range(replicas)]
    curve, pre = cfg.curve, cfg.prefill
    prefill_w = float(curve.power_w.max())
    # per-step lookups as tables (the same interpolation, done once): decode ms and watts by batch, prefill ms by
    # chunk tokens (the attention term depends on the context too and is added per chunk)
    batches = np.arange(cfg.max_num_seqs + 1, dtype=float)
    batches[0] = 1.0
    step_ms_of = np.interp(batches, curve.batch, curve.itl_ms).tolist()
    watts_of = np.interp(batches, curve.batch, curve.power_w).tolist()
    linear_of = pre.linear_ms_table(cfg.max_num_batched_tokens)
    attn_k = pre.attention_ms_per_token_pair
    itl: dict[float, int] = {}
    energy = busy = 0.0
    out_tokens = completed = preempted = 0
    events: list[tuple[float, int]] = []  # (step end, replica)
    n = len(arrival_s)
    i = rejected = 0
    window: list[_Req] = []  # requests that arrived in the measured window
    waiting = 0  # requests queued, not admitted, over all replicas
    waiting_area = 0.0  # integral of waiting over the measured window
    last_t = measure_from_s

    def preempt(rep: _Replica) -> None:
        nonlocal preempted, waiting
        running = rep.prefilling + list(rep.decoding.values())
        victim = max(running, key=lambda q: q.order)
        rep.kv_used -= victim.prefilled + rep.generated(victim)
        if id(victim) in rep.decoding:
            del rep.decoding[id(victim)]
            rep.finish_at[victim.finish_step].remove(victim)
        else:
            rep.prefilling.remove(victim)
        victim.prefilled = 0
        victim.entry_step = victim.finish_step = -1
        victim.first_token = victim.last_token = -1.0
        rep.waiting.appendleft(victim)
        preempted += 1
        waiting += 1

    def start_step(r: int, now: float) -> None:
        nonlocal energy, busy, out_tokens, completed, waiting
        rep = reps[r]
        # KV for one more token per decoding request; preempt the newest until it fits
        while rep.decoding and rep.kv_used + len(rep.decoding) > cfg.kv_tokens:
            preempt(rep)
        nd = len(rep.decoding)
        budget = cfg.max_num_batched_tokens - nd
        chunks: list[tuple[_Req, int]] = []
        for q in rep.prefilling:
            if budget <= 0:
                break
            c = min(q.prompt - q.prefilled, budget, cfg.kv_tokens - rep.kv_used)
            if c > 0:
                chunks.append((q, c))
                budget -= c
                rep.kv_used += c
        while rep.waiting and budget > 0 and len(rep.prefilling) + len(rep.decoding) < cfg.max_num_seqs:
            q = rep.waiting[0]
            c = min(q.prompt, budget, cfg.kv_tokens - rep.kv_used)
            if c <= 0:
                break
            rep.waiting.popleft()
            waiting -= 1
            rep.admitted += 1
            q.order = rep.admitted
            rep.prefilling.append(q)
            chunks.append((q, c))
            budget -= c
            rep.kv_used += c
        if not nd and not chunks:
            if len(rep.prefilling) > 1:
                # the KV cache is full of half-prefilled prompts: free the newest and try again (vLLM preempts)
                preempt(rep)
                start_step(r, now)
                return
            rep.stepping = False
            return
        dec_ms = step_ms_of[nd]
        pre_ms = sum(linear_of[c] + attn_k * c * (q.prefilled + c / 2.0) for q, c in chunks)
        step_s = (dec_ms + pre_ms) / 1000.0
        end = now + step_s
        counted = now >= measure_from_s
        if counted:
            energy += (dec_ms * watts_of[nd] + pre_ms * prefill_w) / 1000.0
            busy += step_s
            if nd:
                k = round(dec_ms + pre_ms, 3)
                itl[k] = itl.get(k, 0) + nd
            out_tokens += nd
        rep.step += 1
        s = rep.step
        rep.kv_used += nd
        for q in rep.finish_at.pop(s, ()):
            del rep.decoding[id(q)]
            q.done_tokens = q.output
            q.last_token = end
            rep.kv_used -= q.prefilled + q.output
            completed += q.arrival >= measure_from_s
        for q, c in chunks:
            q.prefilled += c
            if q.prefilled >= q.prompt:
                rep.prefilling.remove(q)
                q.first_token = q.last_token = end
                q.entry_step = s  # the prefill step emits the first token
                rep.kv_used += 1
                if counted:
                    out_tokens += 1
                if q.output <= 1:
                    q.done_tokens = 1
                    rep.kv_used -= q.prefilled + 1
                    completed += q.arrival >= measure_from_s
                else:
                    q.finish_step = s + q.output - 1
                    rep.decoding[id(q)] = q
                    rep.finish_at.setdefault(q.finish_step, []).append(q)
        rep.last_end = end
        rep.stepping = True
        heapq.heappush(events, (end, r))

    while True:
        t_arr = float(arrival_s[i]) if i < n else math.inf
        t_step = events[0][0] if events else math.inf
        now = min(t_arr, t_step)
        if now >= duration_s or now == math.inf:
            break
        if now > last_t:
            waiting_area += waiting * (now - last_t)
            last_t = now
        if t_step <= t_arr:
            _, r = heapq.heappop(events)
            start_step(r, now)
        else:
            r = min(range(replicas), key=lambda k: reps[k].load)
            q = _Req(t_arr, max(1, int(prompt_tokens[i])), max(1, int(output_tokens[i])))
            i += 1
            if t_arr >= measure_from_s:
                window.append(q)
            if q.prompt + 1 > cfg.kv_tokens:
                rejected += 1  # longer than the KV cache holds: vLLM refuses it (never a first token)
                continue
            reps[r].waiting.append(q)
            waiting += 1
            if not reps[r].stepping:
                start_step(r, now)
    if duration_s > last_t:
        waiting_area += waiting * (duration_s - last_t)
    # steps past the end are charged in full (the energy of a step that started counts); idle the rest
    energy += cfg.idle_watts * max(0.0, replicas * (duration_s - measure_from_s) - busy)
    keys = np.array(sorted(itl), dtype=float)
    owner = {id(q): rep for rep in reps for q in (*rep.prefilling, *rep.decoding.values())}

    def tokens(q: _Req) -> int:
        return q.done_tokens or (owner[id(q)].generated(q) if id(q) in owner else 0)

    def tpot(q: _Req) -> float:
        g = tokens(q)
        if g <= 1:
            return 0.0
        last = q.last_token if q.done_tokens else owner[id(q)].last_end
        return (last - q.first_token) * 1000.0 / (g - 1)

    return Result(duration_s=duration_s - measure_from_s, replicas=replicas, itl_ms=keys,
                  itl_weight=np.array([itl[k] for k in keys], dtype=float), energy_j=energy,
                  output_tokens=out_tokens, requests=len(window), completed=completed,
                  request_ttft_s=np.array([q.first_token - q.arrival if q.first_token >= 0 else math.nan
                                           for q in window]),
                  request_tpot_ms=np.array([tpot(q) for q in window]),
                  request_waited_s=np.array([duration_s - q.arrival for q in window]),
                  preemptions=preempted, busy_s=busy, rejected=rejected,
                  mean_waiting=waiting_area / max(1e-9, duration_s - measure_from_s))


def default_max_num_batched_tokens(gpu_memory_gib: float, product: str) -> int:
    """vLLM 0.33's default for `vllm serve` (``EngineArgs._set_default_args`` in ``vllm/engine/arg_utils.py``):
    16384 on GPUs of >= 160 GiB, 8192 on >= 70 GiB except the A100 (PR #17885: larger hurt its throughput), 2048
    on the rest."""
    if gpu_memory_gib >= 160:
        return 16384
    if gpu_memory_gib >= 70 and "a100" not in product.lower():
        return 8192
    return 2048


def kv_tokens(gpu_memory_gib: float, gpus: int, utilization: float, weights_gib: float, layers: int,
              kv_heads: int, head_dim: int, kv_bytes: int = 2, activation_gib_per_gpu: float = 1.5) -> int:
    """KV cache tokens of one replica the way vLLM sizes it: utilization x GPU memory, less weights and the
    activation peak of its profiling run, divided by the KV bytes per token (K and V, every layer)."""
    free = gpus * (gpu_memory_gib * utilization - activation_gib_per_gpu) - weights_gib
    per_token = 2 * layers * kv_heads * head_dim * kv_bytes
    return max(0, int(free * 2**30 // per_token))
