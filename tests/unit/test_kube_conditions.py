from datetime import datetime, timedelta, timezone

import pytest

from greenmodel.kube.conditions import Cond, get_condition, merge_conditions

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_transition_time_moves_only_on_flip():
    a = merge_conditions([], [Cond("Ready", True, "Serving", "2 ready")], 3, T0)
    b = merge_conditions(a, [Cond("Ready", True, "Serving", "3 ready")], 4, T0 + timedelta(minutes=5))
    assert b[0]["lastTransitionTime"] == a[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert b[0]["observedGeneration"] == 4 and b[0]["message"] == "3 ready"
    c = merge_conditions(b, [Cond("Ready", False, "Switching", "x")], 4, T0 + timedelta(minutes=9))
    assert c[0]["lastTransitionTime"] == "2026-01-01T00:09:00Z" and c[0]["status"] == "False"


def test_same_inputs_same_output_so_idle_passes_write_nothing():
    wanted = [Cond("Ready", True, "Serving", "ok"), Cond("Stalled", False, "Progressing", "")]
    a = merge_conditions([], wanted, 1, T0)
    assert merge_conditions(a, wanted, 1, T0 + timedelta(hours=1)) == a


def test_unknown_and_bad_reason():
    assert merge_conditions([], [Cond("MetricsAvailable", None, "NotConfigured", "")], None, T0)[0]["status"] == "Unknown"
    with pytest.raises(ValueError):
        merge_conditions([], [Cond("Ready", True, "not camel", "")], 1, T0)
    assert get_condition([{"type": "Ready"}], "Ready") == {"type": "Ready"}
