"""Several processes in one pod: the real trainer started with --nproc-per-node 2 (torch's elastic launcher,
what torchrun runs) on CPU with the gloo backend; CPU stands in for the GPUs (nccl) this machine lacks."""

from __future__ import annotations

import contextlib
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


def test_two_nodes_rendezvous_train_like_one_process_and_publish_once(smollm2_dir, tmp_path):
    """Two launchers, as two pods of a JobSet would run them: --nnodes 2, c10d rendezvous hosted by node 0
    (on localhost, gloo). Their losses match a one-process run of the same data within 2 %: the update is
    the same (DDP averages, each rank's loss is its share of the step's mean); only float summation order
    and bf16 rounding differ."""
    import socket

    out = f"file://{tmp_path}/out/"
    job = facts_job(write_facts(tmp_path / "facts.jsonl"), out, name="nodes-bot",
                    training={"batchSize": 4, "gradientAccumulation": 2, "maxSteps": 2})
    job["spec"]["evaluation"].update({"maxExamples": 2, "maxNewTokens": 8})
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "loraplane_trainer", "run", "--job", str(job_file), "--run-id", "run-n",
         "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint", f"127.0.0.1:{port}"],
        env={**env, "JOB_COMPLETION_INDEX": str(index)}, stderr=subprocess.PIPE, text=True) for index in (0, 1)]
    logs = [p.communicate(timeout=600)[1] for p in nodes]
    for p, log in zip(nodes, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    both = "".join(logs)
    assert "rank 0 of 2 joined (gloo)" in both and "rank 1 of 2 joined (gloo)" in both
    assert both.count("accepted v1") == 1  # rank 0 alone published
    assert read_manifest(f"{out}nodes-bot/v1/") is not None and read_manifest(f"{out}nodes-bot/v2/") is None
    two = json.loads((tmp_path / "out/nodes-bot/v1/metrics.json").read_text())["history"]

    single = subprocess.run([sys.executable, "-m", "loraplane_trainer", "run", "--job", str(job_file),
                             "--run-id", "run-1", "--output", f"file://{tmp_path}/one/"],
                            env=env, stderr=subprocess.PIPE, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-4000:]
    one = json.loads((tmp_path / "one/nodes-bot/v1/metrics.json").read_text())["history"]
    assert [h["step"] for h in two] == [h["step"] for h in one] == [1, 2]
    for a, b in zip(two, one, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 0.02 * abs(b["loss"]), (two, one)


def _nodes(job_file, run_id: str, port: int, env: dict) -> list[subprocess.Popen]:
    return [subprocess.Popen(
        [sys.executable, "-m", "loraplane_trainer", "run", "--job", str(job_file), "--run-id", run_id,
         "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint", f"127.0.0.1:{port}"],
        env={**env, "JOB_COMPLETION_INDEX": str(index)}, stderr=subprocess.PIPE, text=True,
        start_new_session=True) for index in (0, 1)]


def _kill_pod(pid: int) -> None:
    """SIGKILL a launcher and every process under it, as losing its pod does (the elastic agent starts its
    workers in their own sessions, so killing the launcher's process group is not enough)."""
    import signal
    from pathlib import Path

    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def test_losing_a_node_mid_run_resumes_from_the_last_checkpoint(smollm2_dir, tmp_path):
    """What a JobSet does when a node is lost: the set fails, is recreated, and every node starts again
    with the same run id. The run resumes from its newest checkpoint and loses at most one interval."""
    import socket
    import time

    out = f"file://{tmp_path}/out/"
    interval = 2
    job = facts_job(write_facts(tmp_path / "facts.jsonl"), out, name="lost-bot",
                    training={"batchSize": 2, "gradientAccumulation": 1, "maxSteps": 8,
                              "checkpointIntervalSteps": interval})
    job["spec"]["evaluation"].update({"maxExamples": 2, "maxNewTokens": 8})
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    first = _nodes(job_file, "run-l", free_port(), env)
    killed_at = None
    for line in first[0].stderr:  # node 0's log, until a step past the first checkpoint
        m = STEP_LINE.search(line)
        if m and int(m.group(2)) >= interval + 1:
            killed_at = int(m.group(2))
            _kill_pod(first[1].pid)  # node 1 is lost: its launcher and its worker
            break
    assert killed_at is not None and killed_at < 8
    # Node 1's child Job fails, so JobSet restarts the set: it deletes node 0's pod as well.
    time.sleep(2)
    _kill_pod(first[0].pid)
    rest = first[0].stderr.read()
    first[0].wait(timeout=60)
    last_step = max([killed_at, *(int(m[1]) for m in STEP_LINE.findall(rest))])  # where the run really got to
    first[1].wait(timeout=60)

    again = _nodes(job_file, "run-l", free_port(), env)
    logs = [p.communicate(timeout=600)[1] for p in again]
    for p, log in zip(again, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    resumed = [int(s) for s in re.findall(r"resuming from checkpoint at step (\d+)/8", "".join(logs))]
    assert len(resumed) == 2 and resumed[0] == resumed[1], (killed_at, rest[-3000:], logs[0][-3000:])
    assert last_step - interval <= resumed[0] <= last_step  # at most one checkpoint interval lost
    assert read_progress(RunLayout(out, "lost-bot", "run-l").progress).step == 8
    assert read_manifest(f"{out}lost-bot/v1/") is not None and read_manifest(f"{out}lost-bot/v2/") is None


def test_fsdp_two_ranks_train_evaluate_together_and_resume(smollm2_dir, tmp_path):
    """FSDP2 (fully_shard) on two CPU ranks with gloo: the model is sharded, every rank takes part in the
    validation loss and the final evaluation (each forward needs all shards), rank 0 alone writes; the
    checkpoints hold the gathered LoRA weights and optimizer state, and a longer run resumes from them."""
    out = f"file://{tmp_path}/out/"
    job = facts_job(write_facts(tmp_path / "facts.jsonl"), out, name="fsdp-bot",
                    training={"batchSize": 4, "gradientAccumulation": 1, "maxSteps": 2,
                              "checkpointIntervalSteps": 1})
    job["spec"]["evaluation"].update({"maxExamples": 2, "maxNewTokens": 8})
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
