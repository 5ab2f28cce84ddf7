"""Augmented examples pass the same per-example checks again, and none may be a near copy of a
validation example (that would leak the validation set into training)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..checks.length import count_tokens, estimate_tokens
from ..checks.pii import scan
from ..checks.style import PREFIX
from ..example import Example
from ..similarity import SignatureMatrix, similar_pairs
from ..text import normalise_prompt, signature


def accept(
    candidates: list[Example],
    train: list[Example],
    validation: list[Example],
    *,
    threshold: float,
    max_tokens: int | None,
    tokenizer: Any = None,
    pii: str = "warning",
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
        for ex in validation + kept:
            sigs.append(signature(normalise_prompt(ex.prompt)))
        i, j, _ = similar_pairs(sigs, threshold)
        v = len(validation)
        leaking = set(j[(i < v) & (j >= v)].tolist()) | set(i[(j < v) & (i >= v)].tolist())
        if leaking:
            rejected["near-validation"] += len(leaking)
            kept = [ex for k, ex in enumerate(kept) if k + v not in leaking]
    return kept, rejected
