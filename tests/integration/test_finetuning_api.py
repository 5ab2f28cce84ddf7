"""The fine-tuning API with the official openai SDK as the client: files, jobs, tenancy and RBAC.

The real API server (loraplane_api) in front of the API-server emulator, which answers TokenReview and
SubjectAccessReview from its RBAC objects; files in moto's S3. No training here (tests/e2e does that).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import openai
import pytest

from tests.support.finetuning_api import finetuning_api  # noqa: F401  (module fixture)

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
API = "loraplane.io/v1alpha1"


def template(output: str) -> dict:
    """What a platform team puts in a namespace: everything but the data."""
    return {"apiVersion": API, "kind": "FineTuneJob", "spec": {
        "baseModel": {"name": SMOLLM2, "allowedLicenses": ["apache-2.0"]},
        "dataset": {"validationSplit": 0.2, "checks": {"minExamples": 10, "recommendedExamples": 10}},
        "training": {"learningRate": 1.0e-3, "epochs": 3, "batchSize": 8},
        "evaluation": {"gates": {"maxPerplexity": 50}},
        "resources": {"gpus": 2, "gpuType": "nvidia-l4", "queue": "team-a"},
        "output": {"uri": output, "credentialsSecretRef": {"name": "s3"}},
    }}


@pytest.fixture(scope="module")
def tenants(cluster, s3_server, finetuning_api):  # noqa: F811
    output = s3_server.make_bucket("api-adapters")
    for ns in ("team-a", "team-b"):
        finetuning_api.set_template(ns, template(output))
    return {
        "alice": finetuning_api.client(finetuning_api.grant("team-a", "alice"), "team-a"),
        "bob": finetuning_api.client(finetuning_api.grant("team-b", "bob"), "team-b"),
        "deployer": finetuning_api.client(finetuning_api.grant("team-a", "deployer", "finetune-deployer"), "team-a"),
        "viewer": finetuning_api.client(finetuning_api.grant("team-a", "viewer", "finetune-viewer"), "team-a"),
        "nobody": finetuning_api.client(finetuning_api.grant("team-a", "nobody", None), "team-a"),
        # alice's token, asking for team-b where she has no binding
        "alice-in-b": finetuning_api.client(finetuning_api.token("team-a", "alice"), "team-b"),
    }


def support_file() -> tuple[str, bytes]:
    return ("support.jsonl", (ROOT / "examples" / "data" / "support.jsonl").read_bytes())


def test_files_round_trip(tenants):
    alice = tenants["alice"]
    f = alice.files.create(file=support_file(), purpose="fine-tune")
    assert f.id.startswith("file-") and f.object == "file" and f.purpose == "fine-tune" and f.status == "processed"
    assert f.filename == "support.jsonl" and f.bytes == len(support_file()[1])
    assert "522 examples" in f.status_details
    assert alice.files.retrieve(f.id) == f
    assert alice.files.content(f.id).content == support_file()[1]
    assert f.id in [x.id for x in alice.files.list()]
    deleted = alice.files.delete(f.id)
    assert deleted.id == f.id and deleted.deleted is True
    assert f.id not in [x.id for x in alice.files.list()]
    with pytest.raises(openai.NotFoundError):
        alice.files.retrieve(f.id)


def test_a_bad_file_is_refused_at_upload_naming_the_lines(tenants):
    bad = (ROOT / "examples" / "data" / "bad" / "malformed.jsonl").read_bytes()
    with pytest.raises(openai.BadRequestError) as err:
        tenants["alice"].files.create(file=("malformed.jsonl", bad), purpose="fine-tune")
    assert err.value.param == "file" and err.value.code == "invalid_file"
    assert "malformed.jsonl" in err.value.message and "lines 5, 12, 20, 33" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        tenants["alice"].files.create(file=("x.jsonl", io.BytesIO(b"ok")), purpose="batch")
    assert err.value.param == "purpose"


def test_job_is_made_from_the_namespace_template(cluster, tenants):
    alice = tenants["alice"]
    f = alice.files.create(file=support_file(), purpose="fine-tune")
    job = alice.fine_tuning.jobs.create(
        model=SMOLLM2, training_file=f.id, suffix="support", seed=7, metadata={"ticket": "ML-42"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2,
                                                                         "learning_rate_multiplier": 0.5}}})
    assert job.object == "fine_tuning.job" and job.id.startswith("ftjob-support-")
    assert job.status == "queued" and job.model == SMOLLM2 and job.training_file == f.id
    assert job.organization_id == "team-a" and job.seed == 7 and job.metadata == {"ticket": "ML-42"}
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 8
    assert job.fine_tuned_model is None and job.error is None
    ftj = cluster.get(API, "FineTuneJob", "team-a", job.id)
    spec = ftj["spec"]
    # The platform team's choices stay; the caller's few parameters apply.
    assert spec["resources"]["gpus"] == 2 and spec["resources"]["queue"] == "team-a"
    assert spec["output"]["credentialsSecretRef"] == {"name": "s3"}
    assert spec["evaluation"]["gates"]["maxPerplexity"] == 50
    assert spec["training"]["epochs"] == 2 and spec["training"]["learningRate"] == pytest.approx(5.0e-4)
    assert spec["training"]["seed"] == 7 and spec["dataset"]["seed"] == 7
    assert spec["dataset"]["uri"].endswith(f"/team-a/{f.id}.jsonl")
    assert ftj["metadata"]["annotations"]["loraplane.io/requested-by"] == "system:serviceaccount:team-a:alice"
    assert alice.fine_tuning.jobs.retrieve(job.id).id == job.id


def test_list_paginates_with_after(tenants):
    alice = tenants["alice"]
    f = alice.files.create(file=support_file(), purpose="fine-tune")
    made = [alice.fine_tuning.jobs.create(model=SMOLLM2, training_file=f.id).id for _ in range(3)]
    first = alice.fine_tuning.jobs.list(limit=2)
    assert len(first.data) == 2 and first.has_more is True
    second = alice.fine_tuning.jobs.list(limit=2, after=first.data[-1].id)
    assert first.data[-1].id not in [j.id for j in second.data]
    everything = [j.id for j in alice.fine_tuning.jobs.list(limit=1)]  # the SDK follows `after` page by page
    assert set(made) <= set(everything) and len(everything) == len(set(everything))


def test_cancel(cluster, tenants):
    alice = tenants["alice"]
    f = alice.files.create(file=support_file(), purpose="fine-tune")
    job = alice.fine_tuning.jobs.create(model=SMOLLM2, training_file=f.id)
    cancelled = alice.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert cluster.get(API, "FineTuneJob", "team-a", job.id)["spec"]["suspend"] is True
    assert alice.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert [e.message for e in alice.fine_tuning.jobs.list_events(job.id)][0] == "The job was cancelled"
    with pytest.raises(openai.BadRequestError) as err:
        alice.fine_tuning.jobs.cancel(job.id)
    assert err.value.code == "job_finished"


@pytest.mark.parametrize("body, param", [
    ({"method": {"type": "dpo", "dpo": {}}}, "method.type"),
    ({"method": {"type": "reinforcement"}}, "method.type"),
    ({"hyperparameters": {"n_epochs": 2, "warmup": 3}}, "hyperparameters.warmup"),
    ({"integrations": [{"type": "wandb", "wandb": {"project": "p"}}]}, "integrations"),
    ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
    ({"suffix": "Not A Label"}, "suffix"),
    ({"model": "gpt-4o-mini"}, "model"),
])
def test_unsupported_requests_get_a_clear_400(tenants, body, param):
    alice = tenants["alice"]
    f = alice.files.create(file=support_file(), purpose="fine-tune")
    args = {"model": SMOLLM2, "training_file": f.id, **body}
    with pytest.raises(openai.BadRequestError) as err:
        alice.fine_tuning.jobs.create(**args)
    assert err.value.param == param, err.value.message


def test_unknown_parameter_is_refused(tenants):
    alice = tenants["alice"]
    f = alice.files.create(file=support_file(), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as err:
        alice.fine_tuning.jobs.create(model=SMOLLM2, training_file=f.id, extra_body={"prompt_loss_weight": 0.1})
    assert err.value.param == "prompt_loss_weight" and err.value.code == "unsupported_parameter"


def test_unknown_file_is_refused(tenants):
    with pytest.raises(openai.BadRequestError) as err:
        tenants["alice"].fine_tuning.jobs.create(model=SMOLLM2, training_file="file-" + "0" * 24)
    assert err.value.param == "training_file"
    with pytest.raises(openai.BadRequestError) as err:
        tenants["alice"].fine_tuning.jobs.create(model=SMOLLM2, training_file="../team-b/secret")
    assert err.value.param == "training_file"


def test_one_namespace_never_sees_another(cluster, tenants):
    alice, bob = tenants["alice"], tenants["bob"]
    bobs_file = bob.files.create(file=support_file(), purpose="fine-tune")
    bobs_job = bob.fine_tuning.jobs.create(model=SMOLLM2, training_file=bobs_file.id)
    assert bobs_file.id not in [f.id for f in alice.files.list()]
    assert bobs_job.id not in [j.id for j in alice.fine_tuning.jobs.list()]
    with pytest.raises(openai.NotFoundError):
        alice.files.retrieve(bobs_file.id)
    with pytest.raises(openai.NotFoundError):
        alice.files.content(bobs_file.id)
    with pytest.raises(openai.NotFoundError):
        alice.fine_tuning.jobs.retrieve(bobs_job.id)
    with pytest.raises(openai.NotFoundError):
        alice.fine_tuning.jobs.cancel(bobs_job.id)
    with pytest.raises(openai.BadRequestError) as err:  # another namespace's file
        alice.fine_tuning.jobs.create(model=SMOLLM2, training_file=bobs_file.id)
    assert err.value.param == "training_file"
    with pytest.raises(openai.PermissionDeniedError):  # naming the other namespace does not help
        tenants["alice-in-b"].files.list()
    with pytest.raises(openai.PermissionDeniedError):
        tenants["alice-in-b"].fine_tuning.jobs.retrieve(bobs_job.id)
    assert cluster.get(API, "FineTuneJob", "team-b", bobs_job.id)["spec"].get("suspend") is False


def test_rbac(finetuning_api, tenants):  # noqa: F811
    for call in (lambda c: c.files.list(), lambda c: c.fine_tuning.jobs.list(),
                 lambda c: c.files.create(file=support_file(), purpose="fine-tune")):
        with pytest.raises(openai.PermissionDeniedError) as err:
            call(tenants["nobody"])
        assert "system:serviceaccount:team-a:nobody may not" in err.value.message
    viewer = tenants["viewer"]
    assert isinstance(viewer.fine_tuning.jobs.list().data, list)
    with pytest.raises(openai.PermissionDeniedError):
        viewer.files.create(file=support_file(), purpose="fine-tune")
    with pytest.raises(openai.AuthenticationError):
        finetuning_api.client("not-a-token", "team-a").files.list()


def test_error_bodies_are_openai_shaped(finetuning_api, tenants):  # noqa: F811
    import httpx

    token = finetuning_api.token("team-a", "alice")
    r = httpx.post(f"{finetuning_api.url}/fine_tuning/jobs", headers={"Authorization": f"Bearer {token}"},
                   json={"model": SMOLLM2, "training_file": "file-" + "0" * 24, "method": {"type": "dpo"}})
    assert r.status_code == 400
    assert json.loads(r.text) == {"error": {
        "message": "method 'dpo' is not supported here: only 'supervised' (LoRA SFT) is",
        "type": "invalid_request_error", "param": "method.type", "code": "unsupported_method"}}


def _chatbot(cluster, name: str, **spec) -> dict:
    return cluster.create({"apiVersion": API, "kind": "ChatbotDeployment", "metadata": {"name": name, "namespace": "team-a"},
                           "spec": {"baseModel": {"name": SMOLLM2},
                                    "adapters": [{"name": "v0", "uri": "s3://adapters/support/v0/"}], **spec}})


def test_a_job_can_hand_its_adapter_to_a_chatbots_canary(cluster, tenants):
    _chatbot(cluster, "support-bot", rollout={"autoCanary": True, "steps": [50, 100]})
    _chatbot(cluster, "static-bot", rollout={"autoCanary": True, "steps": [50, 100]}, traffic=[{"adapter": "v0", "weight": 100}])
    _chatbot(cluster, "manual-bot")
    deployer = tenants["deployer"]
    f = deployer.files.create(file=support_file(), purpose="fine-tune")
    job = deployer.fine_tuning.jobs.create(model=SMOLLM2, training_file=f.id,
                                           metadata={"chatbot_deployment": "support-bot"})
    adapters = cluster.get(API, "ChatbotDeployment", "team-a", "support-bot")["spec"]["adapters"]
    # The entry follows the job: its v1 becomes variant <job id>-v1, the job's fine_tuned_model.
    assert adapters[-1] == {"name": job.id, "fineTuneJobRef": {"name": job.id}}
    for chatbot, why in [("static-bot", "static spec.traffic"), ("manual-bot", "rollout.autoCanary"),
                         ("nowhere-bot", "no ChatbotDeployment")]:
        with pytest.raises(openai.BadRequestError) as err:
            deployer.fine_tuning.jobs.create(model=SMOLLM2, training_file=f.id, metadata={"chatbot_deployment": chatbot})
        assert err.value.param == "metadata.chatbot_deployment" and why in err.value.message
    # Creating FineTuneJobs is not enough: handing one to a chatbot needs patch on chatbotdeployments.
    with pytest.raises(openai.PermissionDeniedError) as err:
        tenants["alice"].fine_tuning.jobs.create(model=SMOLLM2, training_file=tenants["alice"].files.create(
            file=support_file(), purpose="fine-tune").id, metadata={"chatbot_deployment": "support-bot"})
    assert "chatbotdeployments" in err.value.message
    assert len(cluster.get(API, "ChatbotDeployment", "team-a", "support-bot")["spec"]["adapters"]) == 2


def test_loraplane_api_runs_as_a_process(cluster, s3_server, finetuning_api, tmp_path):  # noqa: F811
    """`loraplane api`, as the image runs it: flags, its own process, the same answers; and the upload limit."""
    import subprocess
    import sys
    import time

    import httpx

    from tests.support.operator_fixtures import free_port

    port = free_port()
    (tmp_path / "template.yaml").write_text(json.dumps(template(s3_server.make_bucket("proc-adapters"))))
    proc = subprocess.Popen([sys.executable, "-m", "loraplane.cli", "api", "--api-server", cluster.url, "--port",
                             str(port), "--files-uri", s3_server.make_bucket("proc-files"), "--max-upload-mb", "1",
                             "--template", str(tmp_path / "template.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
            time.sleep(0.3)
        from openai import OpenAI

        token = finetuning_api.grant("team-c", "carol")  # no template ConfigMap here: the server's applies
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token, max_retries=0,
                        _strict_response_validation=True)  # namespace: the service account's own
        f = client.files.create(file=support_file(), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(model=SMOLLM2, training_file=f.id)
        assert job.organization_id == "team-c"
        assert cluster.get(API, "FineTuneJob", "team-c", job.id)["spec"]["resources"]["gpus"] == 2
        with pytest.raises(openai.APIStatusError) as err:
            client.files.create(file=("big.jsonl", b"{}\n" * 400_000), purpose="fine-tune")
        assert err.value.status_code == 413 and err.value.param == "file"
    finally:
        proc.terminate()
        proc.wait(10)


def test_validation_file_and_file_pagination(cluster, tenants):
    alice = tenants["alice"]
    train = alice.files.create(file=support_file(), purpose="fine-tune")
    held_out = alice.files.create(file=("held-out.jsonl", support_file()[1][:3000].rsplit(b"\n", 1)[0] + b"\n"),
                                  purpose="fine-tune")  # fewer examples than minExamples: fine for a validation file
    job = alice.fine_tuning.jobs.create(model=SMOLLM2, training_file=train.id, validation_file=held_out.id)
    assert job.validation_file == held_out.id
    dataset = cluster.get(API, "FineTuneJob", "team-a", job.id)["spec"]["dataset"]
    assert dataset["validationUri"].endswith(f"/team-a/{held_out.id}.jsonl")
    with pytest.raises(openai.BadRequestError) as err:
        alice.fine_tuning.jobs.create(model=SMOLLM2, training_file=train.id, validation_file="file-" + "1" * 24)
    assert err.value.param == "validation_file"
    first = alice.files.list(limit=1)
    assert len(first.data) == 1 and first.has_more
    assert len({f.id for f in alice.files.list(limit=1)}) == len(alice.files.list().data)  # every page followed


def test_a_body_that_is_not_json_is_a_400(finetuning_api, tenants):  # noqa: F811
    import httpx

    token = finetuning_api.token("team-a", "alice")
    r = httpx.post(f"{finetuning_api.url}/fine_tuning/jobs", content=b"{not json",
                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(f"{finetuning_api.url}/fine_tuning/jobs?limit=0", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
