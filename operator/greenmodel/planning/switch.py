"""The zero-downtime switch as a pure, level-triggered decision over observed children.

Given the placement the planner wants (D, with replicas) and what exists now, decide what to
apply, where the Service points and what to delete. Nothing here remembers anything: every
pass recomputes the same answer from the same cluster state, so a crash at any point is safe.

The order that keeps at least one Ready pod at every moment:
  1. apply D (old placement L keeps serving, untouched);
  2. only when D is fully Ready, move the Service selector from L to D;
  3. only ``drain_seconds`` after the move (Service annotation ``placement-since``), delete L.
Deployments that are neither live nor desired (an abandoned target) serve nothing and go at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from greenmodel.api.state import ChildState, DeploymentState, Placement


@dataclass
class SwitchActions:
    desired: Placement
    replicas: int
    apply_desired: bool = True
    service_placement: Placement | None = None  # where the Service must point after this pass
    service_since: datetime | None = None
    service_moved: bool = False  # this pass moves (or first creates) the selector
    delete: list[DeploymentState] = field(default_factory=list)  # Deployments to delete (by uid)
    phase: str = "Steady"  # Steady | Deploying | Switching | Draining
    requeue_seconds: float | None = None
    message: str = ""


def plan_switch(desired: Placement, replicas: int, children: ChildState, now: datetime,
           drain_seconds: float = 5.0, poll_seconds: float = 5.0) -> SwitchActions:
    act = SwitchActions(desired=desired, replicas=replicas)
    live = children.service_placement
    live_dep = children.deployments.get(live) if live is not None else None
    desired_dep = children.deployments.get(desired)
    desired_ready = (desired_dep is not None and desired_dep.ready
                     and desired_dep.spec_replicas >= min(replicas, 1))

    if live is None or live_dep is None:
        # Nothing is being served through the Service (first deploy, or the Service or the live
        # Deployment was removed by someone). Serve from the desired placement when it is ready,
        # else from whichever placement has the most Ready pods, else point at the desired one.
        others = [d for p, d in children.deployments.items() if p != desired and d.pods_ready > 0]
        if desired_ready or not others:
            target = desired
        else:
            target = max(others, key=lambda d: (d.pods_ready, d.name)).placement
        act.service_placement = target
        act.service_since = now
        act.service_moved = True
        act.phase = "Deploying" if not desired_ready else "Steady"
        act.delete = [d for p, d in children.deployments.items() if p not in (desired, target)]
        if target != desired or not desired_ready:
            act.requeue_seconds = poll_seconds
        act.message = (f"serving from {target.region}/{target.gpu_product} ({target.variant})"
                       if target != desired else "")
        return act

    since = children.service_since or now
    if live == desired:
        act.service_placement = live
        act.service_since = since
        leftovers = [d for p, d in children.deployments.items() if p != live]
        drained_at = since + timedelta(seconds=drain_seconds)
        if leftovers and now < drained_at:
            act.phase = "Draining"
            act.requeue_seconds = max(0.5, (drained_at - now).total_seconds())
            act.message = f"old placement drains until {drained_at.isoformat()}"
        else:
            act.delete = leftovers
            act.phase = "Steady" if desired_ready else "Deploying"
            if not desired_ready:
                act.requeue_seconds = poll_seconds
        return act

    # live != desired: a switch is in progress.
    abandoned = [d for p, d in children.deployments.items() if p not in (live, desired)]
    act.delete = abandoned
    if desired_ready:
        act.service_placement = desired
        act.service_since = now
        act.service_moved = True
        act.phase = "Draining"
        act.requeue_seconds = drain_seconds
        act.message = (f"moved Service from {live.region}/{live.gpu_product} ({live.variant}) to "
                       f"{desired.region}/{desired.gpu_product} ({desired.variant})")
    else:
        act.service_placement = live
        act.service_since = since
        act.phase = "Switching"
        act.requeue_seconds = poll_seconds
        ready = desired_dep.ready_replicas if desired_dep else 0
        act.message = (f"waiting for {desired.region}/{desired.gpu_product} ({desired.variant}) to be Ready "
                       f"({ready}/{replicas}); {live.region} keeps serving")
    return act
