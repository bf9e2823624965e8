"""The pass's thin I/O against an in-memory fake of the API: no write when nothing changed."""

from __future__ import annotations

import copy
import itertools
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from greenmodel import handlers
from greenmodel.api.state import ChildState, DeploymentState, Placement, ServingSpec
from greenmodel.kube import builders, names
from greenmodel.kube import client as kc
from greenmodel.kube.builders import OwnerRef
from greenmodel.kube.cache import ObjectCache
from greenmodel.kube.client import ApiError
from greenmodel.planning.decide import capacity_exclusions
from greenmodel.reconcile import apply as rapply


class FakeKube:
    """Stores objects; apply merges our intent the way SSA would for these tests; counts calls."""

    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.calls: list[tuple[str, str]] = []
        self._rv = itertools.count(1)

    def _key(self, kind, ns, name):
        return (kind.plural, ns or "", name)

    def get(self, kind, name, namespace=None):
        self.calls.append(("GET", kind.plural))
        obj = self.objects.get(self._key(kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    def apply(self, kind, obj, **_):
        self.calls.append(("APPLY", kind.plural))
        meta = obj["metadata"]
        key = self._key(kind, meta.get("namespace"), meta["name"])
        live = copy.deepcopy(obj)
        live.pop("apiVersion"), live.pop("kind")
        old = self.objects.get(key)
        live["metadata"]["uid"] = old["metadata"]["uid"] if old else f"uid-{meta['name']}"
        live["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = live
        return copy.deepcopy(live)

    def delete(self, kind, name, namespace=None, uid=None, **_):
        self.calls.append(("DELETE", kind.plural))
        key = self._key(kind, namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            return False
        if uid and obj["metadata"]["uid"] != uid:
            raise ApiError(409, "Conflict", "uid precondition failed", "DELETE", name)
        del self.objects[key]
        return True

    def patch_status(self, kind, name, namespace, status, **_):
        self.calls.append(("PATCH_STATUS", kind.plural))
        key = self._key(kind, namespace, name)
        obj = self.objects[key]
        st = obj.setdefault("status", {})
        for k, v in status.items():
            if v is None:
                st.pop(k, None)
            else:
                st[k] = v
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(obj)

    def writes(self):
        return [c for c in self.calls if c[0] not in ("GET", "LIST")]


def runtime(fake):
    return SimpleNamespace(client=fake, deployments=ObjectCache("d"), services=ObjectCache("s"),
                           pdbs=ObjectCache("p"), greenmodels=ObjectCache("g"), capacity_exclusions={},
                           capacity_exclusion_seconds=300.0)


OWNER = OwnerRef("chat", "ns", "gm-uid")
P = Placement("v", "europe-west9", "NVIDIA-L4")


def test_apply_child_writes_once_then_nothing():
    fake = FakeKube()
    rt = runtime(fake)
    dep = builders.build_deployment(OWNER, P, 2, ServingSpec(image="i", args=("--x",), gpus_per_replica=1))
    assert rapply.apply_child(rt, dep)
    assert not rapply.apply_child(rt, dep)
    assert not rapply.apply_child(rt, copy.deepcopy(dep))
    changed = builders.build_deployment(OWNER, P, 3, ServingSpec(image="i", args=("--x",), gpus_per_replica=1))
    assert rapply.apply_child(rt, changed)
    assert [c[0] for c in fake.writes()] == ["APPLY", "APPLY"]


def test_drift_in_the_cache_is_restored():
    fake = FakeKube()
    rt = runtime(fake)
    dep = builders.build_deployment(OWNER, P, 2, ServingSpec(image="i", args=(), gpus_per_replica=1))
    rapply.apply_child(rt, dep)
    live = rt.deployments.get("ns", dep["metadata"]["name"])
    edited = copy.deepcopy(live)
    edited["spec"]["replicas"] = 7
    edited["metadata"]["resourceVersion"] = "999"
    rt.deployments.upsert(edited)  # a watch event of someone's hand edit
    assert rapply.apply_child(rt, dep)


def test_verify_live_reads_before_moving_the_service():
    fake = FakeKube()
    rt = runtime(fake)
    from datetime import datetime, timezone
    svc = builders.build_service(OWNER, P, datetime(2026, 1, 1, tzinfo=timezone.utc))
    fake.apply(kc.SERVICES, svc)  # exists in the API but not in our cache
    assert not rapply.apply_child(rt, svc, verify_live=True)
    assert ("GET", "services") in fake.calls


def test_status_written_only_when_changed():
    fake = FakeKube()
    rt = runtime(fake)
    body = {"metadata": {"name": "chat", "namespace": "ns", "uid": "u", "resourceVersion": "1"}, "status": {}}
    fake.objects[("greenmodels", "ns", "chat")] = copy.deepcopy(body)
    st = {"observedGeneration": 1, "replicas": 2, "region": None}
    assert rapply.write_status(rt, body, st)
    body2 = rt.greenmodels.get("ns", "chat")
    assert not rapply.write_status(rt, body2, st)
    assert len(fake.writes()) == 1


def test_conditional_delete_uses_uid():
    fake = FakeKube()
    rt = runtime(fake)
    dep = builders.build_deployment(OWNER, P, 1, ServingSpec(image="i", args=(), gpus_per_replica=1))
    rapply.apply_child(rt, dep)
    meta = rt.deployments.get("ns", dep["metadata"]["name"])["metadata"]
    with pytest.raises(ApiError):  # a newer object under the same name is never deleted
        rapply.delete_child(rt, "Deployment", meta["name"], "ns", "another-uid")
    assert rapply.delete_child(rt, "Deployment", meta["name"], "ns", meta["uid"])
    assert rt.deployments.get("ns", dep["metadata"]["name"]) is None


def test_capacity_exclusions_expire():
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    d = DeploymentState(name="d", namespace="ns", uid="u", placement=P, spec_replicas=2, ready_replicas=0,
                        updated_replicas=2, rolled_out=False, pods_unschedulable=2,
                        unschedulable_message="Insufficient nvidia.com/gpu")
    ex = capacity_exclusions({}, ChildState(deployments={P: d}), t0, 300.0)
    assert ("europe-west9", "NVIDIA-L4") in ex and "Insufficient" in ex[("europe-west9", "NVIDIA-L4")][1]
    assert capacity_exclusions(ex, ChildState(), t0 + timedelta(seconds=100), 300.0) == ex
    assert capacity_exclusions(ex, ChildState(), t0 + timedelta(seconds=301), 300.0) == {}


def test_same_inputs_ignores_status_only_changes():
    a = {"metadata": {"generation": 1, "uid": "u", "resourceVersion": "1"}, "spec": {"x": 1}}
    b = copy.deepcopy(a)
    b["status"] = {"replicas": 2}
    b["metadata"]["resourceVersion"] = "2"
    assert handlers._same_inputs(a, b)
    b["spec"]["x"] = 2
    b["metadata"]["generation"] = 2
    assert not handlers._same_inputs(a, b)


def test_owner_key_from_owner_reference_and_from_pod_label():
    rt = SimpleNamespace(greenmodels=ObjectCache("g"))
    rt.greenmodels.upsert({"metadata": {"name": "chat", "namespace": "ns"}})
    dep = builders.build_deployment(OWNER, P, 1, ServingSpec(image="i", args=(), gpus_per_replica=1))
    assert handlers.Runtime.owner_key(rt, dep) == ("ns", "chat")
    pod = {"metadata": {"namespace": "ns", "labels": names.child_labels("chat", P)}}
    assert handlers.Runtime.owner_key(rt, pod) == ("ns", "chat")


def test_kopf_retries_api_errors_forever_so_watches_survive_a_long_api_server_outage():
    # A finite backoff list makes kopf give a watch stream up for good once it is exhausted (about 38 s with
    # the old [1, 2, 5, 10, 20]); the settings must never run out and never wait more than 5 s.
    import collections.abc
    import itertools

    from greenmodel import handlers

    backoffs = handlers.kopf_settings(None).networking.error_backoffs
    assert not isinstance(backoffs, collections.abc.Sized)
    first = list(itertools.islice(iter(backoffs), 1000))
    assert len(first) == 1000 and max(first) <= 5.0
    assert list(itertools.islice(iter(backoffs), 3)) == first[:3]  # a fresh sequence for every request
