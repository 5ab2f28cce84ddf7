"""The multi-node JobSet builder: its fields against JobSet's own models, the torchrun flags, failure policy."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from loraplane import exitcodes
from loraplane.builders.training_jobset import (
    POD_FAILURE_POLICY_REASON,
    rendezvous_endpoint,
    training_jobset,
    validate_jobset,
)
from loraplane.config import OperatorConfig

ROOT = Path(__file__).resolve().parents[2]


def ftj(**resources) -> dict:
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())
    obj["metadata"].update(uid="uid-1", generation=3)
    obj["spec"]["resources"].update(resources)
    return obj


def build(nodes: int = 2, **resources) -> dict:
    return training_jobset(ftj(**resources), OperatorConfig(), "support-bot-train-3", "uid-1-3", nodes)


def test_the_jobset_validates_against_the_jobset_schema():
    validate_jobset(build())


@pytest.mark.parametrize("path", [("spec", "network", "enableDnsHostnames"),
                                  ("spec", "replicatedJobs", 0, "template", "spec", "completionsMode")])
def test_a_misspelt_field_is_caught(path):
    js = copy.deepcopy(build())
    node = js
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = True
    with pytest.raises(ValueError, match=path[-1]):
        validate_jobset(js)


def test_one_indexed_replicated_job_of_nodes_pods_with_torchrun_flags():
    js = build(nodes=4, gpus=8)
    assert js["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and js["kind"] == "JobSet"
    assert js["spec"]["network"]["enableDNSHostnames"] is True
    (rjob,) = js["spec"]["replicatedJobs"]
    job = rjob["template"]["spec"]
    assert rjob["replicas"] == 1
    assert (job["parallelism"], job["completions"], job["completionMode"]) == (4, 4, "Indexed")
    command = job["template"]["spec"]["containers"][0]["command"]
    flags = dict(zip(command[::1], command[1:], strict=False))
    assert flags["--nnodes"] == "4" and flags["--nproc-per-node"] == "8"
    assert flags["--rdzv-endpoint"] == rendezvous_endpoint("support-bot-train-3", "chatbots")
    assert flags["--rdzv-endpoint"].startswith("support-bot-train-3-node-0-0.support-bot-train-3.")
    assert command.count("--nproc-per-node") == 1 and "--node-rank" not in command  # from JOB_COMPLETION_INDEX
    gpu = job["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert str(gpu) == "8"


def test_kueue_label_and_suspend_on_the_jobset_and_exit_codes_fail_it_at_once():
    js = build(queue="team-a")
    assert js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a" and js["spec"]["suspend"] is True
    job = js["spec"]["replicatedJobs"][0]["template"]
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]  # Kueue admits the set, not its Jobs
    # Bad input and a rejected adapter fail the child Job through its podFailurePolicy (reason
    # PodFailurePolicy); the JobSet fails on that reason; anything else restarts the set.
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob"
    assert set(rules[0]["onExitCodes"]["values"]) == {exitcodes.BAD_INPUT, exitcodes.QUALITY_GATE_FAILED}
    assert job["spec"]["backoffLimit"] == 0
    policy = js["spec"]["failurePolicy"]
    assert policy["rules"] == [{"name": "bad-input-or-rejected", "action": "FailJobSet",
                                "onJobFailureReasons": [POD_FAILURE_POLICY_REASON]}]
    assert policy["maxRestarts"] == 3  # resources.backoffLimit


def test_one_node_is_not_a_jobset():
    with pytest.raises(ValueError, match="batch/v1 Job"):
        build(nodes=1)
