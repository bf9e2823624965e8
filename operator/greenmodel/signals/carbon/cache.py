"""One cache per grid zone, refreshed on its own schedule by one background thread.

Why: 200 GreenModels in 4 regions must cost each provider at most one call per zone per refresh
interval. Readers never call a provider: ``ZoneCache.get(zone)`` is a lock-protected dict read
(microseconds) that the async reconciler may call directly. All blocking I/O happens in the
refresher thread (``start()``), or in ``refresh_if_due(zone)`` which callers run through
``asyncio.to_thread``; both obey the same per-zone schedule, and concurrent refreshes of one zone
coalesce into one.

Schedule per zone and provider (all times from the injected clock):
- after a good reading: next refresh one ``refreshIntervalSeconds`` later;
- after failure number n of a provider: that provider is not called again for
  ``min(maxBackoffSeconds, interval * 2**(n-1)) * (1 + U[0, 0.2))`` (exponential backoff with
  jitter that only lengthens, so the once-per-interval bound holds), or for ``Retry-After``
  seconds from a 429 if that is longer;
- the chain is walked in order; a provider still in backoff is skipped; a still-valid reading
  from a better-ranked provider is kept in preference to calling a worse-ranked one (an hour-old
  live value beats an annual mean).

A reading is served while its age is at most ``maxDataAgeSeconds``; after that ``get`` returns
None ("unknown", never zero), and ``status(zone)`` says why.
"""

from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable, Literal, Mapping, Sequence

from .base import (
    CarbonProvider,
    InvalidReading,
    IntensityReading,
    ProviderError,
    Reason,
    ValidationLimits,
    check_value,
    utcnow,
    validate,
)
from .registry import build_providers

log = logging.getLogger(__name__)

JITTER_FRACTION = 0.2

OutcomeKind = Literal["ok", "rejected", "failed"]


@dataclass(frozen=True)
class Outcome:
    """One provider call for one zone (what the reconciler turns into Events and metrics)."""

    zone: str
    provider: str
    kind: OutcomeKind
    reason: Reason | None
    message: str
    at: datetime
    call: Literal["latest", "forecast"] = "latest"
    retry_after: float | None = None


@dataclass
class _ProviderState:
    failures: int = 0
    not_before: datetime | None = None
    last: Outcome | None = None


@dataclass(frozen=True)
class ZoneChain:
    zone: str
    # (provider name, provider's own zone name) in fallback order
    links: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ZoneStatus:
    zone: str
    reading: IntensityReading | None  # latest accepted reading (may be expired, see usable)
    usable: bool
    primary: str
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_problem: Outcome | None  # most recent failed or rejected call (any provider)
    primary_failures: int
    next_refresh_at: datetime | None
    forecast_points: int
    # latest accepted reading that observed the grid (not a static annual mean; may be expired): what a
    # consumer holds once the chain is down to its static link
    live_reading: IntensityReading | None = None

    @property
    def using_fallback(self) -> bool:
        return self.reading is not None and self.usable and self.reading.source != self.primary

    @property
    def static_only(self) -> bool:
        """The usable reading is a configured constant, not live data."""
        return self.reading is not None and self.usable and self.reading.kind == "static"

    def condition(self) -> tuple[bool, str, str]:
        """(status, Reason, single-line message) for a ``CarbonDataAvailable`` condition."""
        problem = ""
        if self.last_problem is not None:
            lp = self.last_problem
            problem = f"; last problem: {lp.provider} {lp.reason.value if lp.reason else ''}: {lp.message}"
        if self.usable and self.reading is not None:
            r = self.reading
            what = (
                f"{r.value:.0f} {r.unit} for zone {r.zone} from {r.source} ({r.kind}) "
                f"at {r.timestamp.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            )
            if self.static_only and self.using_fallback:
                # Only the annual mean is left: decisions no longer follow the grid, so not "available".
                return False, "StaticFallback", f"{what}; no live reading: primary provider {self.primary} unavailable{problem}"
            if self.static_only:
                return True, "StaticConfigured", f"{what}: the operator config names a static intensity for this zone"
            if self.using_fallback:
                return True, "FallbackProvider", f"{what}; primary provider {self.primary} unavailable{problem}"
            return True, "Live", what
        if self.last_problem is not None and self.last_problem.reason is not None:
            return False, self.last_problem.reason.value, f"no valid reading for zone {self.zone}{problem}"
        return False, "NoData", f"no reading for zone {self.zone} yet"


@dataclass
class _ZoneState:
    chain: ZoneChain
    reading: IntensityReading | None = None
    live_reading: IntensityReading | None = None  # latest accepted reading of kind other than "static"
    forecast: tuple[IntensityReading, ...] = ()
    providers: dict[str, _ProviderState] = field(default_factory=dict)
    next_refresh_at: datetime | None = None  # None: due now
    next_forecast_at: datetime | None = None
    last_success_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_problem: Outcome | None = None
    refresh_lock: threading.Lock = field(default_factory=threading.Lock)
    generation: int = 0


class ZoneCache:
    def __init__(
        self,
        chains: Mapping[str, ZoneChain],
        providers: Mapping[str, CarbonProvider],
        *,
        refresh_interval_seconds: float = 300,
        forecast_refresh_interval_seconds: float = 3600,
        max_backoff_seconds: float = 3600,
        limits: ValidationLimits = ValidationLimits(),
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        listener: Callable[[Outcome], None] | None = None,
        max_workers: int = 4,
    ) -> None:
        for chain in chains.values():
            for name, _ in chain.links:
                if name not in providers:
                    raise ValueError(f"zone {chain.zone}: provider {name!r} is not configured")
        self._providers = dict(providers)
        self._zones = {z: _ZoneState(chain=c) for z, c in chains.items()}
        self.refresh_interval = timedelta(seconds=refresh_interval_seconds)
        self.forecast_interval = timedelta(seconds=forecast_refresh_interval_seconds)
        self.max_backoff = max_backoff_seconds
        self.limits = limits
        self._clock = clock
        self._rng = rng or random.Random()
        self._listener = listener
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._thread: threading.Thread | None = None
        self._max_workers = max(1, min(max_workers, len(chains) or 1))
        # counters for tests and for observability: (zone, provider, call, kind, reason) -> n
        self.counters: dict[tuple[str, str, str, str, str], int] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_settings(cls, settings, providers: Mapping[str, CarbonProvider] | None = None, *, secret_reader=None, **kw) -> "ZoneCache":
        """Build one chain per zone from ``settings.carbon.regions``; providers default to
        ``build_providers(settings)``."""
        c = settings.carbon
        chains: dict[str, ZoneChain] = {}
        for rs in c.regions.values():
            if rs.zone in chains:
                continue
            links = tuple((name, rs.provider_zones.get(name, rs.zone)) for name in rs.providers)
            chains[rs.zone] = ZoneChain(zone=rs.zone, links=links)
        if providers is None:
            providers = build_providers(settings, clock=kw.get("clock", utcnow), secret_reader=secret_reader)
        kw.setdefault("refresh_interval_seconds", c.refresh_interval_seconds)
        kw.setdefault("forecast_refresh_interval_seconds", c.forecast_refresh_interval_seconds)
        kw.setdefault("max_backoff_seconds", c.max_backoff_seconds)
        kw.setdefault("limits", ValidationLimits.from_settings(c))
        return cls(chains, providers, **kw)

    # ------------------------------------------------------------------ readers (non-blocking)
    def zones(self) -> list[str]:
        return list(self._zones)

    def get(self, zone: str) -> IntensityReading | None:
        """Latest valid reading for the zone, or None if unknown/expired. Never blocks on I/O."""
        now = self._clock()
        with self._lock:
            st = self._zones.get(zone)
            r = st.reading if st else None
        if r is None or r.age_seconds(now) > self.limits.max_age_seconds:
            return None
        return r

    def forecast(self, zone: str) -> list[IntensityReading]:
        """Validated forecast points for the zone whose time is not yet past, oldest first."""
        now = self._clock()
        with self._lock:
            st = self._zones.get(zone)
            pts = st.forecast if st else ()
        step = timedelta(hours=1)
        return [p for p in pts if p.timestamp + step > now]

    def status(self, zone: str) -> ZoneStatus:
        now = self._clock()
        with self._lock:
            st = self._zones[zone]
            primary = st.chain.links[0][0]
            r = st.reading
            return ZoneStatus(
                zone=zone,
                reading=r,
                usable=r is not None and r.age_seconds(now) <= self.limits.max_age_seconds,
                primary=primary,
                last_success_at=st.last_success_at,
                last_attempt_at=st.last_attempt_at,
                last_problem=st.last_problem,
                primary_failures=st.providers.get(primary, _ProviderState()).failures,
                next_refresh_at=st.next_refresh_at,
                forecast_points=len(st.forecast),
                live_reading=st.live_reading,
            )

    # ------------------------------------------------------------------ refreshing (blocking)
    def due(self, now: datetime | None = None) -> list[str]:
        now = now or self._clock()
        with self._lock:
            return [
                z
                for z, st in self._zones.items()
                if st.next_refresh_at is None
                or st.next_refresh_at <= now
                or st.next_forecast_at is None
                or st.next_forecast_at <= now
            ]

    def refresh_due(self) -> list[str]:
        """Refresh every zone that is due (zones in parallel, at most max_workers threads)."""
        zones = self.due()
        if len(zones) <= 1 or self._max_workers == 1:
            for z in zones:
                self.refresh_if_due(z)
        else:
            with ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="carbon-refresh") as ex:
                list(ex.map(self.refresh_if_due, zones))
        return zones

    def refresh_if_due(self, zone: str) -> IntensityReading | None:
        """Refresh the zone if its schedule says so, then return ``get(zone)``.

        Blocking: call from a thread. Concurrent callers for the same zone coalesce: one does the
        calls, the others wait for it and read its result.
        """
        st = self._zones[zone]
        with self._lock:
            gen = st.generation
        with st.refresh_lock:
            with self._lock:
                refreshed_meanwhile = st.generation != gen
            if refreshed_meanwhile:  # someone refreshed while we waited: read their result
                return self.get(zone)
            now = self._clock()
            if st.next_refresh_at is None or st.next_refresh_at <= now:
                self._refresh_latest(st, now)
            now = self._clock()
            if st.next_forecast_at is None or st.next_forecast_at <= now:
                self._refresh_forecast(st, now)
            with self._lock:
                st.generation += 1
        return self.get(zone)

    def _backoff_seconds(self, failures: int) -> float:
        base = self.refresh_interval.total_seconds() * (2 ** max(0, failures - 1))
        return min(self.max_backoff, base) * (1.0 + JITTER_FRACTION * self._rng.random())

    def _record(self, st: _ZoneState, name: str, outcome: Outcome) -> None:
        ps = st.providers.setdefault(name, _ProviderState())
        ps.last = outcome
        if outcome.kind == "ok":
            ps.failures = 0
            ps.not_before = None
        else:
            ps.failures += 1
            delay = self._backoff_seconds(ps.failures)
            if outcome.retry_after is not None:
                delay = max(delay, outcome.retry_after)
            ps.not_before = outcome.at + timedelta(seconds=delay)
            st.last_problem = outcome
        key = (outcome.zone, outcome.provider, outcome.call, outcome.kind, outcome.reason.value if outcome.reason else "")
        self.counters[key] = self.counters.get(key, 0) + 1

    def _emit(self, outcomes: Sequence[Outcome]) -> None:
        if self._listener is None:
            return
        for o in outcomes:
            try:
                self._listener(o)
            except Exception:  # a broken listener must not stop refreshing
                log.exception("carbon outcome listener failed")

    def _in_backoff(self, st: _ZoneState, name: str, now: datetime) -> bool:
        ps = st.providers.get(name)
        return ps is not None and ps.not_before is not None and ps.not_before > now

    def _call_latest(self, st: _ZoneState, name: str, pzone: str, now: datetime) -> tuple[IntensityReading | None, Outcome]:
        zone = st.chain.zone
        try:
            reading = self._providers[name].latest(zone, pzone)
        except InvalidReading as exc:
            return None, Outcome(zone, name, "rejected", exc.reason, exc.message, now)
        except ProviderError as exc:
            return None, Outcome(zone, name, "failed", exc.reason, exc.message, now, retry_after=exc.retry_after)
        except Exception as exc:  # a provider bug is a failure of that provider, not of the operator
            log.exception("carbon provider %s raised unexpectedly", name)
            return None, Outcome(zone, name, "failed", Reason.MALFORMED, f"{type(exc).__name__}: {exc}", now)
        now = self._clock()
        bad = validate(reading, expected_zone=zone, now=now, limits=self.limits)
        if bad:
            return None, Outcome(zone, name, "rejected", bad[0], bad[1], now)
        if reading.fetched_at is None:
            reading = replace(reading, fetched_at=now)
        return reading, Outcome(
            zone, name, "ok", None, f"{reading.value:g} {reading.unit} ({reading.kind})", now
        )

    def _refresh_latest(self, st: _ZoneState, now: datetime) -> None:
        outcomes: list[Outcome] = []
        ranks = {name: i for i, (name, _) in enumerate(st.chain.links)}
        with self._lock:
            current = st.reading
        if current is not None and current.age_seconds(now) > self.limits.max_age_seconds:
            current = None
        current_rank = ranks.get(current.source, len(ranks)) if current else len(ranks)
        new: IntensityReading | None = None
        for rank, (name, pzone) in enumerate(st.chain.links):
            if current is not None and current_rank < rank:
                break  # keep a still-valid reading from a better-ranked provider
            if self._in_backoff(st, name, now):
                continue
            reading, outcome = self._call_latest(st, name, pzone, now)
            outcomes.append(outcome)
            with self._lock:
                self._record(st, name, outcome)
            if reading is not None:
                new = reading
                break
        with self._lock:
            st.last_attempt_at = now
            if new is not None:
                st.reading = new
                if new.kind != "static":
                    st.live_reading = new
                st.last_success_at = now
            # next refresh: one interval on, or later if every better-ranked provider is backing off
            nxt = now + self.refresh_interval
            src = (new or current).source if (new or current) else None
            better = [n for n, _ in st.chain.links[: ranks.get(src, len(ranks)) if src else len(ranks)]]
            waits = [st.providers[n].not_before for n in better if n in st.providers and st.providers[n].not_before]
            if better and len(waits) == len(better):
                nxt = max(nxt, min(waits))  # type: ignore[type-var]
            st.next_refresh_at = nxt
        self._emit(outcomes)

    def _refresh_forecast(self, st: _ZoneState, now: datetime) -> None:
        outcomes: list[Outcome] = []
        zone = st.chain.zone
        got: tuple[IntensityReading, ...] | None = None
        for name, pzone in st.chain.links:
            if self._in_backoff(st, name, now):
                continue
            try:
                pts = list(self._providers[name].forecast(zone, pzone))
            except ProviderError as exc:
                if exc.reason is Reason.NOT_SUPPORTED:
                    continue
                o = Outcome(zone, name, "failed", exc.reason, exc.message, now, "forecast", exc.retry_after)
                outcomes.append(o)
                with self._lock:
                    self._record(st, name, o)
                continue
            except Exception as exc:
                log.exception("carbon provider %s forecast raised unexpectedly", name)
                o = Outcome(zone, name, "failed", Reason.MALFORMED, f"{type(exc).__name__}: {exc}", now, "forecast")
                outcomes.append(o)
                with self._lock:
                    self._record(st, name, o)
                continue
            good: list[IntensityReading] = []
            rejected: tuple[Reason, str] | None = None
            for p in pts:
                bad = check_value(p.value, self.limits)
                if bad is None and p.zone != zone:
                    bad = (Reason.WRONG_ZONE, f"forecast point for zone {p.zone}, asked for {zone}")
                if bad is None:
                    good.append(replace(p, kind="forecast"))
                elif rejected is None:
                    rejected = bad
            if rejected is not None and not good:
                o = Outcome(zone, name, "rejected", rejected[0], rejected[1], now, "forecast")
                outcomes.append(o)
                with self._lock:
                    self._record(st, name, o)
                continue
            o = Outcome(zone, name, "ok", None, f"{len(good)} forecast points", now, "forecast")
            outcomes.append(o)
            with self._lock:
                self._record(st, name, o)
            got = tuple(sorted(good, key=lambda r: r.timestamp))
            break
        with self._lock:
            if got is not None:
                st.forecast = got
            st.next_forecast_at = now + self.forecast_interval
        self._emit(outcomes)

    # ------------------------------------------------------------------ background thread
    def start(self) -> None:
        """Start the refresher thread (idempotent). Daemon: it never keeps the process alive."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="carbon-zone-cache", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _seconds_to_next(self) -> float:
        now = self._clock()
        with self._lock:
            times = [t for st in self._zones.values() for t in (st.next_refresh_at, st.next_forecast_at)]
        if any(t is None for t in times):
            return 0.0
        nxt = min(times) if times else now + self.refresh_interval  # type: ignore[type-var]
        return max(0.0, (nxt - now).total_seconds())  # type: ignore[operator]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_due()
            except Exception:  # keep the thread alive whatever happens
                log.exception("carbon refresh loop failed")
            # wake at least once a second so stop() is prompt and clock jumps are noticed
            self._sleep(min(1.0, max(0.05, self._seconds_to_next())))
