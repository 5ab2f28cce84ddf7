"""The Helm chart, checked by real Helm (helm-sdkpy in .venv-helm) and by its values schema."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "loraplane"
HELM_PYTHON = ROOT / ".venv-helm" / "bin" / "python"
ERROR = 3  # Helm's lint severity for errors (1 info, 2 warning)


def helm_lint(chart: Path) -> dict:
    if not HELM_PYTHON.exists():
        pytest.fail("the Helm tool environment is missing: run `make install-helm`")
    out = subprocess.run([str(HELM_PYTHON), str(ROOT / "tests" / "support" / "helm_tool.py"), "lint", str(chart)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def chart_with_values(tmp_path: Path, values: dict) -> Path:
    copy = tmp_path / "loraplane"
    shutil.copytree(CHART, copy)
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    (copy / "values.yaml").write_text(yaml.safe_dump(_merge(base, values)))
    return copy


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def errors(result: dict) -> list:
    return [m for m in result.get("Messages") or [] if m.get("Severity", 0) >= ERROR] + (
        [result["error"]] if "error" in result else [])


def test_chart_lints_clean_with_default_values():
    result = helm_lint(CHART)
    assert result["TotalChartsLinted"] == 1
    assert errors(result) == []


def test_chart_lints_clean_with_namespaced_mode_and_monitoring(tmp_path):
    chart = chart_with_values(tmp_path, {
        "watchNamespaces": ["team-a", "team-b"], "replicaCount": 2,
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "operator": {"logLevel": "debug"},
    })
    assert errors(helm_lint(chart)) == []


def test_bad_values_are_refused_by_the_schema(tmp_path):
    chart = chart_with_values(tmp_path, {"replicaCount": "two", "watchNamespaces": ["Not_A_Namespace"]})
    # helm-sdkpy returns Helm's error values without their text: the error is on values.yaml.
    assert [m["Path"] for m in errors(helm_lint(chart)) if isinstance(m, dict)][:1] == ["values.yaml"]
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**yaml.safe_load((CHART / "values.yaml").read_text()), "replicaCount": "two"}, schema)


def test_chart_crds_are_the_generated_ones():
    for path in (ROOT / "crds").glob("*.yaml"):
        assert (CHART / "crds" / path.name).read_text() == path.read_text()
