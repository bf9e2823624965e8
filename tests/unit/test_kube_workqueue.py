"""The keyed work queue: single flight per key, coalescing, delays, backoff on failure."""

from __future__ import annotations

import asyncio

import pytest

from greenmodel.kube.workqueue import WorkQueue


class Temporary(Exception):
    def __init__(self, delay):
        super().__init__("temp")
        self.delay = delay


async def _run_for(q: WorkQueue, seconds: float) -> None:
    task = asyncio.create_task(q.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_coalesces_and_never_runs_a_key_twice_at_once():
    running, peak, calls = set(), [0], []

    async def work(key):
        assert key not in running
        running.add(key)
        peak[0] = max(peak[0], len(running))
        calls.append(key)
        await asyncio.sleep(0.02)
        running.discard(key)
        return None

    q = WorkQueue(work, workers=4, min_interval=0)
    for _ in range(50):
        q.add("a")
    q.add("b")
    await _run_for(q, 0.1)
    assert calls.count("a") == 1 and calls.count("b") == 1
    assert peak[0] == 2


async def test_added_while_processing_runs_once_more():
    calls = []

    async def work(key):
        calls.append(key)
        if len(calls) == 1:
            q.add(key)
            q.add(key)
        return None

    q = WorkQueue(work, workers=2, min_interval=0)
    q.add("a")
    await _run_for(q, 0.1)
    assert calls == ["a", "a"]


async def test_requeue_after_and_temporary_error_delay():
    times = []
    loop = asyncio.get_running_loop()

    async def work(key):
        times.append(loop.time())
        if len(times) == 1:
            raise Temporary(0.05)
        if len(times) == 2:
            return 0.05
        return None

    q = WorkQueue(work, workers=1, min_interval=0, base_backoff=0.01)
    q.add("k")
    await _run_for(q, 0.3)
    assert len(times) == 3
    assert times[1] - times[0] >= 0.045 and times[2] - times[1] >= 0.045


async def test_exponential_backoff_and_reset_on_success():
    calls = []

    async def work(key):
        calls.append(key)
        raise RuntimeError("boom")

    q = WorkQueue(work, workers=1, base_backoff=0.02, max_backoff=0.04, min_interval=0)
    q.add("k")
    await _run_for(q, 0.2)
    # 0, +0.02, +0.04, +0.04, ... -> about 5 calls in 0.2 s, not hundreds
    assert 3 <= len(calls) <= 7
    assert q.failed_total == len(calls)


async def test_min_interval_limits_event_storms():
    calls = []

    async def work(key):
        calls.append(key)
        return None

    q = WorkQueue(work, workers=1, min_interval=0.1)
    q.add("k")
    task = asyncio.create_task(q.run())
    for _ in range(30):  # an event every 10 ms for 0.3 s
        q.add("k")
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert 2 <= len(calls) <= 4


async def test_forget_drops_pending_work():
    calls = []

    async def work(key):
        calls.append(key)

    q = WorkQueue(work, workers=1, min_interval=0)
    q.add("k", delay=0.05)
    q.forget("k")
    await _run_for(q, 0.1)
    assert calls == []
