"""`greenmodel demo --duration` as a smoke test on the local control plane: the recorded night of 6-7 October
2022 (a windy Britain beats France's grid) replayed at one grid hour per 2 s must show the placement in FR,
a region switch to GB with both placements briefly serving, and a clean exit that removes what it started."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def test_demo_shows_a_region_switch_and_cleans_up(cluster):
    t0 = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "greenmodel"), "demo", "--duration", "40", "--plain"],
                          capture_output=True, text=True, timeout=240, env=cluster.env, cwd=REPO)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "local cluster: already up, reusing it" in out  # the fixture brought it up; the demo leaves it up
    assert re.search(r"VariantSelected .* in europe-west9", out), out[-3000:]
    switch = re.search(r"RegionSwitched\s+europe-west9 -> europe-west2: ([\d.]+) -> ([\d.]+) gCO2e/Mtok", out)
    assert switch, out[-3000:]
    # Each side is priced at its own region's intensity at the switch: the operator moves to the cleaner
    # grid, so the placement it leaves must cost more than the one it moves to (not the same figure twice).
    before, after = map(float, switch.groups())
    assert before > after, switch.group(0)
    # Zero downtime: at some moment pods of both placements run side by side.
    assert re.search(r"grid [^\n]*GB \d+\*[^\n]*FR \d+\*", out), "never saw both regions serving"
    n = int(re.search(r"demo finished: (\d+) region switch", out).group(1))
    assert n >= 1
    for what in ("cleanup: operator", "cleanup: namespace greenmodel-demo", "cleanup: carbon replay server"):
        assert what in out
    phase = cluster.kubectl("get", "namespace", "greenmodel-demo", "-o", "jsonpath={.status.phase}", check=False)
    assert phase.returncode != 0 or phase.stdout == "Terminating"
    left = subprocess.run(["pgrep", "-f", "greenmodel run --config /tmp/greenmodel-demo-"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "the demo left its operator running"
    print(f"\ndemo smoke: {time.monotonic() - t0:.1f}s wall, {n} region switch(es)")
