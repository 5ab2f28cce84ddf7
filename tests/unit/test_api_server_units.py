"""The fine-tuning API's pure parts: request parsing, the FineTuneJob built from a template, the OpenAI views.

Every view is parsed with the official SDK's own models, so a shape the SDK cannot read fails here.
"""

from __future__ import annotations

import pytest
from loraplane_api.errors import InvalidRequest
from loraplane_api.requests import parse_create
from loraplane_api.template import ANN_CANCELLED, Template, build_finetunejob
from loraplane_api.views import checkpoints, events, job_status, to_job
from loraplane_api.wire import JobStatus, page
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

from tests.support.rbac import ResourceAttributes, allowed

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
TEMPLATE = Template.parse(f"""
apiVersion: loraplane.io/v1alpha1
kind: FineTuneJob
spec:
  baseModel: {{name: {SMOLLM2}}}
  dataset: {{validationSplit: 0.2, uri: s3://not/used.jsonl}}
  training: {{learningRate: 2.0e-4, epochs: 3}}
  resources: {{gpus: 4}}
  output: {{uri: s3://adapters/}}
""", None, "test template")
FILE = "file-" + "a" * 24


def made(body: dict | None = None, **kw) -> tuple[dict, object]:
    req = parse_create({"model": SMOLLM2, "training_file": FILE, **(body or {})})
    return build_finetunejob(TEMPLATE, req, namespace="team-a", name="ftjob-abc", training_uri="s3://f/x.jsonl",
                             validation_uri=kw.get("validation_uri"), requested_by="alice")


def test_template_and_request_make_a_valid_finetunejob():
    job, hp = made({"hyperparameters": {"n_epochs": 1, "learning_rate_multiplier": 2}, "seed": 3})
    spec = job["spec"]
    assert spec["dataset"]["uri"] == "s3://f/x.jsonl" and spec["resources"]["gpus"] == 4
    assert spec["training"]["epochs"] == 1 and spec["training"]["learningRate"] == pytest.approx(4.0e-4)
    assert spec["training"]["seed"] == 3 and spec["suspend"] is False
    assert hp.n_epochs == 1 and hp.batch_size == 4  # batch size from the API types' default
    assert job["metadata"]["labels"] == {"loraplane.io/created-by": "openai-api"}


def test_auto_keeps_the_template():
    job, hp = made({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": "auto"}}}})
    assert job["spec"]["training"]["epochs"] == 3 and hp.learning_rate_multiplier == 1.0


def test_a_request_that_breaks_the_api_types_names_the_field():
    with pytest.raises(InvalidRequest) as err:
        made({"hyperparameters": {"batch_size": 5000}})
    assert "spec.training.batch_size" in err.value.message or "spec.training.batchSize" in err.value.message


@pytest.mark.parametrize("body, param", [
    ({"method": {"type": "dpo"}}, "method.type"),
    ({"hyperparameters": {"n_epochs": 1}, "method": {"type": "supervised"}}, "hyperparameters"),
    ({"hyperparameters": {"n_epochs": "many"}}, "hyperparameters.n_epochs"),
    ({"seed": -1}, "seed"),
    ({"suffix": "x" * 41}, "suffix"),
    ({"metadata": {"k": "v" * 513}}, "metadata"),
    ({"unknown": 1}, "unknown"),
])
def test_bad_requests_name_the_param(body, param):
    with pytest.raises(InvalidRequest) as err:
        parse_create({"model": SMOLLM2, "training_file": FILE, **body})
    assert err.value.param == param


def test_only_offered_models():
    with pytest.raises(InvalidRequest) as err:
        TEMPLATE.base_model("gpt-4o-mini")
    assert err.value.param == "model" and SMOLLM2 in err.value.message


def ftj(phase: str | None, *, generation: int = 1, observed: int = 1, adapter: dict | None = None,
        annotations: dict | None = None, **status) -> dict:
    job, _ = made()
    job["metadata"].update(uid="u1", generation=generation, creationTimestamp="2026-12-01T10:00:00Z")
    job["metadata"]["annotations"].update(annotations or {})
    if phase:
        job["status"] = {"phase": phase, "observedGeneration": observed, **status}
        if adapter:
            job["status"]["adapter"] = adapter
            job["status"]["versions"] = [adapter]
    return job


ACCEPTED = {"version": "v1", "uri": "s3://adapters/ftjob-abc/v1", "verdict": "accepted",
            "publishedAt": "2026-12-01T10:05:00Z"}


@pytest.mark.parametrize("phase, expected", [
    (None, JobStatus.QUEUED), ("Pending", JobStatus.QUEUED), ("Validating", JobStatus.VALIDATING_FILES),
    ("Training", JobStatus.RUNNING), ("Evaluating", JobStatus.RUNNING), ("Succeeded", JobStatus.SUCCEEDED),
    ("Failed", JobStatus.FAILED), ("Suspended", JobStatus.QUEUED),
])
def test_status_mapping(phase, expected):
    assert job_status(ftj(phase)) == expected
    FineTuningJob.model_validate(to_job(ftj(phase)).to_json())


def test_cancelled_and_finished_are_told_apart():
    assert job_status(ftj("Suspended", annotations={ANN_CANCELLED: "2026-12-01T10:01:00Z"})) == JobStatus.CANCELLED
    assert job_status(ftj("Succeeded", annotations={ANN_CANCELLED: "2026-12-01T10:01:00Z"})) == JobStatus.SUCCEEDED


def test_succeeded_job_names_its_model_and_failed_one_its_error():
    ok = to_job(ftj("Succeeded", adapter=ACCEPTED, completionTime="2026-12-01T10:06:00Z"))
    assert ok.fine_tuned_model == "ftjob-abc-v1" and ok.finished_at == ok.created_at + 360
    rejected = to_job(ftj("Succeeded", adapter={**ACCEPTED, "verdict": "rejected"}))
    assert rejected.fine_tuned_model is None
    failed = to_job(ftj("Failed", message="3 check(s) failed: malformed (lines 2, 5)",
                        conditions=[{"type": "Ready", "status": "False", "reason": "DatasetInvalid"}]))
    assert failed.error.code == "DatasetInvalid" and failed.error.param == "training_file"
    assert "lines 2, 5" in failed.error.message
    FineTuningJob.model_validate(failed.to_json())


def test_events_newest_first_with_stable_ids():
    obj = ftj("Succeeded", adapter=ACCEPTED, completionTime="2026-12-01T10:06:00Z",
              progress={"step": 4, "totalSteps": 4, "epoch": 1.0, "totalEpochs": 1, "trainLoss": 1.5,
                        "evalLoss": 1.7, "updatedAt": "2026-12-01T10:04:00Z"},
              dataset={"examples": 30, "train": 24, "validation": 6, "warnings": 0},
              metrics={"perplexityBefore": 9.0, "perplexityAfter": 3.0, "exactMatchBefore": 0.0,
                       "exactMatchAfter": 0.5},
              conditions=[{"type": "DatasetValid", "status": "True", "lastTransitionTime": "2026-12-01T10:02:00Z"},
                          {"type": "QualityGatePassed", "status": "True", "message": "adapter v1 accepted",
                           "lastTransitionTime": "2026-12-01T10:05:30Z"}])
    k8s = [{"metadata": {"uid": "e1"}, "reason": "Training", "message": "step 2/4", "type": "Normal",
            "lastTimestamp": "2026-12-01T10:03:00Z"}]
    out = events(obj, k8s)
    for e in out:
        FineTuningJobEvent.model_validate(e.to_json())
    assert [e.created_at for e in out] == sorted((e.created_at for e in out), reverse=True)
    assert out[0].message == "The job has successfully completed: ftjob-abc-v1"
    assert out[-1].message == "Created fine-tuning job: ftjob-abc"
    assert len({e.id for e in out}) == len(out) and [e.id for e in events(obj, k8s)] == [e.id for e in out]
    metrics = next(e for e in out if e.type == "metrics" and "step" in (e.data or {}))
    assert metrics.message == "Step 4/4, epoch 1/1, training loss=1.5000, validation loss=1.7000"
    obj["status"]["progress"].update(epoch=1.333, totalEpochs=None)
    assert "Step 4/4, epoch 1.333, training" in next(e for e in events(obj, k8s) if e.type == "metrics" and e.data and "step" in e.data).message
    (ckpt,) = checkpoints(obj)
    FineTuningJobCheckpoint.model_validate(ckpt.to_json())
    assert ckpt.fine_tuned_model_checkpoint == "ftjob-abc-v1" and ckpt.step_number == 4


def test_page_cursor():
    class Item:
        def __init__(self, i):
            self.id = f"i{i}"

    items = [Item(i) for i in range(5)]
    first = page(items, after=None, limit=2)
    assert [i.id for i in first.data] == ["i0", "i1"] and first.has_more
    last = page(items, after="i3", limit=2)
    assert [i.id for i in last.data] == ["i4"] and not last.has_more
    assert page(items, after="gone", limit=2).data == []


def rbac_objects():
    return [
        {"kind": "ClusterRole", "metadata": {"name": "editor"},
         "rules": [{"apiGroups": ["loraplane.io"], "resources": ["finetunejobs"], "verbs": ["get", "create"]}]},
        {"kind": "Role", "metadata": {"name": "one", "namespace": "b"},
         "rules": [{"apiGroups": ["loraplane.io"], "resources": ["finetunejobs"], "verbs": ["*"],
                    "resourceNames": ["only-this"]}]},
        {"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "a"},
         "roleRef": {"kind": "ClusterRole", "name": "editor"},
         "subjects": [{"kind": "ServiceAccount", "name": "alice"}]},
        {"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "b"},
         "roleRef": {"kind": "Role", "name": "one"}, "subjects": [{"kind": "Group", "name": "team"}]},
    ]


@pytest.mark.parametrize("user, groups, attrs, expected", [
    ("system:serviceaccount:a:alice", [], ("a", "create", "loraplane.io", "finetunejobs"), True),
    ("system:serviceaccount:a:alice", [], ("a", "delete", "loraplane.io", "finetunejobs"), False),
    ("system:serviceaccount:a:alice", [], ("b", "get", "loraplane.io", "finetunejobs"), False),
    ("system:serviceaccount:b:alice", [], ("a", "get", "loraplane.io", "finetunejobs"), False),
    ("system:serviceaccount:a:alice", [], ("a", "get", "", "secrets"), False),
    ("bob", ["team"], ("b", "delete", "loraplane.io", "finetunejobs", "", "only-this"), True),
    ("bob", ["team"], ("b", "list", "loraplane.io", "finetunejobs"), False),
])
def test_emulated_rbac(user, groups, attrs, expected):
    assert allowed(rbac_objects(), user, groups, ResourceAttributes(*attrs))[0] is expected
