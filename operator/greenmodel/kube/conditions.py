"""metav1.Condition bookkeeping: lastTransitionTime moves only when the status flips.

Keeping the old timestamp when nothing changed is what makes a recomputed status equal to
the stored one, so an idle pass writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class Cond:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str


def _fmt(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _status_str(status: bool | None) -> str:
    return "Unknown" if status is None else ("True" if status else "False")


def merge_conditions(existing: list[dict] | None, wanted: list[Cond], generation: int | None,
                     now: datetime) -> list[dict]:
    """The conditions list to publish, in ``wanted`` order; untouched types are dropped."""
    old = {c.get("type"): c for c in existing or [] if isinstance(c, dict)}
    out = []
    for w in wanted:
        if not w.reason or not w.reason[0].isupper() or not w.reason.replace("_", "").isalnum():
            raise ValueError(f"condition reason must be CamelCase, got {w.reason!r}")
        status = _status_str(w.status)
        prev = old.get(w.type)
        ltt = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
        cond = {
            "type": w.type,
            "status": status,
            "reason": w.reason,
            "message": " ".join(w.message.split())[:32768],
            "lastTransitionTime": ltt or _fmt(now),
        }
        if generation is not None:
            cond["observedGeneration"] = generation
        out.append(cond)
    return out


def get_condition(conditions: list[dict] | None, type_: str) -> dict | None:
    for c in conditions or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return None
