"""Simulated (kwok) Node names for tests and benchmarks that add nodes of their own.

A Node name must never be reused while kwok runs. kwok (v0.8.0, and its main branch as of 2026-12) schedules each
node's lease renewal in a heap keyed by node name (``pkg/utils/heap``): ``Push`` of a name already queued leaves
the old entry in the heap while the name's index points at the new one. When a node is deleted and created again
under the same name while a renewal of the old one is in flight, the name is pushed twice; once the stale entry
reaches the top of the heap ``Remove`` cannot take it out, and kwok stops renewing *every* node's lease. About
50 s later the controller-manager marks all nodes NotReady, their pods lose Ready and nothing new is scheduled.
CI hit it on 2026-12-02: the operator-fault tests deleted and re-created the same 50 node names for each test,
and every later e2e test failed (`helm --wait` timed out, pods never Ready).
"""

from __future__ import annotations

import uuid


def fresh_suffix() -> str:
    """Five hex digits to end the names of one batch of nodes (``<prefix>-<i>-<suffix>``)."""
    return uuid.uuid4().hex[:5]
