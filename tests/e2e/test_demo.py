"""`loraplane demo --no-serve`: the whole loop, run as a user runs it, judged by what it leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from loraplane.storage import read_manifest, verify_files
from loraplane.storage.uris import local_path

ROOT = Path(__file__).resolve().parents[2]
# The whole demo, training included: a few minutes on two cores, longer where the suite runs several
# workers and the demo gets one core of them.
DEMO_TIMEOUT = 2400
EXACT_MATCH_FLOOR = 0.7
pytestmark = pytest.mark.timeout(DEMO_TIMEOUT)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "loraplane-out"
    proc = subprocess.run(
        [sys.executable, "-m", "loraplane.cli", "demo", "--no-serve", "--out", str(out), "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=DEMO_TIMEOUT - 60,
        env={**os.environ, "COLUMNS": "160", "NO_COLOR": "1"},
    )
    return proc, out


def test_demo_completes(demo_run):
    proc, _ = demo_run
    assert proc.returncode == 0, f"demo failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
    for step in ("1. Validate the dataset", "2. Train a LoRA adapter", "3. Before and after", "4. Serve",
                 "5. Canary", "Per-variant metrics", "Canary decision"):
        assert step in proc.stdout, f"{step!r} missing from the demo's output"


def test_demo_publishes_a_verified_adapter_with_card_and_curve(demo_run):
    _, out = demo_run
    summary = json.loads((out / "demo-summary.json").read_text())
    training = summary["training"]
    assert training["verdict"] == "accepted"
    manifest = read_manifest(training["uri"])
    assert manifest is not None and manifest.version == training["version"]
    verify_files(training["uri"], manifest)
    names = {f.path for f in manifest.files}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "loss_curve.png", "metrics.json"} <= names
    prefix = Path(local_path(training["uri"]))
    card = (prefix / "README.md").read_text()
    assert card.startswith("---") and "library_name: peft" in card and "base_model:" in card
    assert (prefix / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_adapter_is_better_than_the_base_model(demo_run, record_property):
    proc, out = demo_run
    assert "Evaluation on held-out data" in proc.stdout
    metrics = json.loads((out / "demo-summary.json").read_text())["training"]["metrics"]
    # Printed at the end of the run (tests/conftest.py, "measured figures").
    record_property("demo adapter, held-out exact match",
                    f"{metrics['exactMatchBefore']:.3f} -> {metrics['exactMatchAfter']:.3f}")
    record_property("demo adapter, validation perplexity",
                    f"{metrics['perplexityBefore']:.3f} -> {metrics['perplexityAfter']:.3f}")
    assert metrics["perplexityAfter"] < metrics["perplexityBefore"]
    assert metrics["exactMatchAfter"] > metrics["exactMatchBefore"]
    # Whole runs of the demo profile reached 0.793-0.874 over seeds, threads and days (docs/training.md); the floor
    # leaves room for another thread count's rounding, and under it training broke.
    assert metrics["exactMatchAfter"] >= EXACT_MATCH_FLOOR


def test_demo_both_variants_answered_and_the_canary_was_judged(demo_run):
    _, out = demo_run
    summary = json.loads((out / "demo-summary.json").read_text())
    traffic = summary["traffic"]
    assert "base" in traffic and len(traffic) >= 2, traffic
    assert all(v["answers"] > 0 for v in traffic.values())
    assert summary["canary"]["action"] in ("Promote", "Rollback", "Advance", "Wait")
    assert set(summary["metrics"]) >= set(traffic)
    # The fine-tuned variant should please the simulated users more than the base model.
    tuned = next(v for k, v in traffic.items() if k != "base")
    assert tuned["thumbsUp"] / tuned["answers"] > traffic["base"]["thumbsUp"] / traffic["base"]["answers"]
