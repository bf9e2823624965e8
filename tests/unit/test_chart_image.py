"""Dockerfile lint (hadolint is not packaged for Debian, so the rules that matter are checked here) and the
dependency locks the image installs from."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        buf += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


INSTR = instructions(DOCKERFILE.read_text())


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in INSTR:
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_base_image_pinned_by_digest_with_tag():
    args = dict(a.split("=", 1) for i, a in INSTR if i == "ARG" and "=" in a)
    for i, arg in INSTR:
        if i != "FROM":
            continue
        image = arg.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), f"unpinned base image {image}"


def test_multi_stage_and_runtime_copies_only_the_venv():
    st = stages()
    assert len(st) >= 2, "multi-stage build expected"
    runtime = st[-1]
    copies = [a for i, a in runtime if i == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies), "runtime stage copies only build outputs"
    assert not any(i == "RUN" and "pip install" in a for i, a in runtime), "no pip install in the runtime stage"


def test_dependencies_installed_from_hash_locks_only():
    pip_runs = [a for i, a in INSTR if i == "RUN" and "pip install" in a]
    assert pip_runs
    for run in pip_runs:
        for cmd in run.split("&&"):
            if "pip install" not in cmd:
                continue
            if "-r " in cmd:
                assert "--require-hashes" in cmd and "--no-deps" in cmd, cmd
            else:  # the project itself: nothing resolved, no build isolation (backend from the build lock)
                assert "--no-deps" in cmd and "--no-build-isolation" in cmd, cmd


def test_numeric_non_root_user_last():
    users = [a for i, a in stages()[-1] if i == "USER"]
    assert users, "runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or (gid.isdigit() and int(gid) != 0))


def test_exec_form_entrypoint_runs_greenmodel_run():
    entry = [a for i, a in INSTR if i == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["greenmodel", "run"]


def test_healthcheck_probes_the_liveness_endpoint():
    hc = [a for i, a in INSTR if i == "HEALTHCHECK"]
    assert hc and "CMD [" in hc[-1] and "/healthz" in hc[-1]
    # The port probed is the one `greenmodel run` serves /healthz on with the image's defaults.
    port = re.search(r"127\.0\.0\.1:(\d+)/healthz", hc[-1]).group(1)
    env = " ".join(a for i, a in stages()[-1] if i == "ENV")
    assert f"GREENMODEL_HEALTH_PORT={port}" in env
    assert port in " ".join(a for i, a in INSTR if i == "EXPOSE").split()


def test_no_lint_smells():
    """hadolint-style: no ADD of URLs, no latest tags, no sudo, no apt without cleanup, no pip cache."""
    for i, a in INSTR:
        assert i != "ADD", "use COPY (ADD fetches URLs and unpacks archives implicitly)"
        assert i != "MAINTAINER"
        if i == "RUN":
            assert "sudo " not in a and "curl " not in a and "wget " not in a
            if "apt-get install" in a:
                assert "--no-install-recommends" in a and "rm -rf /var/lib/apt/lists" in a
    assert ":latest" not in DOCKERFILE.read_text()
    assert any(i == "ENV" and "PIP_NO_CACHE_DIR=1" in a for i, a in INSTR)


def test_entrypoint_is_importable():
    from greenmodel.cli import main

    assert "run" in main.SUBCOMMANDS
    parser = main.build_parser()
    assert parser.prog == "greenmodel"


def test_entry_point_script_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["greenmodel"] == "greenmodel.cli.main:main"


# ---- locks ----

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)")


def parse_lock(path: Path) -> dict[str, list[str]]:
    """name -> hashes, with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    out = {}
    for line in text.splitlines():
        m = PIN.match(line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
    return out


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-build.lock"])
def test_every_pin_has_hashes(lock):
    pins = parse_lock(ROOT / lock)
    assert pins
    assert {n: h for n, h in pins.items() if not h} == {}


def _normalise(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_lock_covers_every_runtime_dependency():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = parse_lock(ROOT / "requirements.lock")
    missing = sorted(_normalise(d) for d in deps if _normalise(d) not in pins)
    assert missing == [], f"add them with `make lock`: {missing}"


def test_build_lock_covers_the_build_backend():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = parse_lock(ROOT / "requirements-build.lock")
    assert sorted(_normalise(r) for r in requires if _normalise(r) not in pins) == []


# ---- the dependency audit (.ci/audit.py) decides correctly from what its sources say ----

def _audit_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_audit(monkeypatch, tmp_path, pip_report, project_json, strict=False):
    audit = _audit_module()
    lock = tmp_path / "req.lock"
    lock.write_text("requests==2.34.2 \\\n    --hash=sha256:" + "a" * 64 + "\nPyYAML==6.0.4 \\\n    --hash=sha256:" + "b" * 64 + "\n")
    monkeypatch.setattr(audit, "pip_audit", lambda _lock: pip_report)
    monkeypatch.setattr(audit, "latest_release_vulns", lambda name, version: project_json.get(name))
    monkeypatch.setattr("sys.argv", ["audit.py", str(lock)] + (["--strict"] if strict else []))
    return audit.main()


def test_audit_fails_on_a_known_vulnerability(monkeypatch, tmp_path, capsys):
    report = {"requests": {"name": "requests", "version": "2.34.2", "vulns": [{"id": "GHSA-x", "fix_versions": ["2.35"]}]},
              "pyyaml": {"name": "pyyaml", "version": "6.0.4", "vulns": []}}
    assert _run_audit(monkeypatch, tmp_path, report, {}) == 1
    assert "VULNERABLE requests==2.34.2: GHSA-x (fixed in 2.35)" in capsys.readouterr().out


def test_audit_falls_back_to_project_json_and_reports_unaudited(monkeypatch, tmp_path, capsys):
    skipped = {n: {"name": n, "skip_reason": "Dependency not found on PyPI"} for n in ("requests", "pyyaml")}
    assert _run_audit(monkeypatch, tmp_path, skipped, {"requests": []}) == 0
    out = capsys.readouterr().out
    assert "1 with PyPI project JSON; 1 not audited" in out and "pyyaml==6.0.4" in out
    assert _run_audit(monkeypatch, tmp_path, skipped, {"requests": []}, strict=True) == 1
    assert _run_audit(monkeypatch, tmp_path, skipped, {"requests": [{"id": "PYSEC-1", "fixed_in": ["9"]}]}) == 1
