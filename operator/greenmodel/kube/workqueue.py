"""A keyed, delaying, coalescing work queue (the client-go workqueue idea, in asyncio).

- A key is never processed by two workers at once; adding a key that is being processed
  marks it to run again once more after the current pass (no lost wake-ups, no pile-ups).
- Adding a key that is already waiting keeps the earlier due time (coalescing: a burst of
  watch events for one object costs one pass).
- The worker returns how long until it wants to run again (or None), or raises. A raised
  exception with a ``delay`` attribute (``kopf.TemporaryError``) is retried after that delay;
  any other exception after an exponential backoff per key (base x 2^failures, capped).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from typing import Awaitable, Callable, Hashable

logger = logging.getLogger(__name__)

Worker = Callable[[Hashable], Awaitable[float | None]]


class WorkQueue:
    def __init__(self, worker: Worker, *, workers: int = 4, base_backoff: float = 1.0,
                 max_backoff: float = 300.0, min_interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self._worker = worker
        self._workers = max(1, workers)
        self._base = base_backoff
        self._max = max_backoff
        self._clock = clock
        self._min_interval = min_interval
        self._last_start: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, tuple[float, int]] = {}
        self._processing: set[Hashable] = set()
        self._again: dict[Hashable, float] = {}  # added while processing: due time
        self._failures: dict[Hashable, int] = {}
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self.processed_total = 0
        self.failed_total = 0

    def __len__(self) -> int:
        return len(self._due)

    @property
    def busy(self) -> int:
        return len(self._processing)

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        due = self._clock() + max(0.0, delay)
        # At most one pass per key per `min_interval` (a writer fighting us every 100 ms costs
        # one write per second, not ten), and a failing key waits out its backoff.
        last = self._last_start.get(key)
        if last is not None:
            floor = last + self._min_interval
            if self._failures.get(key):
                floor = max(floor, last + self.backoff(key))
            due = max(due, floor)
        if key in self._processing:
            prev = self._again.get(key)
            self._again[key] = due if prev is None else min(prev, due)
            return
        cur = self._due.get(key)
        if cur is not None and cur[0] <= due:
            return
        entry = (due, next(self._seq))
        self._due[key] = entry
        heapq.heappush(self._heap, (entry[0], entry[1], key))
        self._wakeup.set()

    def forget(self, key: Hashable) -> None:
        """Drop a key (object deleted): pending runs are discarded, failures reset."""
        self._due.pop(key, None)
        self._again.pop(key, None)
        self._failures.pop(key, None)
        self._last_start.pop(key, None)

    def backoff(self, key: Hashable) -> float:
        n = self._failures.get(key, 0)
        return min(self._max, self._base * (2 ** max(0, n - 1)))

    async def _next(self) -> Hashable:
        while True:
            timeout = None
            while self._heap:
                due, seq, key = self._heap[0]
                if self._due.get(key) != (due, seq):
                    heapq.heappop(self._heap)
                    continue
                wait = due - self._clock()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    del self._due[key]
                    self._processing.add(key)
                    self._last_start[key] = self._clock()
                    return key
                timeout = wait
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)
            except asyncio.TimeoutError:
                pass

    async def _run_one(self, key: Hashable) -> None:
        requeue: float | None = None
        try:
            requeue = await self._worker(key)
            self._failures.pop(key, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the queue is the last line: log and back off
            self.failed_total += 1
            self._failures[key] = self._failures.get(key, 0) + 1
            delay = getattr(exc, "delay", None)
            requeue = float(delay) if isinstance(delay, (int, float)) and delay > 0 else self.backoff(key)
            logger.warning("reconcile of %s failed (attempt %d), retrying in %.1fs: %s",
                           key, self._failures[key], requeue, exc,
                           exc_info=not hasattr(exc, "delay") and not hasattr(exc, "status"))
        finally:
            self.processed_total += 1
            self._processing.discard(key)
        again = self._again.pop(key, None)
        if again is not None:
            self.add(key, max(0.0, again - self._clock()))
        if requeue is not None:
            self.add(key, requeue)

    async def _loop(self) -> None:
        while True:
            key = await self._next()
            await self._run_one(key)

    async def run(self) -> None:
        """Run the workers until cancelled."""
        tasks = [asyncio.create_task(self._loop(), name=f"greenmodel-worker-{i}") for i in range(self._workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
