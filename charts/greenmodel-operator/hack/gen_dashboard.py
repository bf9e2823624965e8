"""Writes ../dashboards/greenmodel-operator.json, the Grafana dashboard shipped by the chart, from the
operator's metric names (operator/greenmodel/observability.py). A test checks the file is up to date and
that every metric it queries is exported by the operator.

    python charts/greenmodel-operator/hack/gen_dashboard.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "dashboards" / "greenmodel-operator.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'

# (title, unit, [(expr, legend)], description); laid out two per row.
PANELS = [
    ("Grid carbon intensity by region", "none",
     [("max by (region) (greenmodel_grid_intensity_grams_per_kilowatt_hour)", "{{region}}")],
     "gCO2e/kWh used for decisions, per region (the signal behind every placement)."),
    ("Carbon data age by region", "s",
     [("max by (region) (greenmodel_grid_data_age_seconds)", "{{region}}")],
     "Age of the intensity reading in use; past maxDataAgeSeconds the operator holds the last plan, then falls back."),
    ("Predicted emissions per GreenModel", "none",
     [(f"greenmodel_predicted_grams_per_million_tokens{{{NS}}}", "{{namespace}}/{{name}}")],
     "gCO2e per million output tokens of the chosen variant, GPU and region (energy x PUE x intensity)."),
    ("Predicted power per GreenModel", "watt",
     [(f"greenmodel_predicted_power_watts{{{NS}}}", "{{namespace}}/{{name}}")],
     "Predicted power of the chosen placement, PUE included."),
    ("GPU power: predicted vs measured", "watt",
     [(f"greenmodel_predicted_gpu_power_watts{{{NS}}}", "predicted {{namespace}}/{{name}}"),
      (f"greenmodel_measured_gpu_power_watts{{{NS}}}", "measured {{namespace}}/{{name}}")],
     "GPU (IT) power before PUE: the planner's model at the planned load vs DCGM/Kepler. A lasting gap means the "
     "catalog's power figures need updating."),
    ("Accounted GPU energy by source", "joule",
     [(f"sum by (namespace, name, source) (increase(greenmodel_energy_joules_total{{{NS}}}[$__rate_interval]))",
       "{{source}} {{namespace}}/{{name}}")],
     "Energy counted in emissions: measured (DCGM/Kepler) when serving metrics are available, else estimated."),
    ("Accounted emissions by scope", "massg",
     [(f"sum by (scope) (increase(greenmodel_emissions_grams_total{{{NS}}}[$__rate_interval]))", "scope {{scope}}")],
     "gCO2e: Scope 2 location-based (energy x PUE x grid intensity) and Scope 3 embodied share of the GPUs."),
    ("SCI per 1000 output tokens (last hour)", "massg",
     [(f"sum by (namespace, name) (increase(greenmodel_emissions_grams_total{{{NS}}}[1h])) / "
       f"(sum by (namespace, name) (increase(greenmodel_output_tokens_total{{{NS}}}[1h])) / 1000)",
       "{{namespace}}/{{name}}")],
     "Green Software Foundation SCI, (E x I + M) / R with R = 1000 output tokens, over the last hour of accounting."),
    ("Replicas: planned vs ready", "short",
     [(f"sum by (namespace, name) (greenmodel_replicas{{{NS}}})", "planned {{namespace}}/{{name}}"),
      (f"sum by (namespace, name) (greenmodel_ready_replicas{{{NS}}})", "ready {{namespace}}/{{name}}")],
     "Ready must never drop to zero during a region or variant switch."),
    ("Decisions by reason", "short",
     [("sum by (reason) (increase(greenmodel_decisions_total[$__rate_interval]))", "{{reason}}")],
     "Changes the operator made (VariantSelected, RegionSwitched, Rescaled, ...)."),
    ("Reconcile passes by result", "ops",
     [("sum by (result) (rate(greenmodel_reconcile_total[$__rate_interval]))", "{{result}}")],
     "Reconcile passes per second, success vs error."),
    ("Reconcile duration", "s",
     [("histogram_quantile(0.5, sum by (le) (rate(greenmodel_reconcile_duration_seconds_bucket[$__rate_interval])))", "p50"),
      ("histogram_quantile(0.99, sum by (le) (rate(greenmodel_reconcile_duration_seconds_bucket[$__rate_interval])))", "p99")],
     "Wall time of one pass (observe, plan, apply)."),
    ("Writes (hot-loop detector)", "ops",
     [("sum by (kind, verb) (rate(greenmodel_child_writes_total[$__rate_interval]))", "{{verb}} {{kind}}"),
      ("sum(rate(greenmodel_status_writes_total[$__rate_interval]))", "status")],
     "Idle GreenModels cause zero writes; a steady non-zero line means a reconcile loop is fighting something."),
    ("Kubernetes API requests and queue", "short",
     [("sum by (verb) (rate(greenmodel_kube_requests_total[$__rate_interval]))", "{{verb}} /s"),
      ("max(greenmodel_workqueue_depth)", "queue depth"),
      ("max(greenmodel_greenmodels)", "GreenModels")],
     "Load the operator puts on the API server, and its backlog."),
    ("Events by type", "short",
     [("sum by (type) (increase(greenmodel_events_total[$__rate_interval]))", "{{type}}")],
     "Kubernetes Events posted (Warnings explain what cannot be satisfied)."),
]


def panel(i: int, title: str, unit: str, targets, description: str) -> dict:
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + j), "datasource": DS, "expr": expr, "legendFormat": legend}
            for j, (expr, legend) in enumerate(targets)
        ],
    }


def build() -> dict:
    return {
        "uid": "greenmodel-operator",
        "title": "greenmodel-operator",
        "description": "Carbon signal, decisions, emissions and health of greenmodel-operator.",
        "tags": ["greenmodel", "carbon", "llm"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {"name": "namespace", "type": "query", "datasource": DS, "label": "Namespace",
                 "query": {"query": "label_values(greenmodel_replicas, namespace)", "refId": "ns"},
                 "definition": "label_values(greenmodel_replicas, namespace)",
                 "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
                 "current": {"text": "All", "value": "$__all"}},
            ]
        },
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.read_text() == text else 1)
    OUT.write_text(text)
    print(f"wrote {OUT}")
