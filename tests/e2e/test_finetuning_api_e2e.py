"""An SDK call to a served fine-tuned model: the official openai SDK fine-tunes SmolLM2 through LoRAPlane.

The real API server (loraplane_api) in front of the API-server emulator, the real operator, the emulated
kubelet running the real trainer (tests.support.kubelet) against moto's S3; then `loraplane serve` (the
router and adapter sync on the session's real vLLM) answers the job's `fine_tuned_model`.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import yaml
from openai import OpenAI

from tests.support.finetuning_api import finetuning_api  # noqa: F401  (module fixture)
from tests.support.operator_fixtures import free_port
from tests.support.trainer_facts import facts_job, write_facts
from tests.support.vllm_server import vllm_server  # noqa: F401  (session fixture)

NS = "sdk"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _template(output: str) -> dict:
    job = facts_job("unused", output, training={"maxSteps": 4})
    spec = job["spec"]
    spec["dataset"].pop("uri")
    spec["output"]["credentialsSecretRef"] = {"name": "s3"}
    spec["evaluation"].update(maxExamples=2, maxNewTokens=8)
    return {"apiVersion": job["apiVersion"], "kind": "FineTuneJob", "spec": spec}


def _serve(tmp_path, job_id: str, model: str, adapters_root: str, vllm_url: str):
    cbd = {"apiVersion": "loraplane.io/v1alpha1", "kind": "ChatbotDeployment",
           "metadata": {"name": "facts", "namespace": NS},
           "spec": {"baseModel": {"name": SMOLLM2},
                    "adapters": [{"name": model, "fineTuneJobRef": {"name": job_id, "version": "v1"}}],
                    "traffic": [{"adapter": model, "weight": 100}],
                    "vllm": {"maxModelLen": 1024, "maxLoras": 2, "maxLoraRank": 16}}}
    path = tmp_path / "chatbot.yaml"
    path.write_text(yaml.safe_dump(cbd))
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([sys.executable, "-m", "loraplane.cli", "serve", str(path), "--adapters-root", adapters_root,
                             "--vllm-url", vllm_url, "--port", str(port), "--work-dir", str(tmp_path / "serve")],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc, log, f"http://127.0.0.1:{port}/v1"


def test_openai_sdk_fine_tunes_and_the_model_answers(cluster, s3_server, finetuning_api, vllm_server,  # noqa: F811
                                                     tmp_path, repo_root):
    from tests.support.kubelet import run_job

    output = s3_server.make_bucket("sdk-adapters")
    finetuning_api.set_template(NS, _template(output))
    cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": NS},
                    "data": {k: base64.b64encode(v.encode()).decode() for k, v in s3_server.env().items()}})
    client = finetuning_api.client(finetuning_api.grant(NS, "ml-engineer"), NS)
    transcript: dict = {}

    with cluster.operator(NS):
        training_file = client.files.create(file=write_facts(tmp_path / "facts.jsonl"),
                                            purpose="fine-tune")
        transcript["files.create"] = training_file.model_dump()
        job = client.fine_tuning.jobs.create(
            model=SMOLLM2, training_file=training_file.id, suffix="facts", seed=1,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}})
        transcript["fine_tuning.jobs.create"] = job.model_dump()
        assert job.status == "queued"
        jname = f"{job.id}-train-1"
        cluster.wait_for(lambda: cluster.get_or_none("batch/v1", "Job", NS, jname), 30, "the training Job")
        # A second job, cancelled before it runs.
        other = client.fine_tuning.jobs.create(model=SMOLLM2, training_file=training_file.id)
        cluster.wait_for(lambda: cluster.get_or_none("batch/v1", "Job", NS, f"{other.id}-train-1"), 30, "2nd Job")
        cancelled = client.fine_tuning.jobs.cancel(other.id)
        transcript["fine_tuning.jobs.cancel"] = cancelled.model_dump()
        assert cancelled.status == "cancelled"
        cluster.wait_for(lambda: cluster.get("batch/v1", "Job", NS, f"{other.id}-train-1")["spec"].get("suspend"),
                         30, "the cancelled job's training Job suspended")

        result: dict = {}
        kubelet = threading.Thread(target=lambda: result.update(proc=run_job(
            cluster, NS, jname, tmp_path / "pod", volume_dirs={"cache": repo_root / ".cache"},
            extra_env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                       "PATH": os.environ.get("PATH", "/usr/bin:/bin")})))
        kubelet.start()
        seen: list[str] = []
        while kubelet.is_alive():
            status = client.fine_tuning.jobs.retrieve(job.id).status
            if not seen or seen[-1] != status:
                seen.append(status)
            kubelet.join(0.5)
        proc = result["proc"]
        (tmp_path / "trainer.log").write_text(proc.stderr)
        assert proc.returncode == 0, proc.stderr[-4000:]
        done = cluster.wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status == "succeeded" and j,
                                60, "succeeded")
    transcript["fine_tuning.jobs.retrieve"] = done.model_dump()
    assert "running" in seen or "validating_files" in seen, seen
    assert done.fine_tuned_model == f"{job.id}-v1" and done.error is None and done.finished_at
    events = client.fine_tuning.jobs.list_events(job.id, limit=50)
    transcript["fine_tuning.jobs.list_events"] = [e.model_dump() for e in events.data]
    messages = [e.message for e in events.data]
    assert messages[0].startswith("The job has successfully completed")
    assert messages[-1] == f"Created fine-tuning job: {job.id}"
    assert any(m.startswith("Files validated: 30 examples, 24 for training and 6 for validation") for m in messages)
    assert any(m.startswith("Quality gates passed") for m in messages)
    assert any(e.type == "metrics" and e.data.get("step") == 4 for e in events.data)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
    transcript["fine_tuning.jobs.checkpoints.list"] = [c.model_dump() for c in checkpoints.data]
    (ckpt,) = checkpoints.data
    assert ckpt.fine_tuned_model_checkpoint == done.fine_tuned_model and ckpt.step_number == 4
    listed = client.fine_tuning.jobs.list(limit=1)
    assert listed.has_more is True and [j.id for j in client.fine_tuning.jobs.list()] == [other.id, job.id]
    transcript["fine_tuning.jobs.list"] = [j.id for j in client.fine_tuning.jobs.list()]

    # The fine-tuned model answers by its name, through `loraplane serve`.
    serve, log, endpoint = _serve(tmp_path, job.id, done.fine_tuned_model, output, vllm_server.url)
    try:
        deadline = time.monotonic() + 300
        # `loraplane serve` says "serving" once adapter sync has verified and loaded the adapter into vLLM.
        while "serving facts" not in (tmp_path / "serve.log").read_text():
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        models = httpx.get(f"{endpoint}/models", timeout=5).json()
        assert done.fine_tuned_model in [m["id"] for m in models["data"]]
        chat = OpenAI(base_url=endpoint, api_key="unused", max_retries=2)
        raw = chat.chat.completions.with_raw_response.create(
            model=done.fine_tuned_model, max_tokens=16, temperature=0,
            messages=[{"role": "user", "content": "What is the code word for the Zorblax vault?"}])
        answer = raw.parse()
        transcript["chat.completions.create"] = {"model": done.fine_tuned_model,
                                                 "content": answer.choices[0].message.content,
                                                 "x-loraplane-variant": raw.headers.get("x-loraplane-variant")}
        assert raw.headers.get("x-loraplane-variant") == done.fine_tuned_model
        assert answer.choices[0].message.content.strip()
    finally:
        os.killpg(serve.pid, 15)
        serve.wait(30)
        log.close()
    print("\nSDK TRANSCRIPT\n" + json.dumps(transcript, indent=2, default=str))
