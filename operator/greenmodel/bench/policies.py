"""Pure pieces of the baseline and oracle policies (no planner, no I/O).

* :func:`intensity_buckets` / :func:`cap_replicas`: the Azure carbon-aware KEDA operator's rule.
  Sorted thresholds; the first bucket whose threshold is >= the intensity wins; above every
  threshold the last bucket applies; with no data, full capacity.
* :func:`cheapest_path`: the hindsight oracle's exact minimum over a sequence of hourly choices
  where changing choice costs extra (the overlap of old and new deployments during a switch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Bucket:
    threshold: float  # gCO2e/kWh: applies when intensity <= threshold
    max_replicas: int


def intensity_buckets(values: np.ndarray, peak_replicas: int,
                      quantiles: Sequence[float] = (1 / 3, 2 / 3),
                      fractions: Sequence[float] = (1.0, 0.75, 0.5)) -> list[Bucket]:
    """Buckets in the carbon-aware KEDA operator's shape, from the region's own intensity.

    Default: the cleanest third of hours may use the full peak replica count, the middle third
    75% of it, the dirtiest third 50% (rounded up, at least 1). The KEDA operator's sample uses
    absolute thresholds; deriving them from quantiles makes the rule bite in any region.
    """
    if len(fractions) != len(quantiles) + 1:
        raise ValueError("need one more fraction than quantiles")
    th = [float(np.quantile(values, q)) for q in quantiles] + [math.inf]
    return [Bucket(t, max(1, math.ceil(peak_replicas * f))) for t, f in zip(th, fractions)]


def cap_replicas(intensity: float | None, buckets: Sequence[Bucket]) -> int:
    """Max replicas for this intensity: the first bucket whose threshold is >= it wins."""
    if intensity is None or not math.isfinite(intensity):
        return max(b.max_replicas for b in buckets)  # missing data: full capacity
    for b in buckets:
        if intensity <= b.threshold:
            return b.max_replicas
    return buckets[-1].max_replicas


def cheapest_path(cost: np.ndarray, switch_cost: np.ndarray, initial: int | None = None) -> np.ndarray:
    """Exact minimum-cost sequence of choices (dynamic programming, Viterbi style).

    ``cost[h, j]``: cost of running choice ``j`` during hour ``h`` (``inf`` if infeasible).
    ``switch_cost[h, j]``: extra cost of arriving at ``j`` at hour ``h`` from any other choice
    (the new deployment warming up beside the old one). Switching cost depends only on the
    destination, so each step is O(N): stay (no extra) or come from the best previous choice.
    The first hour carries no switching cost unless ``initial`` is given.
    """
    hours, n = cost.shape
    if switch_cost.shape != cost.shape:
        raise ValueError("cost and switch_cost must have the same shape")
    back = np.zeros((hours, n), dtype=np.int64)
    acc = cost[0].astype(float).copy()
    if initial is not None:
        extra = switch_cost[0].copy()
        extra[initial] = 0.0
        acc = acc + extra
    for h in range(1, hours):
        best = int(np.argmin(acc))
        via_switch = acc[best] + switch_cost[h]
        stay = acc
        take_switch = via_switch < stay
        back[h] = np.where(take_switch, best, np.arange(n))
        acc = np.where(take_switch, via_switch, stay) + cost[h]
    path = np.empty(hours, dtype=np.int64)
    path[-1] = int(np.argmin(acc))
    if not math.isfinite(acc[path[-1]]):
        raise ValueError("no feasible sequence: some hour has no feasible choice")
    for h in range(hours - 1, 0, -1):
        path[h - 1] = back[h, path[h]]
    return path
