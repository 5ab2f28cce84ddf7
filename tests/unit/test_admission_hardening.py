"""Specs the operator could not run are refused at apply time (schema + CEL, as the API server judges them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from loraplane.api import ChatbotDeployment, FineTuneJob
from loraplane.api.crdgen import crd

from tests.support.admission import admit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


BAD_CBDS = [
    ("cache ttl 0s", lambda o: o["spec"].setdefault("cache", {}).__setitem__("ttl", "0s"), "cache.ttl must be longer than 0s"),
    ("interval that overflows", lambda o: o["spec"]["rollout"].__setitem__("interval", "99999999999h"), "spec.rollout.interval"),
    ("name with a dot", lambda o: o["metadata"].__setitem__("name", "support.bot"), "must start with a letter and hold no dots"),
    ("name with a leading digit", lambda o: o["metadata"].__setitem__("name", "1bot"), "must start with a letter"),
    ("gpuType with a space", lambda o: o["spec"].setdefault("resources", {}).__setitem__("gpuType", "NVIDIA L4"), "spec.resources.gpuType"),
    ("Exists toleration with a value", lambda o: o["spec"].setdefault("resources", {}).__setitem__(
        "tolerations", [{"key": "gpu", "operator": "Exists", "value": "x"}]), "operator Exists must not have a value"),
]

BAD_FTJS = [
    ("cron minute 61, hour 25", lambda o: o["spec"].__setitem__("schedule", "61 25 * * *"), "spec.schedule"),
    ("queue with a space", lambda o: o["spec"]["resources"].__setitem__("queue", "team a"), "spec.resources.queue"),
    ("priority class in capitals", lambda o: o["spec"]["resources"].__setitem__("priorityClassName", "High_Prio"),
     "spec.resources.priorityClassName"),
]


def _refused(kind: type, obj: dict) -> list[str]:
    return [f"{p.path}: {p.message}" for p in admit(crd(kind), obj)]


@pytest.mark.parametrize("label,mutate,expected", BAD_CBDS, ids=[b[0] for b in BAD_CBDS])
def test_unrunnable_chatbotdeployments_are_refused(label, mutate, expected):
    obj = _example("chatbotdeployment.yaml")
    mutate(obj)
    problems = _refused(ChatbotDeployment, obj)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("label,mutate,expected", BAD_FTJS, ids=[b[0] for b in BAD_FTJS])
def test_unrunnable_finetunejobs_are_refused(label, mutate, expected):
    obj = _example("finetunejob.yaml")
    mutate(obj)
    problems = _refused(FineTuneJob, obj)
    assert any(expected in p for p in problems), problems


def test_good_values_of_the_same_fields_are_admitted():
    cbd = _example("chatbotdeployment.yaml")
    cbd["spec"]["cache"] = {"ttl": "1h30m"}
    cbd["spec"]["resources"] = {"gpuType": "NVIDIA-L4", "tolerations": [{"key": "gpu", "operator": "Exists"}]}
    assert _refused(ChatbotDeployment, cbd) == []
    ftj = _example("finetunejob.yaml")
    ftj["spec"]["schedule"] = "*/30 2-4 1,15 * mon-fri"
    ftj["spec"]["resources"].update(queue="team-a", priorityClassName="high.priority")
    assert _refused(FineTuneJob, ftj) == []
