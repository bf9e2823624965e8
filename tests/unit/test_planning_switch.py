"""The zero-downtime switch decision: a table of observed states and the one safe next step."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from greenmodel.api.state import ChildState, DeploymentState, Placement
from greenmodel.planning.switch import plan_switch as decide

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
L = Placement("v", "europe-west3", "NVIDIA-L4")
D = Placement("v", "europe-west9", "NVIDIA-L4")
X = Placement("w", "europe-west2", "NVIDIA-H100-80GB-HBM3")


def dep(p, replicas=2, ready=2, pods_ready=None):
    return DeploymentState(name="d-" + p.region, namespace="ns", uid="u", placement=p, spec_replicas=replicas,
                           ready_replicas=ready, updated_replicas=replicas, rolled_out=True,
                           pods_ready=ready if pods_ready is None else pods_ready)


def state(*deps, live=None, since=NOW - timedelta(hours=1)):
    return ChildState(deployments={d.placement: d for d in deps}, service_exists=bool(live),
                      service_placement=live, service_since=since if live else None)


def test_first_deploy_points_the_service_at_the_desired_placement():
    a = decide(D, 2, state(), NOW)
    assert a.service_placement == D and a.service_moved and a.phase == "Deploying" and a.delete == []


def test_switch_keeps_old_until_new_is_ready():
    a = decide(D, 2, state(dep(L), dep(D, ready=1), live=L), NOW)
    assert a.service_placement == L and not a.service_moved and a.phase == "Switching"
    assert a.delete == [] and a.requeue_seconds


def test_switch_moves_service_when_new_is_ready_but_does_not_delete_old_yet():
    a = decide(D, 2, state(dep(L), dep(D), live=L), NOW)
    assert a.service_placement == D and a.service_moved and a.service_since == NOW
    assert a.delete == []


def test_old_placement_is_deleted_only_after_draining():
    s = state(dep(L), dep(D), live=D, since=NOW - timedelta(seconds=2))
    a = decide(D, 2, s, NOW, drain_seconds=5)
    assert a.delete == [] and a.phase == "Draining" and 2.9 <= a.requeue_seconds <= 3.1
    s = state(dep(L), dep(D), live=D, since=NOW - timedelta(seconds=6))
    a = decide(D, 2, s, NOW, drain_seconds=5)
    assert [d.placement for d in a.delete] == [L] and a.phase == "Steady"


def test_abandoned_target_goes_at_once_and_live_stays():
    a = decide(X, 1, state(dep(L), dep(D, ready=0), live=L), NOW)
    assert [d.placement for d in a.delete] == [D] and a.service_placement == L


def test_service_lost_is_restored_to_a_ready_placement_not_an_unready_one():
    a = decide(D, 2, state(dep(L), dep(D, ready=0, pods_ready=0)), NOW)
    assert a.service_placement == L and a.service_moved
    assert a.delete == []


def test_never_zero_ready_pods_through_a_whole_switch():
    """Walk the state machine pass by pass, simulating pods; Ready pods never reach zero."""
    deps = {L: dep(L)}
    live, since, t = L, NOW - timedelta(hours=1), NOW
    for step in range(12):
        s = ChildState(deployments=dict(deps), service_exists=True, service_placement=live, service_since=since)
        assert sum(d.pods_ready for d in deps.values()) > 0, f"zero ready pods at step {step}"
        a = decide(D, 2, s, t, drain_seconds=5)
        if a.apply_desired and a.desired not in deps:
            deps[a.desired] = dep(a.desired, ready=0, pods_ready=0)
        elif a.desired in deps and deps[a.desired].ready_replicas < 2:  # pods come up one per pass
            r = deps[a.desired].ready_replicas + 1
            deps[a.desired] = dep(a.desired, ready=r, pods_ready=r)
        for d in a.delete:
            deps.pop(d.placement)
        live, since = a.service_placement, a.service_since
        t += timedelta(seconds=3)
    assert set(deps) == {D} and live == D
