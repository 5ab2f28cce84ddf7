"""The chart's observability pack: alert rules and the Grafana dashboard query real metric names, in valid PromQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
import yaml
from loraplane import metrics as operator_metrics
from loraplane import router_metrics
from loraplane.canary import metrics as rollout_metrics

from tests.support.chart_render import render

CHART = Path(__file__).resolve().parents[2] / "helm" / "loraplane"
SERVER = Path(__file__).resolve().parents[2] / "server-image"
METRIC = re.compile(r"\bloraplane_[a-z0-9_]+")


def known_metrics() -> set[str]:
    base = {v for k, v in vars(router_metrics).items() if k.isupper() and isinstance(v, str)}
    for collector in (rollout_metrics.PHASE, rollout_metrics.CANARY_WEIGHT, rollout_metrics.ROLLOUTS, operator_metrics.FTJ_PHASE,
                      operator_metrics.GPU_SECONDS, operator_metrics.COST):
        base |= {m.name for m in collector.describe()}
    # Adapter sync's metrics, as its source declares them.
    source = "\n".join(p.read_text() for p in (SERVER / "loraplane_server" / "adapter_sync").glob("*.py"))
    base |= set(re.findall(r'"(loraplane_adapter_sync_[a-z_]+)"', source))
    out = set()
    for name in base:
        out |= {name, name.removesuffix("_total"), f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return out


def check_promql(expr: str, known: set[str]) -> None:
    grafana = expr.replace("$__rate_interval", "5m")
    promql_parser.parse(grafana)  # raises ValueError on invalid PromQL
    unknown = sorted(set(METRIC.findall(expr)) - known)
    assert not unknown, f"unknown metrics {unknown} in {expr}"


def test_prometheus_rules_are_valid_and_cover_the_serving_alerts():
    text = render((CHART / "templates" / "prometheusrule-serving.yaml").read_text())
    rule = yaml.safe_load(text)
    assert rule["kind"] == "PrometheusRule"
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    known = known_metrics()
    for r in rules:
        check_promql(r["expr"], known)
        assert r["labels"]["severity"] in ("warning", "critical")
        assert r["annotations"]["summary"]
    names = {r["alert"] for r in rules}
    assert {"LoRAPlaneCanaryRolledBack", "LoRAPlaneHighErrorRate", "LoRAPlaneLatencySLOFastBurn",
            "LoRAPlaneLatencySLOSlowBurn", "LoRAPlaneAdapterSyncFailing"} <= names
    # Prometheus' own templating survives Helm's: {{ $labels.x }} reaches Prometheus as is.
    assert "{{ $labels.model }}" in next(r for r in rules if r["alert"] == "LoRAPlaneHighErrorRate")["annotations"]["summary"]


def test_latency_slo_uses_an_existing_router_bucket():
    text = (CHART / "templates" / "prometheusrule-serving.yaml").read_text()
    buckets = set(re.findall(r'le="([0-9.]+)"', text))
    source = (SERVER / "loraplane_server" / "router" / "metrics.py").read_text()
    declared = re.search(r"LATENCY_BUCKETS = \(([^)]*)\)", source).group(1)
    assert buckets and all(float(b) in {float(x) for x in declared.split(",")} for b in buckets)


def test_grafana_dashboard_queries_real_metrics():
    dash = json.loads((CHART / "dashboards" / "loraplane.json").read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    known = known_metrics()
    for p in panels:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            check_promql(t["expr"], known)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " | ".join(p["title"].lower() for p in panels)
    for topic in ("requests", "traffic share", "latency", "first token", "error", "feedback", "cost", "cache hit",
                  "canary", "finetunejobs", "gpu-seconds"):
        assert topic in titles, topic


@pytest.mark.parametrize("bad", ["sum by (variant (rate(x[5m]))", "rate(loraplane_router_requests_total[5m]"])
def test_promql_check_can_fail(bad):
    with pytest.raises(ValueError):
        check_promql(bad, known_metrics())


def test_dashboard_configmap_template_ships_the_json():
    text = render((CHART / "templates" / "grafana-dashboards.yaml").read_text())
    cm = yaml.safe_load(text)
    assert cm["kind"] == "ConfigMap" and "loraplane.json" in cm["data"]
    assert '.Files.Get "dashboards/loraplane.json"' in (CHART / "templates" / "grafana-dashboards.yaml").read_text()
