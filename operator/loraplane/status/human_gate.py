"""spec.evaluation.human: an adapter that passed the automatic gates counts as accepted only once the blind
human evaluation attached to it (`loraplane eval results --attach`) has enough ratings and it wins enough.

Pure: the controller reads human-evaluation.json beside the adapter; this decides. Until then the adapter's
status verdict is `pending` (ChatbotDeployments that follow the FineTuneJob do not serve it); a loss makes
it `rejected`. The manifest keeps the automatic gates' verdict.
"""

from __future__ import annotations

from ..api.finetunejob import AdapterStatus, HumanEvaluationGate, HumanEvaluationStatus
from ..api.states import HumanEvaluationState
from ..evaluation.attached import HumanEvaluation, enough_for

_VERDICT = {HumanEvaluationState.PENDING: "pending", HumanEvaluationState.PASSED: "accepted",
            HumanEvaluationState.FAILED: "rejected"}


def _status(state: HumanEvaluationState, message: str, **seen) -> HumanEvaluationStatus:
    # Names come from the attached file: cut to what the status fields hold.
    return HumanEvaluationStatus(state=state, message=message[:1024], **seen)


def judge_human(gate: HumanEvaluationGate, found: HumanEvaluation | None) -> HumanEvaluationStatus:
    """Pending without an evaluation or with too few ratings; then Passed or Failed on the win rate."""
    S = HumanEvaluationState
    if found is None:
        return _status(S.PENDING, "no human evaluation attached to the adapter yet")
    seen = {"session": found.session[:128], "win_rate": found.win_rate, "raters": found.raters, "items": found.items}
    if not enough_for(found, gate.min_raters):
        return _status(S.PENDING, **seen, message=(
            f"session {found.session}: too few ratings yet ({found.raters} raters; every one of its {found.items} "
            f"items needs {gate.min_raters})"))
    rate = "n/a" if found.win_rate is None else f"{found.win_rate:.3f}"
    if found.win_rate is None or found.win_rate < gate.min_win_rate:
        return _status(S.FAILED, **seen, message=(
            f"human win rate {rate} over {found.baseline} in session {found.session} is below minWinRate "
            f"{gate.min_win_rate:g}"))
    return _status(S.PASSED, **seen, message=(
        f"human win rate {rate} over {found.baseline} in session {found.session} ({found.raters} raters)"))


def with_human_gate(adapter: AdapterStatus, gate: HumanEvaluationGate | None,
                    found: HumanEvaluation | None) -> AdapterStatus:
    """The adapter's status under the human gate: only an adapter the automatic gates accepted is held."""
    if gate is None or adapter.verdict != "accepted":
        return adapter
    human = judge_human(gate, found)
    return adapter.model_copy(update={
        "verdict": _VERDICT[human.state], "human_evaluation": human,
        "reason": human.message if human.state is HumanEvaluationState.FAILED else None})
