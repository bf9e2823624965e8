"""A test whose tool is missing skips on a developer's machine but fails under CI.

CI installs every tool the suite uses (``make test`` runs ``e2e/system-deps.sh`` and ``make lua-tools``), so
a missing one there is a broken install step, and a skip would hide it as a green run.
"""

from __future__ import annotations

import os


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(found, what: str):
    """``found`` if it is truthy; else fail under CI and skip elsewhere, saying ``what`` is missing."""
    if found:
        return found
    import pytest  # the test extra: only tests call this

    if in_ci():
        pytest.fail(f"{what} (under CI every tool must be installed)", pytrace=False)
    pytest.skip(what)
