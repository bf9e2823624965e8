"""Grid carbon intensity: one module per provider behind ``base.CarbonProvider``, and one
``cache.ZoneCache`` per operator (one entry per zone) that the reconciler reads without blocking.

Typical use by the operator::

    settings = load_settings(path)
    cache = ZoneCache.from_settings(settings, listener=on_outcome)   # on_outcome(Outcome) -> Events/metrics
    cache.start()                                                      # background refresher thread
    reading = cache.get(settings.zone_for_region(region))             # IntensityReading | None
    ok, reason, message = cache.status(zone).condition()              # CarbonDataAvailable
"""

from .base import IntensityReading, InvalidReading, ProviderError, Reason, ValidationLimits, validate
from .cache import Outcome, ZoneCache, ZoneChain, ZoneStatus

__all__ = [
    "IntensityReading",
    "InvalidReading",
    "ProviderError",
    "Reason",
    "ValidationLimits",
    "validate",
    "Outcome",
    "ZoneCache",
    "ZoneChain",
    "ZoneStatus",
]
