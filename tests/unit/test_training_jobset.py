"""The multi-node JobSet builder: its fields against JobSet's own models, the torchrun flags, failure policy."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from loraplane import exitcodes
from loraplane.api.finetunejob import FineTuneJob
from loraplane.builders.training_job import training_job
from loraplane.builders.training_jobset import (
    POD_FAILURE_POLICY_REASON,
    rendezvous_endpoint,
    training_jobset,
    validate_jobset,
)
from loraplane.builders.training_workload import JOB, JOBSET, training_workload, workload_kind
from loraplane.config import OperatorConfig
from loraplane.finetune.current_run import current_run

ROOT = Path(__file__).resolve().parents[2]


def ftj(**resources) -> dict:
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())
    obj["metadata"].update(uid="uid-1", generation=3)
    obj["spec"]["resources"].update(resources)
    return obj


def typed(**resources) -> FineTuneJob:
    return FineTuneJob.model_validate(ftj(**resources))


def build(nodes: int = 2, sharded: bool = False, **resources) -> dict:
    job = typed(nodes=nodes, **resources)
    return training_jobset(job, current_run(job), OperatorConfig(), sharded=sharded)


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
    assert flags["--nnodes"] == "4" and flags["--nproc-per-node"] == "8" and "--strategy" not in flags
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
    # The child Job fails at once (backoffLimit 0) on either rule; its failure message names the rule's index.
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert [r["action"] for r in rules] == ["FailJob", "FailJob"]
    assert rules[0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert set(rules[1]["onExitCodes"]["values"]) == {exitcodes.BAD_INPUT, exitcodes.QUALITY_GATE_FAILED}
    assert job["spec"]["backoffLimit"] == 0
    policy = js["spec"]["failurePolicy"]
    assert policy["maxRestarts"] == 3  # resources.backoffLimit
    by_name = {r["name"]: r for r in policy["rules"]}
    assert by_name["evicted"]["action"] == "RestartJobSetAndIgnoreMaxRestarts"
    assert by_name["evicted"]["onJobFailureMessagePatterns"] == ["matching FailJob rule at index 0$"]
    assert by_name["badInputOrRejected"]["action"] == "FailJobSet"
    assert by_name["badInputOrRejected"]["onJobFailureMessagePatterns"] == ["matching FailJob rule at index 1$"]
    assert all(r["onJobFailureReasons"] == [POD_FAILURE_POLICY_REASON] for r in policy["rules"])
    # JobSet's rule names: ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$
    assert all(re.fullmatch(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?", r["name"]) for r in policy["rules"])


@pytest.mark.parametrize(("message", "rule"), [
    ("Pod chatbots/x-node-0-1-abcde has condition DisruptionTarget matching FailJob rule at index 0", "evicted"),
    ("Container trainer for pod chatbots/x-node-0-0-abcde failed with exit code 42 matching FailJob rule at index 1",
     "badInputOrRejected"),
])
def test_the_job_controllers_messages_select_the_rule(message, rule):
    """The Job controller's messages (pkg/controller/job/pod_failure_policy.go) against the patterns, as JobSet
    matches them (first rule whose reason and pattern match)."""
    rules = build()["spec"]["failurePolicy"]["rules"]
    hit = next(r for r in rules if any(re.search(p, message) for p in r["onJobFailureMessagePatterns"]))
    assert hit["name"] == rule


def test_the_pod_is_the_single_node_jobs_pod():
    """One pod template for both: only the command and the rendezvous port differ."""
    job = typed(nodes=1)
    single = training_job(job, current_run(job), OperatorConfig())["spec"]["template"]
    multi = build()["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    a, b = copy.deepcopy(single), copy.deepcopy(multi)
    for t in (a, b):
        t["spec"]["containers"][0].pop("command")
        t["spec"]["containers"][0].pop("ports", None)
        for key in ("loraplane.io/generation", "loraplane.io/run", "kueue.x-k8s.io/queue-name"):
            t["metadata"]["labels"].pop(key, None)
        t["metadata"]["annotations"].clear()
        t["spec"]["volumes"][0]["configMap"]["name"] = "x"
    assert a == b


def test_fsdp_from_the_plan_and_the_kind_by_nodes():
    assert "--strategy" in build(sharded=True)["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
        "containers"][0]["command"]
    one, two = typed(nodes=1), typed(nodes=2)
    assert workload_kind(one.spec) is JOB and workload_kind(two.spec) is JOBSET
    assert training_workload(two, current_run(two), OperatorConfig())["kind"] == "JobSet"
    assert training_workload(one, current_run(one), OperatorConfig())["kind"] == "Job"
    # JobSet pod names (<set>-node-0-<i>) must stay DNS labels: a long FineTuneJob name gives a shorter set name.
    long = typed(nodes=16)
    long.metadata.name = "a" * 60
    name = current_run(long).job_name
    assert len(f"{name}-node-0-15") <= 63


def test_one_node_is_not_a_jobset():
    with pytest.raises(ValueError, match="batch/v1 Job"):
        build(nodes=1)
