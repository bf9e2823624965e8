"""Capacity, latency and power model of one replica set (pure maths; see docs/planner.md).

Inputs come from a catalog profile: a table of measured operating points (batch cap B, steady
output tokens/s C, p95 inter-token latency, average replica power), measured with vLLM as in the
ML.ENERGY leaderboard.

* Operating point: the largest batch cap B* whose measured p95 ITL is within the SLO. One replica
  then serves at most C* output tokens/s while keeping the ITL SLO.
* Replicas: the fewest n >= minReplicas with utilisation rho = L / (n C*) <= TARGET_UTILIZATION
  (headroom for bursts) whose predicted p95 TTFT is within the SLO.
* p95 TTFT = prefill + queueing wait + one decode step. Queueing: the n replicas' B* batch slots
  are c = n B* servers of an M/M/c queue (requests arrive Poisson; a request holds a slot for
  avgOutputTokens x ITL; join-shortest-queue routing pools the replicas). The probability of
  waiting uses Sakasegawa's approximation P(wait) ~ rho^(sqrt(2(c+1)) - 1), and the M/M/c wait
  tail P(W > t) = P(wait) exp(-c mu (1 - rho) t) gives the p95 wait in closed form (O(1)).
* Mean occupied batch b per replica (Little's law): b = (L/n) x ITL(b), solved by a few fixed-point
  steps on the measured ITL curve, capped at B*. p95 ITL at load is the measured p95 ITL at b.
* Power per replica: P = idle + (P_meas(b) - idle) u, with P_meas the measured replica power
  interpolated at b and u = min(1, b) the fraction of time the replica has any request in flight.
  Idle power counts: an empty replica still burns g x idle W.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

TARGET_UTILIZATION = 0.85  # keep 15% headroom over the planned load
TTFT_PERCENTILE_TAIL = 0.05  # p95
MAX_EXTRA_REPLICAS_FOR_TTFT = 64


@dataclass(frozen=True, slots=True)
class OperatingTable:
    """A profile's measured points, sorted by batch cap, as plain tuples (fast to scan)."""

    batches: tuple[int, ...]
    tokens_per_second: tuple[float, ...]
    itl_p95_ms: tuple[float, ...]
    power_watts: tuple[float, ...]


def interp(xs: tuple[int, ...] | tuple[float, ...], ys: tuple[float, ...], x: float) -> float:
    """Piecewise-linear interpolation, clamped at both ends."""
    if x <= xs[0]:
        return ys[0]
    i = bisect_left(xs, x)
    if i >= len(xs):
        return ys[-1]
    x0 = xs[i - 1]
    return ys[i - 1] + (x - x0) / (xs[i] - x0) * (ys[i] - ys[i - 1])


def capped(table: OperatingTable, max_batch: int | None) -> OperatingTable:
    """The operating points a replica can run when its KV cache holds at most ``max_batch`` sequences:
    the measured points up to it; if even the smallest is larger, that point cut to ``max_batch``
    (throughput in proportion, same ITL and power: decode at a smaller batch is no slower)."""
    if max_batch is None or max_batch >= table.batches[-1]:
        return table
    n = bisect_left(table.batches, max_batch + 1)
    if n > 0:
        return OperatingTable(table.batches[:n], table.tokens_per_second[:n], table.itl_p95_ms[:n],
                              table.power_watts[:n])
    b = max(1, max_batch)
    return OperatingTable((b,), (table.tokens_per_second[0] * b / table.batches[0],), table.itl_p95_ms[:1],
                          table.power_watts[:1])


def operating_point(table: OperatingTable, itl_slo_ms: float) -> int | None:
    """Index of the largest batch cap whose p95 ITL meets the SLO (None if even the smallest fails)."""
    best = None
    for i, itl in enumerate(table.itl_p95_ms):
        if itl <= itl_slo_ms:
            if best is None or table.tokens_per_second[i] > table.tokens_per_second[best]:
                best = i
    return best


def ttft_p95_ms(load_tps: float, n: int, cap_tps: float, batch: int, avg_out: float,
                prefill_ms: float, step_ms: float) -> float:
    """p95 time to first token of n replicas (see module docstring). inf when overloaded."""
    if load_tps <= 0:
        return prefill_ms + step_ms
    total = n * cap_tps
    rho = load_tps / total
    if rho >= 1.0:
        return math.inf
    c = n * batch
    p_wait = rho ** (math.sqrt(2.0 * (c + 1)) - 1.0)
    wait_ms = 0.0
    if p_wait > TTFT_PERCENTILE_TAIL:
        drain_rate = total * (1.0 - rho) / avg_out  # c mu (1 - rho), requests per second
        wait_ms = 1000.0 * math.log(p_wait / TTFT_PERCENTILE_TAIL) / drain_rate
    return prefill_ms + wait_ms + step_ms


def occupied_batch(table: OperatingTable, idx: int, load_per_replica_tps: float) -> float:
    """Mean sequences in flight on one replica: b = load x ITL(b) (Little's law), capped at B*."""
    if load_per_replica_tps <= 0:
        return 0.0
    cap_b = table.batches[idx]
    itls = table.itl_p95_ms
    b = load_per_replica_tps * itls[0] / 1000.0
    for _ in range(4):
        if b >= cap_b:
            return float(cap_b)
        nb = load_per_replica_tps * interp(table.batches, itls, b) / 1000.0
        if abs(nb - b) <= 0.01 * b:
            return min(nb, float(cap_b))
        b = nb
    return min(b, float(cap_b))


def replica_power_watts(table: OperatingTable, b: float, idle_watts_replica: float) -> float:
    if b <= 0:
        return idle_watts_replica
    measured = interp(table.batches, table.power_watts, b)
    u = b if b < 1.0 else 1.0
    busy = measured if measured > idle_watts_replica else idle_watts_replica
    return idle_watts_replica + (busy - idle_watts_replica) * u


@dataclass(frozen=True, slots=True)
class Sizing:
    replicas: int  # replicas planned (clamped to maxReplicas)
    needed: int  # replicas the SLO needs (may exceed maxReplicas; 0 if unreachable)
    batch_idx: int
    capacity_tps: float  # all planned replicas
    utilization: float
    ttft_p95_ms: float
    itl_p95_ms: float
    power_watts: float  # all planned replicas
    slo_met: bool
    why: str  # which SLO drove the replica count, in words


def size(table: OperatingTable, idx: int, load_tps: float, avg_out: float, prefill_ms: float,
         ttft_slo_ms: float, min_replicas: int, max_replicas: int, idle_watts_replica: float) -> Sizing:
    """Fewest replicas meeting utilisation headroom and the TTFT SLO; clamped to the bounds."""
    cap = table.tokens_per_second[idx]
    batch = table.batches[idx]
    n_util = math.ceil(load_tps / (cap * TARGET_UTILIZATION)) if load_tps > 0 else 0
    n = max(min_replicas, n_util, 1)
    why = (f"to keep utilisation <= {TARGET_UTILIZATION:.0%} at {load_tps:.0f} tok/s "
           f"({cap:.0f} tok/s per replica at batch {batch})")

    itls = table.itl_p95_ms

    def occ(nn: int) -> tuple[float, float]:  # (occupied batch, p95 ITL) at nn replicas
        b_ = occupied_batch(table, idx, load_tps / nn)
        return b_, interp(table.batches, itls, b_ if b_ > 1.0 else 1.0)

    b, itl = occ(n)
    ttft = ttft_p95_ms(load_tps, n, cap, batch, avg_out, prefill_ms, itl)
    extra = 0
    while ttft > ttft_slo_ms and extra < MAX_EXTRA_REPLICAS_FOR_TTFT:
        n += 1
        extra += 1
        b, itl = occ(n)
        ttft = ttft_p95_ms(load_tps, n, cap, batch, avg_out, prefill_ms, itl)
        why = f"to keep p95 TTFT <= {ttft_slo_ms:.0f} ms at {load_tps:.0f} tok/s"
    needed = n if ttft <= ttft_slo_ms else 0
    planned = min(n, max_replicas)
    if planned != n:
        b, itl = occ(planned)
        ttft = ttft_p95_ms(load_tps, planned, cap, batch, avg_out, prefill_ms, itl)
    rho = load_tps / (planned * cap)
    power = planned * replica_power_watts(table, b, idle_watts_replica)
    slo_met = needed != 0 and needed <= max_replicas and rho <= 1.0
    return Sizing(planned, needed, idx, planned * cap, rho, ttft, itl, power, slo_met, why)
