"""The chart's alerting rules (charts/greenmodel-operator/files/alerts.yaml) checked and unit-tested with
promtool (Debian's prometheus package), and every metric they use exists in the operator's registry."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "charts/greenmodel-operator/files/alerts.yaml"
PROMTOOL = shutil.which("promtool")


def rendered(tmp_path: Path) -> Path:
    text = ALERTS.read_text()
    text = text.replace("__SERVICE__", "gm-greenmodel-operator-metrics").replace("__NAMESPACE__", "greenmodel-system")
    text = text.replace("__MAX_AGE__", "3600")
    out = tmp_path / "alerts.yaml"
    out.write_text(text)
    return out


def test_rules_are_valid(tmp_path):
    assert PROMTOOL, "promtool not found: run `make system-deps` (Debian package prometheus)"
    proc = subprocess.run([PROMTOOL, "check", "rules", str(rendered(tmp_path))], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 5 rules found" in proc.stdout


UNIT_TESTS = """
rule_files: [alerts.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{namespace="greenmodel-system", service="gm-greenmodel-operator-metrics"}'
        values: '1x5 0x10'
      - series: 'greenmodel_reconcile_total{result="success"}'
        values: '0+10x40'
      - series: 'greenmodel_reconcile_total{result="error"}'
        values: '0+0x10 0+5x30'
      - series: 'greenmodel_grid_data_age_seconds{region="europe-west2"}'
        values: '60+60x40'
      - series: 'greenmodel_grid_data_age_seconds{region="europe-west9"}'
        values: '60x40'
      - series: 'greenmodel_replicas{namespace="team-a", name="chat"}'
        values: '2x40'
      - series: 'greenmodel_ready_replicas{namespace="team-a", name="chat"}'
        values: '2x5 0x35'
      - series: 'greenmodel_replicas{namespace="team-b", name="idle"}'
        values: '0x40'
      - series: 'greenmodel_ready_replicas{namespace="team-b", name="idle"}'
        values: '0x40'
    alert_rule_test:
      - {eval_time: 4m, alertname: GreenModelOperatorDown, exp_alerts: []}
      - eval_time: 15m
        alertname: GreenModelOperatorDown
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: greenmodel-operator is not being scraped or is down
              description: No healthy scrape of the operator metrics Service for 5 minutes; GreenModels are not reconciled (serving continues as last applied).
      - {eval_time: 20m, alertname: GreenModelReconcileErrors, exp_alerts: []}
      - eval_time: 40m
        alertname: GreenModelReconcileErrors
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: More than 10% of reconcile passes fail
              description: 33.33% of reconcile passes failed over 10 minutes; see the operator logs and Warning Events.
      - {eval_time: 40m, alertname: GreenModelReconcileSlow, exp_alerts: []}
      - {eval_time: 65m, alertname: GreenModelCarbonDataStale, exp_alerts: []}
      - {eval_time: 30m, alertname: GreenModelCarbonDataStale, exp_alerts: []}
      - {eval_time: 14m, alertname: GreenModelNoReadyReplicas, exp_alerts: []}
      - eval_time: 20m
        alertname: GreenModelNoReadyReplicas
        exp_alerts:
          - exp_labels: {severity: critical, namespace: team-a, name: chat}
            exp_annotations:
              summary: A GreenModel has no ready serving pods
              description: GreenModel team-a/chat plans replicas but none is ready.
  - interval: 1m
    input_series:
      - series: 'greenmodel_grid_data_age_seconds{region="europe-west2"}'
        values: '3000+60x40'
    alert_rule_test:
      - {eval_time: 15m, alertname: GreenModelCarbonDataStale, exp_alerts: []}
      - eval_time: 30m
        alertname: GreenModelCarbonDataStale
        exp_alerts:
          - exp_labels: {severity: warning, region: europe-west2}
            exp_annotations:
              summary: Grid carbon intensity data is stale
              description: Intensity for region europe-west2 is 1h 20m 0s old; placement decisions hold the last plan, then fall back.
"""


def test_rules_fire_when_they_should(tmp_path):
    assert PROMTOOL, "promtool not found: run `make system-deps`"
    rendered(tmp_path)
    (tmp_path / "tests.yaml").write_text(UNIT_TESTS)
    proc = subprocess.run([PROMTOOL, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alerts_use_only_metrics_the_operator_exports():
    from greenmodel.observability import REGISTRY

    exported = set()
    for metric in REGISTRY.collect():
        exported.add(metric.name)
        exported.update(s.name for s in metric.samples)
    for family in list(REGISTRY._names_to_collectors):  # counters/histograms with no samples yet
        exported.add(family)
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    used = set()
    for rule in groups[0]["rules"]:
        used.update(re.findall(r"\b(greenmodel_[a-z_]+)", rule["expr"]))
    assert used and used <= exported, sorted(used - exported)
