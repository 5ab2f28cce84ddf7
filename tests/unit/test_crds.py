"""The CRDs: generated from the API types, structural, and enforcing the cross-field rules with CEL."""

import copy
from pathlib import Path

import pytest
import yaml
from loraplane.api import KINDS
from loraplane.api.crdgen import crd_file_name, render

from tests.support.admission import admit, crd_schema

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def crd_of(kind_name):
    kind = next(k for k in KINDS if k.kind_name == kind_name)
    return yaml.safe_load(render(kind))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind_name)
@pytest.mark.parametrize("directory", ["crds", "helm/loraplane/crds"])
def test_committed_crds_equal_a_fresh_generation(kind, directory):
    path = ROOT / directory / crd_file_name(kind)
    assert path.exists(), f"{path} missing: run make crds"
    assert path.read_text() == render(kind), f"{path} drifted from the API types: run make crds"


def _walk(schema, path="$"):
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind_name)
def test_schema_is_structural(kind):
    schema = crd_schema(crd_of(kind.kind_name))
    for path, node in _walk(schema):
        for bad in ("$ref", "anyOf", "oneOf", "allOf", "not", "title", "$defs"):
            assert bad not in node, f"{path} has {bad}"
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if node.get("type") == "array":
            assert "items" in node, f"{path}: array without items"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert node["type"] == "object", path


def test_printer_columns_and_names():
    ftj = crd_of("FineTuneJob")["spec"]
    cbd = crd_of("ChatbotDeployment")["spec"]
    assert ftj["names"]["shortNames"] == ["ftj"] and cbd["names"]["shortNames"] == ["cbd"]
    assert ftj["names"]["categories"] == ["loraplane"] == cbd["names"]["categories"]
    cols = lambda s: [c["name"] for c in s["versions"][0]["additionalPrinterColumns"] if not c.get("priority")]  # noqa: E731
    assert cols(ftj) == ["Phase", "Base", "Progress", "Eval-Loss", "Predicted-Cost", "Age"]
    assert cols(cbd) == ["Phase", "Stable", "Canary", "Weight", "Ready", "Age"]
    assert ftj["versions"][0]["subresources"] == {"status": {}}


@pytest.mark.parametrize("name,kind", [("finetunejob.yaml", "FineTuneJob"), ("chatbotdeployment.yaml", "ChatbotDeployment")])
def test_examples_are_admitted(name, kind):
    obj = yaml.safe_load((EXAMPLES / name).read_text())
    assert admit(crd_of(kind), obj) == []


def _cbd():
    return yaml.safe_load((EXAMPLES / "chatbotdeployment.yaml").read_text())


def _ftj():
    return yaml.safe_load((EXAMPLES / "finetunejob.yaml").read_text())


def test_weights_60_30_are_refused_by_the_cel_rule():
    obj = _cbd()
    obj["spec"]["traffic"] = [{"adapter": "v1", "weight": 60}, {"adapter": "latest", "weight": 30}]
    problems = admit(crd_of("ChatbotDeployment"), obj)
    assert [p.message for p in problems] == ["traffic weights must sum to 100"]
    assert "sum() == 100" in problems[0].rule
    assert problems[0].path == "spec"


def test_lora_r_zero_is_refused_by_the_schema():
    obj = _ftj()
    obj["spec"]["lora"]["r"] = 0
    problems = admit(crd_of("FineTuneJob"), obj)
    assert len(problems) == 1 and problems[0].path == "spec.lora.r" and problems[0].rule is None
    assert "minimum" in problems[0].message or "less than" in problems[0].message


BAD_CBDS = [
    ("duplicate adapter names", lambda s: s["adapters"].append(copy.deepcopy(s["adapters"][0])), "adapter names must be unique"),
    ("reserved name", lambda s: s["adapters"].append({"name": "base", "uri": "s3://x/"}), 'adapter name "base" is reserved for the base model'),
    ("unknown traffic target", lambda s: s["traffic"].__setitem__(1, {"adapter": "v9", "weight": 10}), 'every traffic entry must name an adapter of spec.adapters or "base"'),
    ("steps not increasing", lambda s: s["rollout"].__setitem__("steps", [10, 50, 25, 100]), "rollout.steps must be strictly increasing"),
    ("steps repeated", lambda s: s["rollout"].__setitem__("steps", [10, 10, 100]), "rollout.steps must be strictly increasing"),
    ("adapter with two sources", lambda s: s["adapters"][1].__setitem__("uri", "s3://adapters/x/"), "an adapter needs exactly one of uri or fineTuneJobRef"),
    ("adapter with no source", lambda s: s["adapters"][1].pop("fineTuneJobRef"), "an adapter needs exactly one of uri or fineTuneJobRef"),
    ("variant twice in traffic", lambda s: s.__setitem__("traffic", [{"adapter": "v1", "weight": 50}, {"adapter": "v1", "weight": 50}]), "each variant may appear once in traffic"),
]


@pytest.mark.parametrize("label,mutate,message", BAD_CBDS, ids=[b[0] for b in BAD_CBDS])
def test_bad_chatbotdeployments_are_refused_with_their_message(label, mutate, message):
    obj = _cbd()
    mutate(obj["spec"])
    messages = [p.message for p in admit(crd_of("ChatbotDeployment"), obj)]
    assert message in messages, messages


def test_steps_above_100_are_refused_by_the_schema():
    obj = _cbd()
    obj["spec"]["rollout"]["steps"] = [50, 120]
    problems = admit(crd_of("ChatbotDeployment"), obj)
    assert problems and problems[0].path == "spec.rollout.steps[1]"


BAD_FTJS = [
    ("two dataset sources", lambda s: s["dataset"].__setitem__("inline", [{"prompt": "a", "completion": "b"}]), "dataset needs exactly one source: uri, configMapRef or inline"),
    ("no dataset source", lambda s: s["dataset"].pop("uri"), "dataset needs exactly one source: uri, configMapRef or inline"),
    ("base model twice", lambda s: s["baseModel"].__setitem__("uri", "s3://m/"), "baseModel needs exactly one of name or uri"),
]


@pytest.mark.parametrize("label,mutate,message", BAD_FTJS, ids=[b[0] for b in BAD_FTJS])
def test_bad_finetunejobs_are_refused_with_their_message(label, mutate, message):
    obj = _ftj()
    mutate(obj["spec"])
    messages = [p.message for p in admit(crd_of("FineTuneJob"), obj)]
    assert message in messages, messages


def test_unknown_field_is_refused():
    obj = _ftj()
    obj["spec"]["training"]["learnRate"] = 0.1
    assert any("learnRate" in p.message for p in admit(crd_of("FineTuneJob"), obj))


def _pool():
    return yaml.safe_load((EXAMPLES / "modelpool.yaml").read_text())


def _pool_chatbots():
    return list(yaml.safe_load_all((EXAMPLES / "pool-chatbots.yaml").read_text()))


def test_modelpool_names_and_printer_columns():
    spec = crd_of("ModelPool")["spec"]
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["mpool"] and spec["names"]["categories"] == ["loraplane"]
    cols = [c["name"] for c in spec["versions"][0]["additionalPrinterColumns"] if not c.get("priority")]
    assert cols == ["Ready", "Replicas", "Chatbots", "Adapters", "Age"]
    assert spec["versions"][0]["subresources"] == {"status": {}}


def test_modelpool_schema_explains_every_spec_field():
    # `kubectl explain modelpool.spec...` prints these descriptions: none may be missing.
    schema = crd_schema(crd_of("ModelPool"))
    for path, node in _walk(schema["properties"]["spec"], "spec"):
        if not path.endswith(("[]", "{}")):  # list items and map values are explained by their field
            assert node.get("description"), f"{path} has no description"


def test_pool_examples_are_admitted():
    assert admit(crd_of("ModelPool"), _pool()) == []
    for obj in _pool_chatbots():
        assert admit(crd_of("ChatbotDeployment"), obj) == [], obj["metadata"]["name"]


POOL_REF = "a ChatbotDeployment needs exactly one of baseModel or poolRef"
POOL_FIELDS = "a ChatbotDeployment with poolRef takes baseModel, vllm and resources from its ModelPool"
BAD_POOLED_CBDS = [
    ("poolRef and baseModel", lambda s: s.__setitem__("baseModel", {"name": "m"}), POOL_REF),
    ("neither poolRef nor baseModel", lambda s: s.pop("poolRef"), POOL_REF),
    ("poolRef and vllm", lambda s: s.__setitem__("vllm", {"maxLoras": 2}), POOL_FIELDS),
    ("poolRef and resources", lambda s: s.__setitem__("resources", {"gpus": 2}), POOL_FIELDS),
]


@pytest.mark.parametrize("label,mutate,message", BAD_POOLED_CBDS, ids=[b[0] for b in BAD_POOLED_CBDS])
def test_pool_owned_fields_on_a_pooled_chatbot_are_refused(label, mutate, message):
    obj = _pool_chatbots()[1]
    mutate(obj["spec"])
    messages = [p.message for p in admit(crd_of("ChatbotDeployment"), obj)]
    assert message in messages, messages


def test_a_private_chatbot_keeps_its_vllm_and_resources():
    assert admit(crd_of("ChatbotDeployment"), _cbd()) == []


BAD_POOLS = [
    ("Selector without selector", {"from": "Selector"}, "selector is needed by, and read only with, from: Selector"),
    ("selector with Same", {"from": "Same", "selector": {"matchLabels": {"a": "b"}}},
     "selector is needed by, and read only with, from: Selector"),
    ("unknown from", {"from": "Some"}, None),
]


@pytest.mark.parametrize("label,allowed,message", BAD_POOLS, ids=[b[0] for b in BAD_POOLS])
def test_bad_allowed_namespaces_are_refused(label, allowed, message):
    obj = _pool()
    obj["spec"]["allowedNamespaces"] = allowed
    problems = admit(crd_of("ModelPool"), obj)
    assert problems
    if message:
        assert any(message in p.message for p in problems), problems
    else:
        assert problems[0].path == "spec.allowedNamespaces.from"


def test_served_names_cannot_carry_a_pin_separator():
    obj = _pool_chatbots()[1]
    obj["spec"]["servedName"] = "sales:v3"
    problems = admit(crd_of("ChatbotDeployment"), obj)
    assert problems and problems[0].path == "spec.servedName"


def test_priority_bounds():
    obj = _pool_chatbots()[1]
    obj["spec"]["priority"] = 0
    assert admit(crd_of("ChatbotDeployment"), obj)[0].path == "spec.priority"
