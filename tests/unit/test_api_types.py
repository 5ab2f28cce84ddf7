"""API types: defaults, bounds, round-trips, errors that name the field."""

from pathlib import Path

import pytest
import yaml
from loraplane.api import ChatbotDeployment, FineTuneJob
from pydantic import ValidationError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    return yaml.safe_load((EXAMPLES / name).read_text())


def test_finetunejob_defaults_follow_the_recommendations():
    job = FineTuneJob.model_validate(
        {"spec": {"baseModel": {"name": "m"}, "dataset": {"uri": "d.jsonl"}, "output": {"uri": "s3://a/"}}}
    )
    s = job.spec
    assert (s.lora.r, s.lora.alpha, s.lora.dropout) == (8, 32, 0.1)
    assert (s.training.learning_rate, s.training.batch_size, s.training.epochs) == (2e-4, 4, 3)
    assert s.training.max_tokens == 1024
    assert s.dataset.validation_split == 0.15
    assert s.dataset.checks.min_examples == 50


@pytest.mark.parametrize("kind,name", [(FineTuneJob, "finetunejob.yaml"), (ChatbotDeployment, "chatbotdeployment.yaml")])
def test_examples_round_trip(kind, name):
    raw = load(name)
    obj = kind.model_validate(raw)
    again = kind.model_validate(obj.to_wire())
    assert again == obj
    wire = obj.to_wire()
    assert wire["apiVersion"] == "loraplane.io/v1alpha1"
    assert "base_model" not in wire["spec"] and "baseModel" in wire["spec"]


@pytest.mark.parametrize(
    "path,value,field",
    [
        (("lora", "r"), 0, "spec.lora.r"),
        (("lora", "r"), 257, "spec.lora.r"),
        (("training", "learningRate"), 1.0, "spec.training.learningRate"),
        (("training", "epochs"), 51, "spec.training.epochs"),
        (("dataset", "validationSplit"), 0.6, "spec.dataset.validationSplit"),
        (("training", "warmupRatio"), "lots", "spec.training.warmupRatio"),
    ],
)
def test_bad_finetunejob_specs_name_the_field(path, value, field):
    raw = load("finetunejob.yaml")
    node = raw["spec"]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    with pytest.raises(ValidationError) as err:
        FineTuneJob.model_validate(raw)
    locs = [".".join(str(p) for p in e["loc"]) for e in err.value.errors()]
    assert field in locs, locs


def test_unknown_fields_are_refused():
    raw = load("finetunejob.yaml")
    raw["spec"]["lora"]["rank"] = 8
    with pytest.raises(ValidationError, match="rank"):
        FineTuneJob.model_validate(raw)


def test_traffic_weight_bounds():
    raw = load("chatbotdeployment.yaml")
    raw["spec"]["traffic"][0]["weight"] = 101
    with pytest.raises(ValidationError) as err:
        ChatbotDeployment.model_validate(raw)
    assert "spec.traffic.0.weight" in str(err.value).replace("\n", " ").replace(" ", "") or "weight" in str(err.value)
