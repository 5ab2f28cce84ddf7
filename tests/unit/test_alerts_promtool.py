"""The chart's alert rules under real Prometheus tooling: `promtool check rules` and `promtool test rules`.

promtool comes from Debian's `prometheus` package (`make install`). Every alert of the chart has a
case in tests/support/promtool/alerts.test.yaml, written with the series as they are scraped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.chart_render import CHART, render

TESTS = Path(__file__).resolve().parents[1] / "support" / "promtool" / "alerts.test.yaml"
RULE_TEMPLATES = ("prometheusrule.yaml", "prometheusrule-serving.yaml")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: run make install")


def rules() -> dict:
    groups = []
    for template in RULE_TEMPLATES:
        groups += yaml.safe_load(render((CHART / "templates" / template).read_text()))["spec"]["groups"]
    return {"groups": groups}


def promtool(tmp_path: Path, rule_doc: dict, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_doc))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    return subprocess.run([PROMTOOL, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rendered_rules(tmp_path):
    out = promtool(tmp_path, rules(), "check", "rules", "rules.yaml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_fires_as_its_case_says(tmp_path):
    doc = rules()
    alerts = {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load(TESTS.read_text())["tests"]
    tested = {t["alertname"] for case in cases for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert alerts <= tested, f"alerts without a firing case: {sorted(alerts - tested)}"
    out = promtool(tmp_path, doc, "test", "rules", TESTS.name)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_cases_can_fail(tmp_path):
    doc = rules()
    for g in doc["groups"]:
        for r in g["rules"]:
            if r.get("alert") == "LoRAPlaneCanaryRolledBack":
                r["expr"] = r["expr"].replace("> 0", "> 1")
    out = promtool(tmp_path, doc, "test", "rules", TESTS.name)
    assert out.returncode != 0 and "LoRAPlaneCanaryRolledBack" in out.stdout + out.stderr
