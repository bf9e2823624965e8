"""The Argo CD health check (docs/argocd-health.lua) run by a real Lua interpreter against status fixtures,
and kstatus' documented rules (sigs.k8s.io/cli-utils pkg/kstatus/status, Compute for custom resources)
checked against the same fixtures, so GitOps tools of both families read a GreenModel the same way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from greenmodel.testing.ci import require

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "argocd-health.lua"
FIXTURES = yaml.safe_load((Path(__file__).parent / "health_fixtures.yaml").read_text())
LUA = shutil.which("lua5.4")
# gopher-lua (Lua 5.1), the VM Argo CD embeds; built by `make lua-tools` into the build cache.
_CACHE = Path(os.environ.get("GM_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "greenmodel")
GLUA = _CACHE / "glua-v1.1.1" / "bin" / "glua"

# kstatus status -> the Argo CD health that means the same thing.
KSTATUS_TO_ARGO = {"Current": "Healthy", "InProgress": "Progressing", "Failed": "Degraded", "Terminating": "Progressing"}


def to_lua(value) -> str:
    """A Lua table constructor for a JSON-like value (Argo CD hands the script the object decoded this way)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # Lua decimal escapes are bytes of at most three digits: escape each byte of the UTF-8 as \ddd, so
        # "+1" becomes \0431 (not \431, which Lua reads as one too-large escape).
        safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 :.,-_/()")
        return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in value.encode()) + '"'
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{to_lua(str(k))}] = {to_lua(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def argo_health(obj: dict, interpreter: str | None = None) -> tuple[str, str]:
    interpreter = interpreter or LUA
    assert interpreter, "lua5.4 not found: run `make system-deps` (Debian package lua5.4)"
    harness = (
        f"obj = {to_lua(obj)}\n"
        f"local hs = dofile({to_lua(str(SCRIPT))})\n"
        'io.write(hs.status, "\\n", hs.message)\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(harness)
    try:
        out = subprocess.run([interpreter, f.name], capture_output=True, text=True, timeout=10, check=True)
    finally:
        os.unlink(f.name)
    status, message = out.stdout.split("\n", 1)
    return status, message


def kstatus_compute(obj: dict) -> str:
    """kstatus Compute() for a resource with no built-in rules (generic.go + status.go):
    deletionTimestamp -> Terminating; generation != status.observedGeneration (when both exist) -> InProgress;
    the first condition in list order that is Reconciling=True -> InProgress or Stalled=True -> Failed;
    otherwise Current (the Ready condition is not consulted)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    if "generation" in meta and "observedGeneration" in status and status["observedGeneration"] != meta["generation"]:
        return "InProgress"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return "InProgress"
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return "Failed"
    return "Current"


def follows_contract(obj: dict) -> bool:
    """The condition contract the operator publishes from its first visit."""
    status = obj.get("status")
    if status is None or "observedGeneration" not in status:
        return False
    conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
    if conds.get("Reconciling") == "True" and conds.get("Stalled") == "True":
        return False
    if conds.get("Ready") == "True":
        return True
    return conds.get("Reconciling") == "True" or conds.get("Stalled") == "True"


CASES = [pytest.param(c, id=c["name"]) for c in FIXTURES]


@pytest.mark.parametrize("case", CASES)
def test_argo_health_script(case):
    status, message = argo_health(case["object"])
    assert (status, message) == (case["argo"]["status"], case["argo"]["message"])


@pytest.mark.parametrize("case", CASES)
def test_argo_health_script_in_gopher_lua(case):
    """The same fixtures in gopher-lua (Lua 5.1 semantics, floats for every JSON number, as Argo CD runs it)."""
    require(GLUA.exists(), f"{GLUA} missing: `make lua-tools` builds it")
    obj = _floats(case["object"])
    assert argo_health(obj, str(GLUA)) == (case["argo"]["status"], case["argo"]["message"])


def _floats(value):
    """JSON numbers reach Argo CD's Lua as float64."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("case", CASES)
def test_kstatus_rules(case):
    assert kstatus_compute(case["object"]) == case["kstatus"]


@pytest.mark.parametrize("case", CASES)
def test_argo_and_kstatus_agree_on_contract_states(case):
    assert follows_contract(case["object"]) == case["contract"]
    if case["contract"]:
        assert KSTATUS_TO_ARGO[kstatus_compute(case["object"])] == argo_health(case["object"])[0]


def test_fixtures_cover_every_health_and_kstatus_status():
    assert {c["argo"]["status"] for c in FIXTURES} == {"Healthy", "Progressing", "Degraded"}
    assert {c["kstatus"] for c in FIXTURES} == {"Current", "InProgress", "Failed", "Terminating"}


def test_script_uses_only_lua_5_1_syntax():
    """Argo CD embeds gopher-lua (Lua 5.1): no integer division, bitwise operators, goto or attributes."""
    code = "\n".join(line.split("--", 1)[0] for line in SCRIPT.read_text().splitlines())
    for pattern in (r"//", r"\bgoto\b", r"<const>", r"<close>", r"[^~=<>]=?[&|]", r"~[^=]", r"<<|>>", r"\butf8\."):
        assert not re.search(pattern, code), f"Lua 5.2+ construct {pattern!r} in {SCRIPT.name}"


def test_a_broken_script_is_caught(tmp_path):
    """The harness really runs the script: a health check that always says Healthy fails the fixtures."""
    global SCRIPT
    fake = tmp_path / "always-healthy.lua"
    fake.write_text('return {status = "Healthy", message = "ok"}\n')
    original, SCRIPT = SCRIPT, fake
    try:
        mismatches = [c["name"] for c in FIXTURES if argo_health(c["object"]) != (c["argo"]["status"], c["argo"]["message"])]
    finally:
        SCRIPT = original
    assert len(mismatches) == len(FIXTURES)
