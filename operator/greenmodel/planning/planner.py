"""plan(spec, catalog, observed, now) -> Plan (real body lands next; signature is the contract)."""

from __future__ import annotations

from datetime import datetime

from greenmodel.api.v1alpha1 import GreenModelSpec, ModelCatalogSpec
from greenmodel.planning.types import Observed, Plan


def plan(spec: GreenModelSpec, catalog: ModelCatalogSpec, observed: Observed, now: datetime) -> Plan:
    raise NotImplementedError("planner body lands in the next commit")
