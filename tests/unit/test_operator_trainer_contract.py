"""The training Job's command and files are what the trainer's entrypoint accepts."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from loraplane.api import FineTuneJob
from loraplane.api.finetunejob import RunStatus
from loraplane.builders.training_job import JOB_DIR, JOB_FILE, job_config_map, training_job
from loraplane.config import OperatorConfig

ROOT = Path(__file__).resolve().parents[2]


def test_trainer_loads_the_job_document_and_command(tmp_path):
    from loraplane_trainer.training.cli import load_job, run_command

    obj = FineTuneJob.model_validate(yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())).to_wire()
    obj["metadata"].update(uid="u-1", generation=4)
    ftj = FineTuneJob.model_validate(obj)
    run = RunStatus(generation=4, spec_hash="h", run_id="u-1-4", job_name="support-bot-train-4")
    cm = job_config_map(ftj, run)
    path = tmp_path / JOB_FILE
    path.write_text(cm["data"][JOB_FILE])
    job = load_job(path)
    assert job.metadata.uid == "u-1" and job.metadata.generation == 4
    assert job.spec == FineTuneJob.model_validate(obj).spec

    command = training_job(ftj, run, OperatorConfig())["spec"]["template"]["spec"][
        "containers"][0]["command"]
    assert command[:4] == ["python", "-m", "loraplane_trainer", run_command.name]
    params = {p.opts[0]: p for p in run_command.params if hasattr(p, "opts")}
    assert "--job" in params and "--run-id" in params
    assert command[command.index("--job") + 1] == f"{JOB_DIR}/{JOB_FILE}"
    assert json.loads(cm["data"][JOB_FILE])["kind"] == "FineTuneJob"
