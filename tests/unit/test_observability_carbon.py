from datetime import datetime, timezone

from greenmodel.observability import REGISTRY, record_carbon_outcome
from greenmodel.signals.carbon.base import Reason
from greenmodel.signals.carbon.cache import Outcome


def _value(**labels):
    return REGISTRY.get_sample_value("greenmodel_carbon_requests_total", labels) or 0.0


def test_carbon_outcomes_are_counted_by_bounded_labels(caplog):
    at = datetime(2022, 10, 6, tzinfo=timezone.utc)
    failed = dict(zone="FR", provider="electricitymaps", call="latest", outcome="failed", reason="ProviderRateLimited")
    ok = dict(zone="FR", provider="electricitymaps", call="latest", outcome="ok", reason="")
    before_failed, before_ok = _value(**failed), _value(**ok)
    record_carbon_outcome(Outcome("FR", "electricitymaps", "failed", Reason.RATE_LIMITED, "429", at, retry_after=5))
    record_carbon_outcome(Outcome("FR", "electricitymaps", "ok", None, "", at))
    assert _value(**failed) == before_failed + 1
    assert _value(**ok) == before_ok + 1
    assert "ProviderRateLimited" in caplog.text and "FR" in caplog.text
