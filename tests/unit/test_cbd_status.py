"""ChatbotDeployment status: a pure function of (typed object, resolved adapters, rollout tick, ready pods).

The display phase follows the rollout's own state and the kind of each resolution
problem, never the wording of a message; the rollout reads back only status.rollout.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from loraplane.api import ChatbotDeployment
from loraplane.api.states import ProblemKind, RolloutPhase
from loraplane.builders.routing_table import ServedVariant
from loraplane.canary import Action, EntryResolution, Plan, RolloutResult, RolloutState
from loraplane.status.chatbotdeployment import Observed, compute_status

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def cbd(replicas: int = 1) -> ChatbotDeployment:
    return ChatbotDeployment.model_validate({
        "metadata": {"name": "bot", "namespace": "ns", "uid": "u", "generation": 3},
        "spec": {"baseModel": {"name": "smol"}, "adapters": [{"name": "v1", "uri": "s3://a/v1/"}],
                 "replicas": replicas}})


def entry(name: str, kind: ProblemKind | None = None, message: str = "") -> EntryResolution:
    res = EntryResolution(name, following=False)
    if kind is None:
        res.versions.append(ServedVariant(name, f"s3://a/{name}/", "d"))
        res.version_of[name] = name
        return res
    return res.refuse(kind, message)


def outcome(entries: list[EntryResolution], state: RolloutState, action: Action = Action.NONE) -> RolloutResult:
    problems = [e.problem for e in entries if e.problem]
    broken = [e.problem for e in entries if e.problem_kind is ProblemKind.BROKEN]
    variants = [v for e in entries for v in e.versions]
    plan = Plan(state.stable, {state.stable or "base": 100}, {v.name: v for v in variants},
                problems=problems, broken=broken)
    return RolloutResult(state, plan, state.weights(plan.base_weights), variants, [], action)


CANARY = RolloutState(stable="v1", canary="v2", step=0, canary_weight=10, message="canary v2 at 10%")
ROLLED_BACK = RolloutState(stable="v1", canary="v2", step=0, rolled_back=True, message="canary v2 rolled back")
STABLE = RolloutState(stable="v1")


@pytest.mark.parametrize(
    ("entries", "state", "ready", "action", "phase", "conditions", "words"),
    [
        ([entry("v1"), entry("v2")], CANARY, 1, Action.WAIT, "Canary",
         {"Ready": "False", "Reconciling": "True", "AdaptersResolved": "True", "CanaryAnalysis": "Unknown"}, "10%"),
        ([entry("v1"), entry("v2")], ROLLED_BACK, 1, Action.NONE, "RolledBack",
         {"Ready": "False", "AdaptersResolved": "True", "CanaryAnalysis": "False"}, "rolled back"),
        # The kind decides, not the text: an unreadable adapter degrades, however it is worded ...
        ([entry("v1"), entry("v2", ProblemKind.BROKEN, "adapter v2: storage said no")], STABLE, 1, Action.NONE,
         "Degraded", {"Ready": "False", "Stalled": "True", "AdaptersResolved": "False"}, "storage said no"),
        # ... and one on its way only delays, even when its message says "rejected".
        ([entry("v1"), entry("v2", ProblemKind.WAITING, "adapter v2: rejected? not published yet")], STABLE, 1,
         Action.NONE, "Progressing", {"Ready": "False", "Reconciling": "True", "AdaptersResolved": "False"},
         "not published yet"),
        ([entry("v1")], STABLE, 0, Action.NONE, "Progressing",
         {"Ready": "False", "Reconciling": "True", "AdaptersResolved": "True"}, "0/1 vLLM replicas ready"),
        ([entry("v1")], STABLE, 1, Action.NONE, "Healthy", {"Ready": "True", "AdaptersResolved": "True"}, "serving v1"),
        ([entry("v2")], RolloutState(stable="v2", message="v2 promoted to stable"), 1, Action.PROMOTE, "Healthy",
         {"Ready": "True", "AdaptersResolved": "True", "CanaryAnalysis": "True"}, "promoted"),
    ],
)
def test_status_table(entries, state, ready, action, phase, conditions, words):
    status = compute_status(cbd(), Observed(entries, outcome(entries, state, action), ready, [], NOW))
    assert status["phase"] == phase
    assert {c["type"]: c["status"] for c in status["conditions"]} == conditions
    assert words in status["message"]
    assert status["observedGeneration"] == 3 and status["endpoint"].startswith("http://bot-router.ns.svc")
    assert status["rollout"]["state"] == state.phase.value


def test_problems_writing_children_join_the_message():
    entries = [entry("v1")]
    status = compute_status(cbd(), Observed(entries, outcome(entries, STABLE), 1, ["ServiceMonitor: not served"], NOW))
    assert status["phase"] == "Healthy" and status["message"] == "serving v1; ServiceMonitor: not served"


def test_rollout_state_is_read_from_status_rollout_only():
    running = RolloutState.from_status(CANARY.to_status() | {"phase": "RolledBack"})
    assert running.running and running.phase is RolloutPhase.RUNNING  # the display phase is never read back
    back = RolloutState.from_status(ROLLED_BACK.to_status() | {"phase": "Canary"})
    assert back.rolled_back and back.canary == "v2"
    idle = RolloutState.from_status(STABLE.to_status() | {"canary": "v9"})
    assert idle.canary is None and idle.stable == "v1"


def test_a_status_from_before_status_rollout_is_read_from_its_flat_fields():
    legacy = {"phase": "RolledBack", "stable": "v1", "canary": "v2", "step": 0, "canaryWeight": 0,
              "stepBaseline": {"v1": {"requests": 3}}}
    state = RolloutState.from_status(legacy)
    assert state.rolled_back and state.baseline == {"v1": {"requests": 3}}
    assert RolloutState.from_status(state.to_status()) == state
