"""Typed carbon-intensity readings, the provider protocol, and reading validation.

Every reading says what it is: value and unit, the grid zone, which provider, the timestamp
the value is *for* (not when we fetched it), and whether it is measured, estimated or a forecast.
Validation turns a reading into a typed ``Reason`` when it must not be used; the reasons are
CamelCase so the reconciler can put them straight into a condition reason, an Event reason and
a bounded metric label.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, Protocol, Sequence, runtime_checkable

# "static": a configured constant (an annual mean), not an observation of the grid
Kind = Literal["measured", "estimated", "forecast", "static"]
UNIT = "gCO2eq/kWh"


class Reason(str, enum.Enum):
    """Why a reading was not used or a provider call failed (bounded set; CamelCase)."""

    # reading validation
    NOT_A_NUMBER = "NotANumber"
    NEGATIVE = "NegativeValue"
    IMPLAUSIBLY_HIGH = "ImplausiblyHigh"
    WRONG_ZONE = "WrongZone"
    STALE = "StaleReading"
    FROM_THE_FUTURE = "FromTheFuture"
    # provider call failures
    HTTP_ERROR = "ProviderHTTPError"
    RATE_LIMITED = "ProviderRateLimited"
    TIMEOUT = "ProviderTimeout"
    CONNECTION = "ProviderUnreachable"
    MALFORMED = "MalformedResponse"
    UNAUTHORIZED = "ProviderUnauthorized"
    UNSAFE_DESTINATION = "UnsafeDestination"
    REDIRECT_REFUSED = "RedirectRefused"
    TOO_LARGE = "ResponseTooLarge"
    NO_DATA = "NoDataForZone"
    NOT_SUPPORTED = "NotSupported"
    MISCONFIGURED = "ProviderMisconfigured"

    def __str__(self) -> str:  # so f"{reason}" gives the CamelCase value
        return self.value


VALIDATION_REASONS = frozenset(
    {
        Reason.NOT_A_NUMBER,
        Reason.NEGATIVE,
        Reason.IMPLAUSIBLY_HIGH,
        Reason.WRONG_ZONE,
        Reason.STALE,
        Reason.FROM_THE_FUTURE,
    }
)


@dataclass(frozen=True)
class IntensityReading:
    value: float  # grams CO2e per kWh (see unit)
    zone: str  # our zone key (settings region -> zone), e.g. "GB"
    source: str  # provider name from settings, e.g. "electricitymaps"
    timestamp: datetime  # tz-aware UTC: the time the value describes
    kind: Kind
    unit: str = UNIT
    provider_zone: str | None = None  # provider's own name for the area, if different
    fetched_at: datetime | None = None
    detail: str = ""  # e.g. "lifecycle", "co2_moer (marginal)", "regionid 13"

    def age_seconds(self, now: datetime) -> float:
        return (now - self.timestamp).total_seconds()


class ProviderError(Exception):
    """A provider call failed; ``reason`` is a ``Reason``; ``retry_after`` seconds if the server said."""

    def __init__(self, reason: Reason, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"


class InvalidReading(ProviderError):
    """The provider answered, but the reading failed validation."""

    def __init__(self, reason: Reason, message: str, reading: IntensityReading | None = None):
        super().__init__(reason, message)
        self.reading = reading


@runtime_checkable
class CarbonProvider(Protocol):
    """One outside source of grid carbon intensity. Calls are synchronous and may block on I/O:
    the operator calls them only from the ZoneCache's refresher thread (never the event loop)."""

    name: str

    def latest(self, zone: str, provider_zone: str) -> IntensityReading:
        """The most recent reading for ``zone`` (our key); ``provider_zone`` is the provider's name
        for it. Raises ProviderError."""
        ...

    def forecast(self, zone: str, provider_zone: str) -> Sequence[IntensityReading]:
        """Future readings (kind="forecast"), oldest first. Raises ProviderError(NOT_SUPPORTED) if
        the provider has none."""
        ...


@dataclass(frozen=True)
class ValidationLimits:
    max_age_seconds: float = 7200.0
    max_future_skew_seconds: float = 300.0
    max_value: float = 2000.0

    @classmethod
    def from_settings(cls, carbon) -> "ValidationLimits":  # carbon: settings.CarbonSettings
        return cls(
            max_age_seconds=carbon.max_data_age_seconds,
            max_future_skew_seconds=carbon.max_future_skew_seconds,
            max_value=carbon.max_plausible_grams_per_kilowatt_hour,
        )


def check_value(value: float, limits: ValidationLimits) -> tuple[Reason, str] | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or math.isinf(value):
        return Reason.NOT_A_NUMBER, f"value {value!r} is not a finite number"
    if value < 0:
        return Reason.NEGATIVE, f"value {value:g} g/kWh is negative"
    if value > limits.max_value:
        return Reason.IMPLAUSIBLY_HIGH, (
            f"value {value:g} g/kWh is above the plausible maximum {limits.max_value:g} g/kWh"
        )
    return None


def validate(
    reading: IntensityReading,
    *,
    expected_zone: str,
    now: datetime,
    limits: ValidationLimits,
) -> tuple[Reason, str] | None:
    """None if the reading may be used; else (reason, single-line message)."""
    bad = check_value(reading.value, limits)
    if bad:
        return bad
    if reading.zone != expected_zone:
        return Reason.WRONG_ZONE, f"asked for zone {expected_zone} but the answer is for {reading.zone}"
    if reading.timestamp.tzinfo is None:
        return Reason.MALFORMED, "timestamp has no time zone"
    age = reading.age_seconds(now)
    if reading.kind != "forecast":
        if age > limits.max_age_seconds:
            return Reason.STALE, (
                f"reading for {reading.timestamp.isoformat()} is {age:.0f}s old, "
                f"older than maxDataAgeSeconds {limits.max_age_seconds:.0f}"
            )
        if -age > limits.max_future_skew_seconds:
            return Reason.FROM_THE_FUTURE, (
                f"reading for {reading.timestamp.isoformat()} is {-age:.0f}s in the future "
                f"(allowed skew {limits.max_future_skew_seconds:.0f}s)"
            )
    return None


def validate_or_raise(reading: IntensityReading, *, expected_zone: str, now: datetime, limits: ValidationLimits) -> IntensityReading:
    bad = validate(reading, expected_zone=expected_zone, now=now, limits=limits)
    if bad:
        raise InvalidReading(bad[0], bad[1], reading)
    return reading


def parse_timestamp(text: object) -> datetime:
    """Parse the ISO-8601 variants the providers use ("...Z", "...000Z", "+00:00", "2018-01-20T12:00Z")."""
    if not isinstance(text, str) or not text:
        raise ProviderError(Reason.MALFORMED, f"timestamp {text!r} is not a string")
    s = text.strip()
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ProviderError(Reason.MALFORMED, f"cannot parse timestamp {text!r}") from None
    if dt.tzinfo is None:
        raise ProviderError(Reason.MALFORMED, f"timestamp {text!r} has no time zone")
    return dt.astimezone(timezone.utc)


def as_number(value: object, what: str) -> float:
    """Coerce a JSON number; NaN stays NaN (validation rejects it with its own reason)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str) and value.strip().lower() == "nan":
            return float("nan")
        raise ProviderError(Reason.MALFORMED, f"{what} is {value!r}, not a number")
    return float(value)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


__all__ = [
    "UNIT",
    "Kind",
    "Reason",
    "VALIDATION_REASONS",
    "IntensityReading",
    "ProviderError",
    "InvalidReading",
    "CarbonProvider",
    "ValidationLimits",
    "check_value",
    "validate",
    "validate_or_raise",
    "parse_timestamp",
    "as_number",
    "utcnow",
]
