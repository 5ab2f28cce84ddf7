"""Augmented examples pass the same per-example checks again, and none may be a near copy of a
validation example, in characters or in meaning (that would leak the validation set into training)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..checks.length import count_tokens, estimate_tokens
from ..checks.pii import scan
from ..checks.style import PREFIX
from ..example import Example
from ..meaning import EMBEDDINGS, HARMFUL, missing
from ..meaning.embeddings import DEFAULT_MODEL, embedder
from ..meaning.harmful import harmful_scores
from ..meaning.identifiers import differ, identifiers, words
from ..similarity import SignatureMatrix, similar_pairs
from ..text import normalise_prompt


def accept(
    candidates: list[Example],
    train: list[Example],
    validation: list[Example],
    *,
    threshold: float,
    max_tokens: int | None,
    tokenizer: Any = None,
    pii: str = "warning",
    harmful: str = "warning",
    harmful_threshold: float = 0.7,
    embedding_model: str = DEFAULT_MODEL,
) -> tuple[list[Example], Counter]:
    """The candidates that pass, and why the others were rejected."""
    rejected: Counter = Counter()
    seen = {(ex.prompt, ex.completion) for ex in train}
    kept: list[Example] = []
    for ex in candidates:
        reason = None
        if not ex.prompt.strip() or not ex.completion.strip():
            reason = "empty"
        elif (ex.prompt, ex.completion) in seen:
            reason = "duplicate"
        elif pii != "off" and any(scan(m["content"]) for m in ex.messages):
            reason = "pii"
        elif PREFIX.match(ex.completion) or ex.completion != ex.completion.strip():
            reason = "style"
        elif max_tokens and (count_tokens(tokenizer, ex) if tokenizer else estimate_tokens(ex)) > max_tokens:
            reason = "max-tokens"
        if reason:
            rejected[reason] += 1
            continue
        seen.add((ex.prompt, ex.completion))
        kept.append(ex)
    if kept and validation:
        sigs = SignatureMatrix(len(kept) + len(validation))
        sigs.extend([normalise_prompt(ex.prompt) for ex in validation + kept])
        i, j, _ = similar_pairs(sigs, threshold)
        v = len(validation)
        leaking = set(j[(i < v) & (j >= v)].tolist()) | set(i[(j < v) & (i >= v)].tolist())
        if leaking:
            rejected["near-validation"] += len(leaking)
            kept = [ex for k, ex in enumerate(kept) if k + v not in leaking]
    if kept and harmful != "off" and not missing(HARMFUL):
        scores = harmful_scores([f"{ex.prompt}\n{ex.completion}" for ex in kept], embedding_model).scores
        rejected["harmful"] += int((scores >= harmful_threshold).sum())
        kept = [ex for ex, s in zip(kept, scores.tolist(), strict=True) if s < harmful_threshold]
    generated = [k for k, ex in enumerate(kept) if ex.source in MEANING_CHECKED]
    if generated and validation and not missing(EMBEDDINGS):
        kept = _drop_meaning_copies(kept, generated, validation, embedding_model, rejected)
    return kept, rejected


MEANING_CHECKED = ("synthetic", "back-translation")  # model rewordings: near validation prompts in meaning
SAME_MEANING = 0.9


def _drop_meaning_copies(kept: list[Example], generated: list[int], validation: list[Example], model: str,
                         rejected: Counter) -> list[Example]:
    """Drop model-written prompts that say what a validation prompt says (full-model cosine >= SAME_MEANING,
    naming the same identifiers): a new wording of a validation question is that question."""
    e = embedder(model)
    cand = e.encode([kept[k].prompt for k in generated])
    val = e.encode([ex.prompt for ex in validation])
    sims = cand @ val.T
    drop = set()
    for row, k in enumerate(generated):
        for col in (sims[row] >= SAME_MEANING).nonzero()[0].tolist():
            a, b = kept[k].prompt, validation[col].prompt
            if not differ(identifiers(a), words(a), identifiers(b), words(b)):
                drop.add(k)
                break
    if drop:
        rejected["near-validation"] += len(drop)
    return [ex for k, ex in enumerate(kept) if k not in drop]
