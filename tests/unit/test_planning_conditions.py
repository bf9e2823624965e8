from datetime import datetime, timedelta, timezone

import pytest

from greenmodel.planning.conditions import Cond, get_condition, merge_conditions, signal_transitions

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


def _stored(*conds: Cond) -> list[dict]:
    return merge_conditions(None, list(conds), 1, datetime(2026, 1, 1, tzinfo=timezone.utc))


LIVE = Cond("CarbonDataAvailable", True, "Live", "europe-west9: 40 g/kWh from electricitymaps (measured)")
STATIC = Cond("CarbonDataAvailable", False, "StaticFallback", "europe-west9: 89 g/kWh from static (Static)")
HELD = Cond("CarbonDataAvailable", False, "HoldingLastReading", "europe-west9: 40 g/kWh, older than fresh data")
FALLBACK = Cond("CarbonDataAvailable", True, "FallbackProvider", "europe-west9: 41 g/kWh from watttime")
METRICS_OFF = Cond("MetricsAvailable", False, "NotConfigured", "no Prometheus configured")
METRICS_DOWN = Cond("MetricsAvailable", False, "QueryFailed", "Prometheus unreachable")
METRICS_OK = Cond("MetricsAvailable", True, "Available", "3 pods")


def test_signal_degrading_is_one_warning_and_recovery_one_normal_event():
    assert signal_transitions(_stored(LIVE), [STATIC]) == [
        ("CarbonDataStaticFallback", STATIC.message, "Warning")]
    assert signal_transitions(_stored(STATIC), [STATIC]) == []  # the next pass: nothing new to tell
    assert signal_transitions(_stored(HELD), [STATIC]) == [("CarbonDataStaticFallback", STATIC.message, "Warning")]
    (reason, message, type_), = signal_transitions(_stored(STATIC), [LIVE])
    assert (reason, type_) == ("CarbonDataRestored", "Normal") and message.endswith("(was StaticFallback)")
    # a fallback provider is healthy data from a worse source: told as a Warning, its end as restored
    assert signal_transitions(_stored(LIVE), [FALLBACK])[0][::2] == ("CarbonDataFallbackProvider", "Warning")
    assert signal_transitions(_stored(FALLBACK), [LIVE])[0][::2] == ("CarbonDataRestored", "Normal")


def test_metrics_not_configured_is_a_choice_not_a_warning():
    assert signal_transitions(None, [LIVE, METRICS_OFF]) == []
    assert signal_transitions(_stored(METRICS_OFF), [METRICS_OK]) == []
    assert signal_transitions(_stored(METRICS_OK), [METRICS_DOWN]) == [
        ("MetricsQueryFailed", METRICS_DOWN.message, "Warning")]
    assert signal_transitions(_stored(METRICS_DOWN), [METRICS_OK])[0][::2] == ("MetricsRestored", "Normal")
    # other condition types are not signals
    assert signal_transitions(None, [Cond("Ready", False, "Deploying", "waiting")]) == []


def test_first_pass_on_degraded_data_warns():
    assert signal_transitions(None, [STATIC])[0][::2] == ("CarbonDataStaticFallback", "Warning")


def test_no_series_yet_is_quiet_until_the_series_existed():
    none_yet = Cond("MetricsAvailable", False, "NoServingSeries", "no vLLM series for these pods")
    assert signal_transitions(None, [none_yet]) == []
    assert signal_transitions(_stored(METRICS_OK), [none_yet])[0][::2] == ("MetricsNoServingSeries", "Warning")
