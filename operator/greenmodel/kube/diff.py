"""Is the live object already what we would apply? (so an idle pass sends nothing)

Server-side apply of an unchanged intent does not bump resourceVersion, but it is still a
write request; 1,000 GreenModels x 3 children every timer tick would be 3,000 PATCHes of
nothing. We compare our intent against the live object first, the way the API server would
merge it:

- maps: every key we set must be present in live with an equal value; extra live keys are
  defaults or other managers' fields and are fine;
- lists of maps with a merge key (`name`, `containerPort`, `key`, `port`): each of our
  items must match a live item with the same key (SSA keeps other managers' items);
- other lists (args, command, values) are atomic: equal element-wise;
- scalars: equal, with Kubernetes quantity canonicalisation: ints ("1" == 1) and units ("1024Mi" == "1Gi",
  the API server writes quantities back in their canonical form).
"""

from __future__ import annotations

from typing import Any

from greenmodel.api import quantity

_MERGE_KEYS = ("name", "containerPort", "port", "key", "type", "mountPath")


def _merge_key(items: list) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in _MERGE_KEYS:
        if all(key in i for i in items):
            return key
    return None


def _scalar_equal(want: Any, live: Any) -> bool:
    if isinstance(want, bool) or isinstance(live, bool):
        return type(want) is type(live) and want == live
    if want == live:
        return True
    if isinstance(want, (int, float)) and isinstance(live, str):
        return str(want) == live
    if isinstance(live, (int, float)) and isinstance(want, str):
        return want == str(live)
    if isinstance(want, str) and isinstance(live, str) and want[:1].isdigit() and live[:1].isdigit():
        a, b = quantity.parse(want), quantity.parse(live)
        return a is not None and a == b
    return False


def is_subset(want: Any, live: Any) -> bool:
    """True when applying ``want`` over ``live`` would change nothing we own."""
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return False
        return all(k in live and is_subset(v, live[k]) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(live, list):
            return False
        key = _merge_key(want)
        if key is not None and _merge_key(live) == key:
            by_key = {i[key]: i for i in live}
            if len(by_key) != len(live):
                return False
            return all(i[key] in by_key and is_subset(i, by_key[i[key]]) for i in want)
        return len(want) == len(live) and all(is_subset(w, v) for w, v in zip(want, live))
    return _scalar_equal(want, live)


def needs_apply(desired: dict, live: dict | None) -> bool:
    """Whether ``desired`` (a full apply intent) must be sent, given the live object (or None)."""
    if live is None:
        return True
    want = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
    return not is_subset(want, live)
