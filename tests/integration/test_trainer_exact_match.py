"""Exact match stops each answer where it leaves its reference, and gives the verdicts whole answers give."""

from __future__ import annotations

import pytest
import torch
from loraplane_trainer.training import evaluation
from loraplane_trainer.training.chat import prompt_text
from loraplane_trainer.training.evaluation import LeftTheReference
from loraplane_trainer.training.precision import choose

pytestmark = pytest.mark.integration
REFERENCE = "The free Drift plan includes 5 GB of storage and never expires."


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def stops(tokenizer, answers: list[str], references: list[str | None]) -> list[bool]:
    prompt = tokenizer("Q: ", add_special_tokens=False)["input_ids"]
    rows = [prompt + tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.eos_token_id] * (width - len(r)) for r in rows])
    return LeftTheReference(tokenizer, references, len(prompt))(ids, None).tolist()


def test_a_row_stops_only_once_it_cannot_match(tokenizer):
    answers = ["The free Drift plan inc", "THE FREE DRIFT, plan", "The Cumulus plan", "Anything at all", "Café"]
    references = [REFERENCE, REFERENCE, REFERENCE, None, "Café au lait"]
    assert stops(tokenizer, answers, references) == [False, False, True, False, False]
    # A character whose bytes are split over tokens is judged when it is whole, not before.
    ids = tokenizer("é", add_special_tokens=False)["input_ids"]
    partial = torch.tensor([tokenizer("Q: ", add_special_tokens=False)["input_ids"] + ids[:1]])
    if "\ufffd" in tokenizer.decode(ids[:1]):
        assert LeftTheReference(tokenizer, ["zzz"], partial.shape[1] - 1)(partial, None).tolist() == [False]


def test_exact_match_with_early_stops_gives_the_whole_answers_verdicts(smollm2_dir, tokenizer, monkeypatch):
    from transformers import AutoModelForCausalLM

    precision = choose("auto")
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=precision.weights_dtype)
    questions = ["Reply with one word: what colour is the sky?", "Say hello.", "Reply with yes or no: is ice cold?",
                 "Reply with one number: what is two plus two?", "Reply with one word: the opposite of up?",
                 "Name one fruit, nothing else.", "Reply with one word: what do bees make?", "Say goodbye."]
    prompts = [prompt_text(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": "x"}])[0]
               for q in questions]
    own = evaluation.greedy_answers(model, tokenizer, prompts, precision, max_new_tokens=64)
    finished = [a for a in own if len(tokenizer(a, add_special_tokens=False)["input_ids"]) < 40]
    assert len(finished) >= 4, own  # answers that ended on their own, not at the cap
    # Half the references are the model's own answers, the other half another answer's words.
    records = [{"messages": [{"role": "user", "content": q},
                             {"role": "assistant", "content": a if k % 2 == 0 else "Nimbus keeps both copies."}]}
               for k, (q, a) in enumerate(zip(questions, own, strict=True)) if a in finished]
    monkeypatch.setattr(evaluation, "SAMPLES_KEPT", len(records))  # every answer whole
    whole = evaluation.exact_match(model, tokenizer, records, precision, max_new_tokens=24)
    monkeypatch.setattr(evaluation, "SAMPLES_KEPT", 0)  # every answer may stop early
    early = evaluation.exact_match(model, tokenizer, records, precision, max_new_tokens=24)
    assert [s["match"] for s in early.samples] == [s["match"] for s in whole.samples]
    assert early.score == whole.score >= 0.25 and whole.score < 1
    assert sum(len(s["answer"]) for s in early.samples) < sum(len(s["answer"]) for s in whole.samples)
