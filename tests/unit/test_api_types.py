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


def test_modelpool_example_round_trips_and_defaults_live_in_the_types():
    from loraplane.api import ModelPool
    from loraplane.api.states import NamespacesFrom

    pool = ModelPool.model_validate(load("modelpool.yaml"))
    assert ModelPool.model_validate(pool.to_wire()) == pool
    assert pool.spec.allowed_namespaces.from_ is NamespacesFrom.SELECTOR
    assert pool.to_wire()["spec"]["allowedNamespaces"]["from"] == "Selector"
    bare = ModelPool.model_validate({"spec": {"baseModel": {"name": "m"}}})
    assert bare.spec.allowed_namespaces.from_ is NamespacesFrom.SAME
    assert (bare.spec.replicas, bare.spec.adapter_storage.size, bare.spec.vllm.max_cpu_loras) == (1, "20Gi", None)


def test_pooled_chatbots_take_pool_fields_from_the_pool():
    a, b = yaml.safe_load_all((EXAMPLES / "pool-chatbots.yaml").read_text())
    sa, sb = ChatbotDeployment.model_validate(a).spec, ChatbotDeployment.model_validate(b).spec
    assert (sa.pool_ref.name, sa.pool_ref.namespace, sa.served_name, sa.priority) == (
        "shared-smollm", "serving", "support-bot", 2)
    assert sa.auth.api_key_secret_ref.name == "support-bot-keys" and sa.auth.api_key_secret_ref.key is None
    assert sb.base_model is None and sb.priority == 1 and sb.served_name is None


@pytest.mark.parametrize("extra,message", [
    ({"baseModel": {"name": "m"}}, "exactly one of baseModel or poolRef"),
    ({"vllm": {"maxLoras": 2}}, "takes baseModel, vllm and resources from its ModelPool"),
    ({"resources": {"gpus": 0}}, "takes baseModel, vllm and resources from its ModelPool"),
])
def test_pydantic_refuses_what_cel_refuses(extra, message):
    raw = {"spec": {"poolRef": {"name": "p"}, **extra}}
    with pytest.raises(ValidationError, match=message):
        ChatbotDeployment.model_validate(raw)
    with pytest.raises(ValidationError, match="exactly one of baseModel or poolRef"):
        ChatbotDeployment.model_validate({"spec": {}})
