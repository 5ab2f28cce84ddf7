"""minHumanWinRate in a canary's analysis: it waits for an attached evaluation with enough ratings, then judges."""

from __future__ import annotations

from datetime import UTC, datetime

from loraplane.api.chatbotdeployment import CanaryAnalysis
from loraplane.canary.analysis import Decision, VariantFigures, judge
from loraplane.canary.human import HumanEvaluatedSource
from loraplane.evaluation.attached import HumanEvaluation, attach, read_attached

NOW = datetime.now(UTC)


def evaluation(candidate="v3", win_rate=0.7, enough=True) -> HumanEvaluation:
    return HumanEvaluation(session="s1", candidate=candidate, baseline="v2", win_rate=win_rate,
                           enough_ratings=enough, raters=3 if enough else 1, items=10, attached_at=NOW)


class Fixed:
    async def baseline(self, model):
        return None

    async def figures(self, model, variants, since, now, baseline):
        return {v: VariantFigures(requests=500, errors=0) for v in variants}


async def _canary(tmp_path, attached: HumanEvaluation | None) -> VariantFigures:
    uri = f"file://{tmp_path}/v3"
    (tmp_path / "v3").mkdir(exist_ok=True)
    if attached is not None:
        attach(uri, attached)
        assert read_attached(uri) == attached
    source = HumanEvaluatedSource(Fixed(), {"v3": uri})
    return (await source.figures("bot", ["v2", "v3"], NOW, NOW, None))["v3"]


async def test_promotion_waits_then_passes_or_fails(tmp_path):
    analysis = CanaryAnalysis.model_validate({"minHumanWinRate": 0.6})
    stable = VariantFigures(requests=500)
    cases = [(None, Decision.WAIT, "no human evaluation attached"),
             (evaluation(enough=False), Decision.WAIT, "too few ratings"),
             (evaluation(candidate="v9"), Decision.WAIT, "judged v9, not v3"),
             (evaluation(win_rate=0.5), Decision.FAIL, "humanWinRate 0.5 below by 0.1"),
             (evaluation(win_rate=0.7), Decision.PASS, "")]
    for attached, decision, words in cases:
        verdict = judge(analysis, stable, await _canary(tmp_path, attached), min_requests=100)
        assert verdict.decision is decision, (attached, verdict)
        assert words in verdict.reason
        (tmp_path / "v3" / "human-evaluation.json").unlink(missing_ok=True)


def test_no_limit_no_check():
    verdict = judge(CanaryAnalysis(), VariantFigures(requests=500), VariantFigures(requests=500), min_requests=100)
    assert verdict.decision is Decision.PASS
    assert all(r.metric != "humanWinRate" for r in verdict.results)
