"""spec.evaluation.human: the gate's decision, the model card section, and what a ChatbotDeployment serves."""

from __future__ import annotations

from datetime import UTC, datetime

from loraplane.api import ChatbotDeployment
from loraplane.api.finetunejob import AdapterStatus, HumanEvaluationGate
from loraplane.api.states import HumanEvaluationState
from loraplane.canary import resolve
from loraplane.evaluation.attached import HumanEvaluation
from loraplane.status.human_gate import judge_human, with_human_gate
from loraplane.storage import AdapterManifest, FileEntry
from loraplane.storage.model_card import with_section

GATE = HumanEvaluationGate(min_win_rate=0.6, min_raters=3)
ADAPTER = AdapterStatus(version="v2", uri="s3://a/j/v2/", verdict="accepted")


def found(win_rate=0.7, fewest=3, raters=3) -> HumanEvaluation:
    return HumanEvaluation(session="s1", candidate="tuned", baseline="base", win_rate=win_rate,
                           enough_ratings=fewest >= 3, raters=raters, items=5, fewest_item_raters=fewest,
                           attached_at=datetime.now(UTC))


def test_pending_until_enough_ratings_then_the_win_rate_decides():
    S = HumanEvaluationState
    assert judge_human(GATE, None).state is S.PENDING
    assert judge_human(GATE, found(fewest=2)).state is S.PENDING
    assert judge_human(GATE, found(win_rate=0.59)).state is S.FAILED
    assert judge_human(GATE, found(win_rate=0.6)).state is S.PASSED
    # minRaters above what an older file can vouch for stays pending.
    older = found().model_copy(update={"fewest_item_raters": None})
    assert judge_human(HumanEvaluationGate(min_win_rate=0.6, min_raters=5), older).state is S.PENDING
    assert judge_human(GATE, older).state is S.PASSED


def test_only_an_accepted_adapter_is_held_and_the_verdict_follows_the_gate():
    assert with_human_gate(ADAPTER, None, None) == ADAPTER
    rejected = ADAPTER.model_copy(update={"verdict": "rejected", "reason": "perplexity"})
    assert with_human_gate(rejected, GATE, found()) == rejected
    assert with_human_gate(ADAPTER, GATE, None).verdict == "pending"
    lost = with_human_gate(ADAPTER, GATE, found(win_rate=0.2))
    assert lost.verdict == "rejected" and "below minWinRate 0.6" in lost.reason
    won = with_human_gate(ADAPTER, GATE, found())
    assert won.verdict == "accepted" and won.reason is None and won.human_evaluation.win_rate == 0.7


def test_a_following_chatbot_never_serves_a_pending_version_and_a_pinned_one_waits():
    vs = [{"version": "v1", "uri": "s3://a/j/v1/", "verdict": "accepted"},
          {"version": "v2", "uri": "s3://a/j/v2/", "verdict": "pending"}]
    spec = ChatbotDeployment.model_validate({"metadata": {"name": "bot"}, "spec": {
        "baseModel": {"name": "smol"}, "adapters": [{"name": "follow", "fineTuneJobRef": {"name": "j"}},
                                                     {"name": "pin", "fineTuneJobRef": {"name": "j", "version": "v2"}}]}}).spec
    follow, pin = resolve(spec, {"j": {"spec": {}, "status": {"versions": vs}}}, {})
    assert [v.name for v in follow.versions] == ["follow-v1"]
    assert pin.problem_kind == "Waiting" and "awaits its human evaluation" in pin.problem


def test_card_section_replaces_itself_and_keeps_the_rest():
    card = with_section("# v2\n\nTrained.\n", "human-evaluation", "## Human evaluation\n\nfirst")
    again = with_section(card + "\n## Licence\n", "human-evaluation", "## Human evaluation\n\nsecond")
    assert again.count("## Human evaluation") == 1 and "second" in again and "first" not in again
    assert again.startswith("# v2\n\nTrained.") and "## Licence" in again


def test_the_card_is_outside_the_adapter_digest():
    def m(card_sha: str) -> AdapterManifest:
        return AdapterManifest(job="j", version="v1", verdict="accepted", base_model="smol",
                               created_at=datetime.now(UTC),
                               files=[FileEntry(path="adapter_model.safetensors", sha256="aa", size=1),
                                      FileEntry(path="README.md", sha256=card_sha, size=1)])

    assert m("11").digest == m("22").digest
    weights = m("11").model_copy(update={"files": [FileEntry(path="adapter_model.safetensors", sha256="ab", size=1)]})
    assert weights.digest != m("11").digest


def test_long_names_in_the_attached_file_still_fit_the_status_and_bad_files_are_refused(tmp_path):
    import pytest
    from loraplane.finetune.runs import read_human_evaluation

    huge = found(win_rate=0.1).model_copy(update={"session": "s" * 250, "baseline": "b" * 250})
    held = with_human_gate(ADAPTER, GATE, huge)
    assert held.verdict == "rejected" and len(held.human_evaluation.session) == 128
    (tmp_path / "human-evaluation.json").write_text(found().model_copy(update={"win_rate": 7.0}).model_dump_json())
    with pytest.raises(ValueError, match="win_rate"):  # the operator then holds the adapter as with none
        read_human_evaluation(f"file://{tmp_path}/", {})
