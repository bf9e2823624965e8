"""In-memory copies of watched objects (an informer store), so idle passes read nothing.

Filled by kopf watch events (``upsert``/``remove``) and primed by one LIST per kind at start-up
(so the first passes see existing children and never mistake "not listed yet" for "absent").
After our own writes the API's answer is stored at once (write-through); a late watch event
carrying an older resourceVersion does not overwrite a newer copy.

Thread-safe: events arrive on the event loop, passes read from worker threads.
"""

from __future__ import annotations

import threading
from typing import Iterable


def _rv(obj: dict) -> int | None:
    raw = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def slim(obj: dict) -> dict:
    """The object without ``metadata.managedFields``: nothing of ours reads them, and on pods and Deployments
    written by four managers they are the largest part of the object (most of the cache's memory)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


def _key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class ObjectCache:
    def __init__(self, kind: str, index_label: str | None = None):
        """Indexed by owner uid, or by ``namespace/<label value>`` when ``index_label`` is given
        (pods belong to ReplicaSets, so they are found by our instance label instead)."""
        self.kind = kind
        self._index_label = index_label
        self._items: dict[tuple[str, str], dict] = {}
        self._by_owner: dict[str, set[tuple[str, str]]] = {}
        self._lock = threading.Lock()
        self.synced = False
        self.version = 0  # bumped by every change, so derived views can be recomputed only when stale

    def __len__(self) -> int:
        return len(self._items)

    def _owners(self, obj: dict) -> list[str]:
        meta = obj.get("metadata") or {}
        if self._index_label:
            value = (meta.get("labels") or {}).get(self._index_label)
            return [f"{meta.get('namespace') or ''}/{value}"] if value else []
        return [r.get("uid", "") for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if r.get("uid")]

    def upsert(self, obj: dict) -> bool:
        """Store ``obj`` (slimmed) unless we already hold a newer version. Returns whether it was stored."""
        obj = slim(obj)
        key = _key(obj)
        with self._lock:
            old = self._items.get(key)
            if old is not None:
                new_rv, old_rv = _rv(obj), _rv(old)
                same_object = (old.get("metadata") or {}).get("uid") == (obj.get("metadata") or {}).get("uid")
                if same_object and new_rv is not None and old_rv is not None and new_rv < old_rv:
                    return False
                for uid in self._owners(old):
                    self._by_owner.get(uid, set()).discard(key)
            self._items[key] = obj
            for uid in self._owners(obj):
                self._by_owner.setdefault(uid, set()).add(key)
            self.version += 1
            return True

    def remove(self, obj_or_key) -> None:
        key = obj_or_key if isinstance(obj_or_key, tuple) else _key(obj_or_key)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.version += 1
                for uid in self._owners(old):
                    owned = self._by_owner.get(uid)
                    if owned is not None:
                        owned.discard(key)
                        if not owned:
                            del self._by_owner[uid]

    def replace_all(self, objs: Iterable[dict]) -> None:
        """Prime from a LIST (keeps nothing the LIST did not return)."""
        with self._lock:
            self._items.clear()
            self._by_owner.clear()
            self.version += 1
        for obj in objs:
            self.upsert(obj)
        self.synced = True

    def get(self, namespace: str | None, name: str) -> dict | None:
        with self._lock:
            return self._items.get((namespace or "", name))

    def owned_by(self, uid: str) -> list[dict]:
        with self._lock:
            return [self._items[k] for k in self._by_owner.get(uid, ()) if k in self._items]

    def values(self) -> list[dict]:
        with self._lock:
            return list(self._items.values())

    def items_with_version(self) -> tuple[int, list[dict]]:
        """The objects and the version they were read at, consistently."""
        with self._lock:
            return self.version, list(self._items.values())

    def keys(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._items)
