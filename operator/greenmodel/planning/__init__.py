"""Pure planning: no I/O, no clock (``now`` is injected), imports only ``greenmodel.api``.

``plan(spec, catalog, observed, now) -> Plan`` is the entry point; see docs/planner.md.
"""

from greenmodel.planning.planner import plan
from greenmodel.planning.types import (
    Candidate,
    CurrentPlacement,
    FailedConstraint,
    Intensity,
    Observed,
    Plan,
    RegionObs,
    Rejection,
    ServingMetrics,
)

__all__ = [
    "plan",
    "Candidate",
    "CurrentPlacement",
    "FailedConstraint",
    "Intensity",
    "Observed",
    "Plan",
    "RegionObs",
    "Rejection",
    "ServingMetrics",
]
