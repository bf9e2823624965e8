"""`static` provider: fixed per-zone intensities from the operator's config.

Used as the last link of a fallback chain and for local runs with no network. Values are annual
means (see examples/operator-config.yaml for where they come from), so every reading is
``kind="static"`` (a configured constant, not an observation of the grid) and stamped with the current
time: an annual mean is as valid now as at any other hour, and it never goes stale. Consumers tell it
apart from live data by that kind: as a chain's fallback link it means "no live reading is left".
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable, Mapping, Sequence

from .base import IntensityReading, ProviderError, Reason, utcnow


class StaticCarbonProvider:
    def __init__(
        self,
        name: str,
        grams_per_kilowatt_hour: Mapping[str, float],
        *,
        note: str = "",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.name = name
        self._values = dict(grams_per_kilowatt_hour)
        self._note = note
        self._clock = clock

    def latest(self, zone: str, provider_zone: str) -> IntensityReading:
        if provider_zone not in self._values:
            raise ProviderError(Reason.NO_DATA, f"no static intensity configured for zone {provider_zone}")
        now = self._clock()
        return IntensityReading(
            value=float(self._values[provider_zone]),
            zone=zone,
            source=self.name,
            timestamp=now,
            kind="static",
            provider_zone=provider_zone,
            fetched_at=now,
            detail=self._note or "static annual mean from operator config",
        )

    def forecast(self, zone: str, provider_zone: str) -> Sequence[IntensityReading]:
        raise ProviderError(Reason.NOT_SUPPORTED, "the static provider has no forecast")
