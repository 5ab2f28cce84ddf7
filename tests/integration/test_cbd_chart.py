"""The chart's serving alerts and dashboard ConfigMap render under real Helm (lint renders every template)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_helm_chart import chart_with_values, errors, helm_lint

MONITORING = {"monitoring": {
    "prometheusRules": {"enabled": True, "labels": {"release": "kube-prometheus"}},
    "grafanaDashboards": {"enabled": True, "namespace": "grafana", "label": "grafana_dashboard", "labelValue": "1"},
}}


def test_observability_templates_render_under_helm(tmp_path):
    assert errors(helm_lint(chart_with_values(tmp_path, MONITORING))) == []


def test_a_broken_observability_template_is_caught(tmp_path):
    chart = chart_with_values(tmp_path, MONITORING)
    rule = Path(chart) / "templates" / "prometheusrule-serving.yaml"
    rule.write_text(rule.read_text().replace("  groups:", "  groups: {{ .Values.nope.deeper }}"))
    assert errors(helm_lint(chart))
