from greenmodel.kube.cache import ObjectCache


def obj(name, rv, uid="u1", owner="gm-1", ns="ns", labels=None):
    return {"metadata": {"name": name, "namespace": ns, "uid": uid, "resourceVersion": str(rv),
                         "labels": labels or {}, "ownerReferences": [{"uid": owner}]}}


def test_newer_wins_and_owner_index_follows():
    c = ObjectCache("deployments")
    assert c.upsert(obj("a", 10))
    assert not c.upsert(obj("a", 9))  # late watch event after our write-through
    assert c.get("ns", "a")["metadata"]["resourceVersion"] == "10"
    assert [o["metadata"]["name"] for o in c.owned_by("gm-1")] == ["a"]
    assert c.upsert(obj("a", 11, owner="gm-2"))
    assert c.owned_by("gm-1") == [] and len(c.owned_by("gm-2")) == 1
    c.remove(obj("a", 12))
    assert c.get("ns", "a") is None and c.owned_by("gm-2") == []


def test_recreated_object_with_lower_rv_is_accepted():
    c = ObjectCache("x")
    c.upsert(obj("a", 10, uid="old"))
    assert c.upsert(obj("a", 5, uid="new"))


def test_label_index_for_pods():
    c = ObjectCache("pods", index_label="app.kubernetes.io/instance")
    c.upsert(obj("p1", 1, labels={"app.kubernetes.io/instance": "chat"}))
    c.upsert(obj("p2", 1, uid="u2", ns="other", labels={"app.kubernetes.io/instance": "chat"}))
    assert [p["metadata"]["name"] for p in c.owned_by("ns/chat")] == ["p1"]
    c.replace_all([])
    assert c.owned_by("ns/chat") == [] and c.synced


def test_managed_fields_are_not_kept():
    c = ObjectCache("deployments")
    obj = {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "1",
                        "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:status": {}}}]},
           "spec": {"replicas": 2}}
    c.upsert(obj)
    kept = c.get("ns", "a")
    assert "managedFields" not in kept["metadata"] and kept["spec"] == {"replicas": 2}
    assert "managedFields" in obj["metadata"]  # the caller's object is not changed
