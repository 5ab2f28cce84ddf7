"""Evaluation: perplexity, exact match with greedy generation, the regression set, and the quality gates."""

from __future__ import annotations

import contextlib
import math
import re
import string
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from loraplane.api.finetunejob import QualityGates
from loraplane.evaluation.safety import safety_gate_failure

from . import shared_prefix
from .chat import TokenizedExample, prompt_text, read_chat_jsonl
from .packing import causal_lm_loss_sum, collate_rows, pack_rows, row_length
from .precision import Precision

REGRESSION_SET = "regression_set.jsonl"


def regression_set_path() -> Path:
    """General prompts shipped with the trainer, to catch catastrophic forgetting."""
    return Path(str(resources.files(__package__) / REGRESSION_SET))


def _merges_exactly(model) -> bool:
    """Whether every adapted projection's base weight is fp32 (not bf16, fp16 or 4-bit)."""
    from peft.tuners.lora import LoraLayer

    return all(m.get_base_layer().weight.dtype == torch.float32 for m in model.modules() if isinstance(m, LoraLayer))


@torch.no_grad()
def mean_loss(model, examples: list[TokenizedExample], precision: Precision, *, row_tokens: int = 1024,
              pad_id: int = 0, rows_per_batch: int = 2) -> float:
    """Mean next-token loss over the assistant tokens of examples (packed, no padding waste).

    Two rows per forward: the output head's fp32 logits and softmax of eight 256-token rows took 1.4 GB.
    """
    if not examples:
        return float("nan")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    prefix = shared_prefix.shared_prefix_length(examples) if shared_prefix.supported(model) else 0
    lengths = [len(e) for e in examples]
    rows = pack_rows({i: n - prefix for i, n in enumerate(lengths)}, row_length(lengths, row_tokens) - prefix)
    device = next(model.parameters()).device
    for b in range(0, len(rows), rows_per_batch):
        batch = collate_rows([[examples[i] for i in row] for row in rows[b : b + rows_per_batch]], prefix, pad_id)
        batch = batch.to(device)
        with precision.autocast(model):
            total += float(causal_lm_loss_sum(model, batch))
        count += batch.target_tokens
    model.train(was_training)
    return total / max(count, 1)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


_PUNCT = str.maketrans("", "", string.punctuation + "“”‘’«»…")


def normalize(text: str) -> str:
    """Normalised answer text: case, accents' forms, punctuation and whitespace do not count."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT)
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class ExactMatch:
    score: float
    samples: list[dict] = field(default_factory=list)  # {question, reference, answer, match}


# The first answers are generated whole: metrics.json keeps them as samples (the model card shows a few).
SAMPLES_KEPT = 20


class LeftTheReference:
    """Stops each row of a generation batch once its answer can no longer equal its reference.

    Exact match only asks whether the whole answer equals the reference after `normalize`: once the
    answer so far, normalised, is not the start of the normalised reference, the rest cannot change the
    verdict, and the row stops (the base model, which never matches, stops within a few tokens instead
    of running to the cap). The answer's last character is left out of the comparison, so a character
    that normalises differently once the next token comes (an accent composed with its letter) never
    stops a row that would match. A row without a reference (None) runs to its end.
    """

    def __init__(self, tokenizer, references: list[str | None], prompt_length: int):
        self.tokenizer = tokenizer
        self.references = [None if r is None else normalize(r) for r in references]
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row, reference in enumerate(self.references):
            if reference is None:
                continue
            text = self.tokenizer.decode(input_ids[row, self.prompt_length:], skip_special_tokens=True)
            if "\ufffd" in text:  # a character split over tokens: judge it when it is whole
                continue
            done[row] = not reference.startswith(normalize(text)[:-1])
        return done


# Token cells (prompt plus new tokens, times prompts) one generation batch may hold, so that long
# prompts get smaller batches. On a CPU fuller batches decode faster but the process grows with them:
# the demo adapter's 58 held-out prompts took 24.2 s and peaked at 1.6 GB within 1,184 cells (16 a
# batch), 18.4 s and 2.4 GB within 2,400, 14.4 s and 4.1 GB all at once; after training, 2,560 cells
# raised the trainer's peak from 3.2 to 3.9 GB. A GPU's batch of 16 prompts of 1,024 tokens was
# always fine.
GENERATION_TOKEN_BUDGET = {"cpu": 1280, "cuda": 16 * 1024}


def generation_batches(lengths: list[int], max_new_tokens: int, budget: int) -> list[list[int]]:
    """Prompt indices in batches, shortest prompts first (little left padding), each within `budget`
    token cells counting every row at its batch's longest prompt."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        cells = (lengths[i] + max_new_tokens) * (len(batches[-1]) + 1) if batches else 0
        if batches and cells <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def greedy_answers(model, tokenizer, prompts: list[str], precision: Precision, *, max_new_tokens: int,
                   budget: int | None = None, references: list[str | None] | None = None) -> list[str]:
    """Greedy completions of rendered chat prompts, in the prompts' order, batched with left padding
    (generation_batches; `budget` defaults to the device's GENERATION_TOKEN_BUDGET). With `references`,
    a prompt's answer stops where it leaves its reference (LeftTheReference; None: the whole answer)."""
    from transformers import StoppingCriteriaList

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    budget = budget or GENERATION_TOKEN_BUDGET[precision.device]
    answers: list[str] = [""] * len(prompts)
    # Generation runs many small steps: fold LoRA into fp32 weights for it (undone below). Not into bf16
    # ones: merging and unmerging there rounds twice and leaves the base weights changed.
    merged = hasattr(model, "merge_adapter") and _merges_exactly(model)
    if merged:
        model.merge_adapter()
    try:
        # Rows that run to their end batch apart from rows that may stop early: a batch decodes until its
        # last row is done.
        groups = [range(len(prompts))] if references is None else [
            [i for i, r in enumerate(references) if r is None], [i for i, r in enumerate(references) if r is not None]]
        batches = [[group[k] for k in batch] for group in groups
                   for batch in generation_batches([len(encoded[i]) for i in group], max_new_tokens, budget)]
        for batch in batches:
            enc = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            stop = None
            if references is not None:
                stop = StoppingCriteriaList([LeftTheReference(tokenizer, [references[i] for i in batch],
                                                              enc["input_ids"].shape[1])])
            # On CPU the weights are already in the compute precision; autocast would only add casts of the
            # fp32 LoRA weights at every decoding step of a few tokens.
            with precision.autocast() if precision.device == "cuda" else contextlib.nullcontext():
                out = model.generate(**enc.to(device), max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, stopping_criteria=stop)
            for i, ids in zip(batch, out[:, enc["input_ids"].shape[1]:], strict=True):
                answers[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    finally:
        if merged:
            model.unmerge_adapter()
        tokenizer.padding_side = side
        model.train(was_training)
    return answers


def exact_match(model, tokenizer, records: list[dict], precision: Precision, *, max_new_tokens: int,
                budget: int | None = None) -> ExactMatch:
    """Share of records whose greedy answer equals the reference after normalisation.

    The first SAMPLES_KEPT answers are generated whole (the samples); every other one stops where it
    leaves its reference, so a sample past those may hold only the start of a wrong answer."""
    if not records:
        return ExactMatch(float("nan"))
    pairs = [prompt_text(tokenizer, r["messages"]) for r in records]
    questions = [next((m["content"] for m in reversed(r["messages"]) if m["role"] == "user"), "") for r in records]
    # Answers longer than every reference cannot match: generating further is wasted time.
    longest = max(len(tokenizer(ref, add_special_tokens=False)["input_ids"]) for _, ref in pairs)
    references = [None if k < SAMPLES_KEPT else ref for k, (_, ref) in enumerate(pairs)]
    answers = greedy_answers(model, tokenizer, [p for p, _ in pairs], precision,
                             max_new_tokens=min(max_new_tokens, longest + 4), budget=budget, references=references)
    samples = [{"question": q, "reference": ref, "answer": a, "match": normalize(a) == normalize(ref)}
               for q, (_, ref), a in zip(questions, pairs, answers, strict=True)]
    return ExactMatch(sum(s["match"] for s in samples) / len(samples), samples)


def load_regression_set(uri: str | None) -> list[dict]:
    if uri is None:
        return read_chat_jsonl(regression_set_path())
    from loraplane.storage.uris import filesystem, is_local, local_path

    if is_local(uri):
        return read_chat_jsonl(local_path(uri))
    import tempfile

    fs, path = filesystem(uri)
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as tmp:
        fs.get_file(path, tmp.name)
        return read_chat_jsonl(tmp.name)


def check_gates(gates: QualityGates, metrics: dict) -> list[str]:
    """Every gate the metrics fail, as one sentence each (empty: accepted)."""
    failed = []
    ppl = metrics.get("perplexityAfter")
    if gates.max_perplexity is not None and ppl is not None and ppl > gates.max_perplexity:
        failed.append(f"validation perplexity {ppl:.3g} is above maxPerplexity {gates.max_perplexity:g}")
    before, after = metrics.get("exactMatchBefore"), metrics.get("exactMatchAfter")
    if gates.min_exact_match_gain is not None and before is not None and after is not None:
        gain = after - before
        if gain < gates.min_exact_match_gain:
            failed.append(f"exact match rose by {gain:+.3f} ({before:.3f} -> {after:.3f}), "
                          f"less than minExactMatchGain {gates.min_exact_match_gain:g}")
    rb, ra = metrics.get("regressionPerplexityBefore"), metrics.get("regressionPerplexityAfter")
    if gates.max_regression_increase is not None and rb and ra is not None:
        rise = ra / rb - 1
        if rise > gates.max_regression_increase:
            failed.append(f"regression-set perplexity rose {rise:+.1%} ({rb:.3g} -> {ra:.3g}), "
                          f"more than maxRegressionIncrease {gates.max_regression_increase:.0%}")
    harmful = safety_gate_failure(gates.max_harmful_compliance_increase, metrics.get("harmfulComplianceBefore"),
                                  metrics.get("harmfulComplianceAfter"))
    if harmful:
        failed.append(harmful)
    return failed
