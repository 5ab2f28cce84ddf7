"""Packaging rules: the stdlib `operator` is not shadowed; dependencies point one way."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_operator_is_not_shadowed():
    out = subprocess.run(
        [sys.executable, "-c", "import operator; print(operator.add(1, 2), operator.__file__)"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    assert out.startswith("3 ") and "site-packages" not in out.split()[1] or "lib/python" in out


def test_import_direction_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_lists_crds_command():
    out = subprocess.run([sys.executable, "-m", "loraplane.cli", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert "crds" in out.stdout, out.stdout + out.stderr


def test_the_api_server_runs_without_torch():
    code = ("import sys, loraplane_api.app, loraplane_api.__main__; "
            "print(sorted(m for m in ('torch', 'transformers', 'loraplane_trainer.training', 'loraplane_server')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
