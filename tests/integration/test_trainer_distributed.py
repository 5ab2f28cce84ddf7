"""Several processes in one pod: the real trainer started with --nproc-per-node 2 (torch's elastic launcher,
what torchrun runs) on CPU with the gloo backend; CPU stands in for the GPUs (nccl) this machine lacks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from loraplane.exitcodes import BAD_INPUT
from loraplane.storage import RunLayout, read_manifest, read_progress, verify_files
from loraplane_trainer.training.checkpoints import CheckpointStore

from tests.support.trainer_facts import facts_job, write_facts

STEP_LINE = re.compile(r"\[rank (\d)\] step (\d+)/(\d+) epoch")


def launch(job_file, run_id, *extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "loraplane_trainer", "run", "--job", str(job_file),
                           "--nproc-per-node", "2", "--run-id", run_id, *extra],
                          env=env, stderr=subprocess.PIPE, text=True, timeout=600)


def test_two_processes_train_and_only_rank_0_publishes(smollm2_dir, tmp_path):
    out = f"file://{tmp_path}/out/"
    job = facts_job(write_facts(tmp_path / "facts.jsonl"), out, name="ddp-bot",
                    training={"batchSize": 4, "gradientAccumulation": 2, "maxSteps": 2,
                              "checkpointIntervalSteps": 1})
    job["spec"]["evaluation"].update({"maxExamples": 2, "maxNewTokens": 8})
    job["spec"]["resources"]["gpus"] = 2
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    proc = launch(job_file, "run-d")
    log = proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # Both ranks joined the gloo group and trained; only rank 0 logged steps, evaluated and published.
    assert "[rank 0] rank 0 of 2 joined (gloo)" in log and "[rank 1] rank 1 of 2 joined (gloo)" in log
    assert "[rank 1] rank 1 of 2: trained 2 steps on its share of the examples" in log
    steps = [(int(r), int(s)) for r, s, _ in STEP_LINE.findall(log)]
    assert sorted(steps) == [(0, 1), (0, 2), (1, 1), (1, 2)]  # the same global step on both ranks
    assert "[rank 1] phase Evaluating" not in log and "[rank 0] phase Publishing" in log
    assert "[rank 1] accepted" not in log and "[rank 0] accepted v1" in log

    layout = RunLayout(out, "ddp-bot", "run-d")
    progress = read_progress(layout.progress)
    assert progress.phase == "Succeeded" and progress.step == 2 and progress.total_steps == 2
    assert CheckpointStore(layout.checkpoints).complete_steps()[-1] == 2
    manifest = read_manifest(f"{out}ddp-bot/v1/")
    assert manifest is not None and manifest.verdict == "accepted"
    verify_files(f"{out}ddp-bot/v1/", manifest)
    assert read_manifest(f"{out}ddp-bot/v2/") is None  # exactly one version
    metrics = json.loads((tmp_path / "out/ddp-bot/v1/metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [1, 2]

    # Resume: with the published version taken away, a longer run of the same id goes on from step 2
    # on both ranks (each loads the same checkpoint) and does not redo steps 1 and 2.
    shutil.rmtree(tmp_path / "out/ddp-bot/v1")
    again = launch(job_file, "run-d", "--max-steps", "3")
    log = again.stderr
    assert again.returncode == 0, log[-4000:]
    for rank in (0, 1):
        assert f"[rank {rank}] resuming from checkpoint at step 2/3" in log
    assert sorted((int(r), int(s)) for r, s, _ in STEP_LINE.findall(log)) == [(0, 3), (1, 3)]
    assert "evaluating the base model" not in log
    assert read_progress(layout.progress).step == 3
    history = json.loads((tmp_path / "out/ddp-bot/v1/metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3]


def test_workers_exit_codes_reach_the_pod(tmp_path):
    """torchrun itself exits 1 when a worker fails; the Job's podFailurePolicy needs 42 (bad input)."""
    job_file = tmp_path / "job.yaml"
    job_file.write_text("metadata: {name: x}\nspec: {baseModel: 3}\n")
    proc = launch(job_file, "run-x")
    assert proc.returncode == BAD_INPUT, proc.stderr[-3000:]
    assert "spec.baseModel" in proc.stderr


# Two nodes (two launchers, --nnodes 2, c10d rendezvous on localhost), their match with a one-process run and
# the loss of a node mid-run are tested through the operator's JobSet: tests/e2e/test_ftj_jobset_e2e.py.


def test_fsdp_two_ranks_train_evaluate_together_and_resume(smollm2_dir, tmp_path):
    """FSDP2 (fully_shard) on two CPU ranks with gloo: the model is sharded, every rank takes part in the
    validation loss and the final evaluation (each forward needs all shards), rank 0 alone writes; the
    checkpoints hold the gathered LoRA weights and optimizer state, and a longer run resumes from them."""
    out = f"file://{tmp_path}/out/"
    job = facts_job(write_facts(tmp_path / "facts.jsonl"), out, name="fsdp-bot",
                    training={"batchSize": 4, "gradientAccumulation": 1, "maxSteps": 2,
                              "checkpointIntervalSteps": 1})
    # Every generated token gathers every layer from both ranks: few answers, no safety probes.
    job["spec"]["evaluation"].update({"maxExamples": 2, "maxNewTokens": 8, "safety": {"enabled": False}})
    job["spec"]["dataset"]["checks"]["harmful"] = "off"
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    proc = launch(job_file, "run-f", "--strategy", "fsdp")
    log = proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "[rank 0] rank 0 of 2 joined (gloo), FSDP" in log and "[rank 1] rank 1 of 2 joined (gloo), FSDP" in log
    assert "[rank 1] rank 1 of 2: trained 2 steps on its shard and took part in the evaluation" in log
    assert "[rank 0] accepted v1" in log and "[rank 1] accepted" not in log
    manifest = read_manifest(f"{out}fsdp-bot/v1/")
    assert manifest is not None and manifest.verdict == "accepted"
    verify_files(f"{out}fsdp-bot/v1/", manifest)
    # The published adapter is whole (gathered from both shards): peft loads it onto the unsharded model.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    tuned = PeftModel.from_pretrained(base, str(tmp_path / "out/fsdp-bot/v1"))
    lora = {n: p for n, p in tuned.named_parameters() if "lora_B" in n}
    assert lora and any(float(p.abs().sum()) > 0 for p in lora.values())  # trained (lora_B starts at zero)

    shutil.rmtree(tmp_path / "out/fsdp-bot/v1")
    again = launch(job_file, "run-f", "--strategy", "fsdp", "--max-steps", "3")
    log = again.stderr
    assert again.returncode == 0, log[-4000:]
    for rank in (0, 1):
        assert f"[rank {rank}] resuming from checkpoint at step 2/3" in log
    assert sorted((int(r), int(s)) for r, s, _ in STEP_LINE.findall(log)) == [(0, 3), (1, 3)]
    history = json.loads((tmp_path / "out/fsdp-bot/v1/metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3]
