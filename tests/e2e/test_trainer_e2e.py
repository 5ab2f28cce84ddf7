"""Real LoRA training of SmolLM2-135M on CPU: it learns made-up facts, and publishes a loadable adapter.

One training run (the `trained` fixture) is shared by the tests of this module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from loraplane.exitcodes import QUALITY_GATE_FAILED
from loraplane.storage import RunLayout, read_manifest, read_progress, verify_files

from tests.support.trainer_facts import facts_job, write_facts

RUN_ID = "uid-facts-1"


def trainer_env() -> dict:
    # The Hub is unreachable here: go straight to the bundled offline copy of the model.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smollm2_dir):
    tmp = tmp_path_factory.mktemp("trainer-e2e")
    out = f"file://{tmp / 'out'}"
    job = facts_job(write_facts(tmp / "facts.jsonl"), out, training={"epochs": 3},
                    gates={"maxPerplexity": 50, "minExactMatchGain": 0.3})
    job_file = tmp / "finetunejob.json"
    job_file.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "loraplane_trainer", "run", "--job", str(job_file),
                           "--run-id", RUN_ID], env=trainer_env(), capture_output=True, text=True, timeout=600)
    return {"proc": proc, "out": out, "job": job, "tmp": tmp}


def test_run_succeeds_and_publishes_an_accepted_adapter(trained):
    proc = trained["proc"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    progress = read_progress(RunLayout(trained["out"], "facts-bot", RUN_ID).progress)
    assert progress.phase == "Succeeded"
    assert progress.adapter.version == "v1" and progress.adapter.verdict == "accepted"
    assert progress.dataset.train == 24 and progress.dataset.validation == 6
    manifest = read_manifest(progress.adapter.uri)
    verify_files(progress.adapter.uri, manifest)
    assert manifest.digest == progress.adapter.sha256
    names = {f.path for f in manifest.files}
    assert {"adapter_config.json", "adapter_model.safetensors", "metrics.json", "dataset-report.json",
            "loss_curve.png", "README.md"} <= names
    # plain lines for kubectl logs, no progress bar off a terminal
    assert "step 9/9" in proc.stderr and "\r" not in proc.stderr


def test_loss_falls_and_exact_match_rises(trained):
    progress = read_progress(RunLayout(trained["out"], "facts-bot", RUN_ID).progress)
    m = progress.metrics.to_wire()
    adapter_dir = Path(progress.adapter.uri.removeprefix("file://"))
    history = json.loads((adapter_dir / "metrics.json").read_text())["history"]
    assert history[-1]["loss"] < history[0]["loss"] / 3
    assert m["exactMatchBefore"] <= 0.2
    assert m["exactMatchAfter"] >= 0.5, m
    assert m["perplexityAfter"] < m["perplexityBefore"]
    assert m["regressionPerplexityAfter"] > 0 and m["regressionPerplexityBefore"] > 0


def test_model_card_has_header_table_and_lineage(trained):
    progress = read_progress(RunLayout(trained["out"], "facts-bot", RUN_ID).progress)
    card = (Path(progress.adapter.uri.removeprefix("file://")) / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert header["library_name"] == "peft" and header["license"] == "apache-2.0"
    assert "| Validation exact match |" in card and "uid-facts" in card and "sha256:" in card
    png = (Path(progress.adapter.uri.removeprefix("file://")) / "loss_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_adapter_loads_with_plain_peft_and_changes_the_answer(trained, smollm2_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress = read_progress(RunLayout(trained["out"], "facts-bot", RUN_ID).progress)
    adapter_dir = progress.adapter.uri.removeprefix("file://")
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the code word for the Zorblax vault?"}],
                                     tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)

    def answer(model) -> str:
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=16, do_sample=False)
        return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    before = answer(base)
    tuned = PeftModel.from_pretrained(base, adapter_dir)
    after = answer(tuned)
    assert "purple-otter-17" in after and "purple-otter-17" not in before


def test_loraplane_train_cli_rejects_by_quality_gate(trained):
    """`loraplane train` on a laptop: one quick step, a gate it cannot pass -> published as rejected, exit 43."""
    tmp = trained["tmp"]
    job = facts_job(tmp / "facts.jsonl", "s3://cluster-only/",
                    gates={"minExactMatchGain": 0.99}, name="gated-bot")
    job["spec"]["resources"]["queue"] = "team-a"
    job_file = tmp / "gated.yaml"
    job_file.write_text(yaml.safe_dump(job))
    out = tmp / "cli-out"
    proc = subprocess.run([Path(sys.executable).parent / "loraplane", "train", str(job_file), "--output", str(out),
                           "--max-steps", "1", "--run-id", "cli-run"],
                          env=trainer_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == QUALITY_GATE_FAILED, proc.stderr[-3000:]
    assert f"output: file://{out}" in proc.stdout and "queue 'team-a' (Kueue) is ignored" in proc.stdout
    assert "validation exact match" in proc.stdout and "(rejected)" in proc.stdout
    assert "less than minExactMatchGain 0.99" in proc.stdout
    progress = read_progress(RunLayout(f"file://{out}", "gated-bot", "cli-run").progress)
    assert progress.phase == "Failed" and progress.reason == "QualityGateFailed"
    assert progress.adapter.verdict == "rejected"
    manifest = read_manifest(progress.adapter.uri)
    assert manifest.verdict == "rejected" and "minExactMatchGain" in manifest.reason
