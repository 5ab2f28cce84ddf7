"""Checkpoints, resume and publish on a real S3-protocol server (moto): SIGKILL mid-run, then resume.

Also the refusals that must stop a run before any training: license and QLoRA on CPU.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from loraplane.api.finetunejob import FineTuneJob
from loraplane.exitcodes import BAD_INPUT
from loraplane.storage import RunLayout, read_manifest, read_progress, verify_files
from loraplane_trainer.training.checkpoints import CheckpointStore
from loraplane_trainer.training.pipeline import run_job

from tests.support.trainer_facts import facts_job, write_facts

STEP_LINE = re.compile(r"step (\d+)/(\d+) epoch")


def start(job_file, run_id):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "loraplane_trainer", "run", "--job", str(job_file),
                             "--run-id", run_id], env=env, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_run_resumes_from_the_checkpoint_without_redoing_steps(s3_server, smollm2_dir, tmp_path):
    out = s3_server.make_bucket("resume")
    job = facts_job(write_facts(tmp_path / "facts.jsonl"), out, name="resume-bot",
                    training={"batchSize": 4, "maxSteps": 4, "checkpointIntervalSteps": 2})
    job["spec"]["evaluation"].update({"maxExamples": 2, "maxNewTokens": 8})
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    layout = RunLayout(out, "resume-bot", "run-1")
    store = CheckpointStore(layout.checkpoints)

    first = start(job_file, "run-1")
    deadline = time.monotonic() + 400
    while not store.complete_steps():
        assert first.poll() is None, first.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first_log = first.communicate()[1]
    saved = store.complete_steps()[-1]
    assert 0 < saved < 4
    done_first = [int(m.group(1)) for m in STEP_LINE.finditer(first_log)]
    assert max(done_first) >= saved

    second = start(job_file, "run-1")
    second_log = second.communicate(timeout=400)[1]
    assert second.returncode == 0, second_log[-3000:]
    assert f"resuming from checkpoint at step {saved}/4" in second_log
    redone = [int(m.group(1)) for m in STEP_LINE.finditer(second_log)]
    assert redone == list(range(saved + 1, 5))  # only the steps after the checkpoint
    assert "evaluating the base model" not in second_log  # the base model's figures were kept too
    # ... and the run's checked split (on S3): the same examples, not checked again
    assert f"dataset: the run's checked split, kept at {layout.prefix}/dataset: train 24, validation 6" in second_log
    assert "Loading SentenceTransformer" in first_log and "Loading SentenceTransformer" not in second_log

    progress = read_progress(layout.progress)
    assert progress.phase == "Succeeded" and progress.step == 4
    assert progress.adapter.uri == f"{out}resume-bot/v1/"
    verify_files(progress.adapter.uri, read_manifest(progress.adapter.uri))

    # Started again after it published: no second version, same answer.
    third = start(job_file, "run-1")
    third_log = third.communicate(timeout=400)[1]
    assert third.returncode == 0 and "already published v1" in third_log
    assert read_manifest(f"{out}resume-bot/v2/") is None


def refused(tmp_path, out, **overrides) -> tuple[int, object]:
    job = FineTuneJob.model_validate(facts_job(write_facts(tmp_path / "facts.jsonl"), out, **overrides))
    code = run_job(job, "run-x")
    return code, read_progress(RunLayout(out, "facts-bot", "run-x").progress)


def test_license_refusal_stops_the_run_with_its_reason(smollm2_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, progress = refused(tmp_path, f"file://{tmp_path}/out", base_model={
        "name": "HuggingFaceTB/SmolLM2-135M-Instruct", "allowedLicenses": ["mit", "bsd-3-clause"]})
    assert code == BAD_INPUT
    assert progress.phase == "Failed" and progress.reason == "LicenseRefused"
    assert "licensed 'apache-2.0', which is not in spec.baseModel.allowedLicenses" in progress.message


def test_qlora_on_cpu_is_refused_not_ignored(smollm2_dir, tmp_path):
    code, progress = refused(tmp_path, f"file://{tmp_path}/out", lora={"quantization": "4bit"})
    assert code == BAD_INPUT
    assert progress.phase == "Failed" and progress.reason == "QuantizationUnsupported"
    assert "4bit (QLoRA) needs a CUDA GPU" in progress.message


def test_sigterm_checkpoints_at_the_next_step_and_exits_for_a_retry(s3_server, smollm2_dir, tmp_path):
    from loraplane.exitcodes import PREEMPTED

    out = s3_server.make_bucket("sigterm")
    # No periodic checkpoint before the end: only SIGTERM can leave one mid-run.
    job = facts_job(write_facts(tmp_path / "facts.jsonl"), out, name="term-bot",
                    training={"batchSize": 4, "maxSteps": 5, "checkpointIntervalSteps": 1000})
    job["spec"]["evaluation"].update({"maxExamples": 2, "maxNewTokens": 8})
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    store = CheckpointStore(RunLayout(out, "term-bot", "run-1").checkpoints)

    first = start(job_file, "run-1")
    seen = []
    for line in first.stderr:  # SIGTERM once the first step is logged, as an eviction would
        seen.append(line)
        if STEP_LINE.search(line):
            first.send_signal(signal.SIGTERM)
            break
    first_log = "".join(seen) + first.communicate(timeout=400)[1]
    assert first.returncode == PREEMPTED, first_log[-3000:]
    assert "SIGTERM: stopping after the current step" in first_log
    saved = store.complete_steps()
    assert len(saved) == 1 and 1 <= saved[0] < 5, saved
    assert max(int(m.group(1)) for m in STEP_LINE.finditer(first_log)) == saved[0]  # no step lost

    second = start(job_file, "run-1")
    second_log = second.communicate(timeout=400)[1]
    assert second.returncode == 0, second_log[-3000:]
    assert f"resuming from checkpoint at step {saved[0]}/5" in second_log
    assert [int(m.group(1)) for m in STEP_LINE.finditer(second_log)] == list(range(saved[0] + 1, 6))
