"""Baseline and oracle building blocks (bench/policies.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenmodel.bench import policies as p


def test_buckets_follow_keda_rule():
    vals = np.arange(1, 301, dtype=float)  # terciles at ~100.67 and ~200.33
    b = p.intensity_buckets(vals, peak_replicas=8)
    assert [x.max_replicas for x in b] == [8, 6, 4]
    assert p.cap_replicas(50, b) == 8
    assert p.cap_replicas(150, b) == 6
    assert p.cap_replicas(10_000, b) == 4
    assert p.cap_replicas(None, b) == 8  # missing data: full capacity
    assert p.cap_replicas(math.nan, b) == 8


def brute(cost, sw):
    h, n = cost.shape
    best, arg = math.inf, None
    for seq in itertools.product(range(n), repeat=h):
        c = sum(cost[i, j] for i, j in enumerate(seq)) + sum(sw[i, seq[i]] for i in range(1, h) if seq[i] != seq[i - 1])
        if c < best:
            best, arg = c, seq
    return best, arg


def total(cost, sw, path):
    return sum(cost[i, j] for i, j in enumerate(path)) + sum(sw[i, path[i]] for i in range(1, len(path)) if path[i] != path[i - 1])


def test_cheapest_path_stays_when_switching_costs_more_than_it_saves():
    cost = np.array([[1.0, 2.0], [2.0, 1.5], [1.0, 2.0]])
    sw = np.full_like(cost, 1.0)
    assert p.cheapest_path(cost, sw).tolist() == [0, 0, 0]
    sw = np.full_like(cost, 0.1)
    assert p.cheapest_path(cost, sw).tolist() == [0, 1, 0]


def test_cheapest_path_infeasible_raises():
    with pytest.raises(ValueError, match="no feasible"):
        p.cheapest_path(np.array([[math.inf, math.inf]]), np.zeros((1, 2)))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5), st.integers(1, 3), st.data())
def test_cheapest_path_matches_brute_force(hours, n, data):
    vals = st.floats(0, 10, allow_nan=False)
    cost = np.array(data.draw(st.lists(st.lists(vals, min_size=n, max_size=n), min_size=hours, max_size=hours)))
    sw = np.array(data.draw(st.lists(st.lists(vals, min_size=n, max_size=n), min_size=hours, max_size=hours)))
    best, _ = brute(cost, sw)
    assert total(cost, sw, p.cheapest_path(cost, sw)) == pytest.approx(best)
