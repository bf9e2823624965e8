#!/usr/bin/env python3
"""Dependency audit: known vulnerabilities in the pinned dependencies (requirements.lock).

1. pip-audit (PyPI's advisory database, OSV-backed) on the hash-pinned lock, without installing anything.
2. Where pip-audit could not look a pin up (the per-version JSON endpoint it uses is not served through
   every registry mirror), the project-level PyPI JSON is read instead: its `vulnerabilities` list describes
   the latest release, so it audits a pin exactly when the pin is the latest release.
Fails (exit 1) on any known vulnerability. Pins that neither source could audit are listed; they fail the
audit only with --strict (CI stays usable where the advisory database is unreachable, and says so).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)")


def pins(lock: Path) -> dict[str, str]:
    out = {}
    for line in lock.read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def pip_audit(lock: Path) -> dict[str, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--disable-pip", "-r", str(lock), "--progress-spinner", "off", "-f", "json"],
        capture_output=True, text=True, timeout=600,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        print(f"audit: pip-audit produced no report (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return {}
    return {d["name"].lower().replace("_", "-"): d for d in report.get("dependencies", [])}


def latest_release_vulns(name: str, version: str) -> list[dict] | None:
    """Vulnerabilities of name==version from the project JSON, or None if that cannot tell."""
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=20) as resp:
            data = json.load(resp)
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError):
        return None
    if data.get("info", {}).get("version") != version or "vulnerabilities" not in data:
        return None
    return data["vulnerabilities"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lock", nargs="?", default="requirements.lock")
    ap.add_argument("--strict", action="store_true", help="also fail when a pin could not be audited")
    args = ap.parse_args()
    lock = Path(args.lock)
    pinned = pins(lock)
    audited = pip_audit(lock)
    vulnerable, unaudited, by_source = [], [], {"pip-audit": 0, "project JSON": 0}
    for name, version in sorted(pinned.items()):
        entry = audited.get(name, {})
        if entry and "skip_reason" not in entry:
            by_source["pip-audit"] += 1
            vulns = entry.get("vulns", [])
        else:
            vulns = latest_release_vulns(name, version)
            if vulns is None:
                unaudited.append(f"{name}=={version}")
                continue
            by_source["project JSON"] += 1
            vulns = [{"id": v.get("id"), "fix_versions": v.get("fixed_in", [])} for v in vulns if not v.get("withdrawn")]
        for v in vulns:
            vulnerable.append(f"{name}=={version}: {v.get('id')} (fixed in {', '.join(v.get('fix_versions') or []) or 'no release yet'})")
    print(
        f"audit: {len(pinned)} pinned dependencies in {lock}; audited {by_source['pip-audit']} with pip-audit, "
        f"{by_source['project JSON']} with PyPI project JSON; {len(unaudited)} not audited; {len(vulnerable)} known vulnerabilities"
    )
    for line in vulnerable:
        print(f"  VULNERABLE {line}")
    if unaudited:
        print(f"  not audited (advisory data unreachable or pin is not the latest release): {', '.join(unaudited)}")
    if vulnerable:
        return 1
    if unaudited and args.strict:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
