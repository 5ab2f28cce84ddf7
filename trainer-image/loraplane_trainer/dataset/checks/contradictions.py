"""Contradictions: the same question answered in ways that disagree.

"The same question" is decided in two stages: candidates are surface near copies
(MinHash) and nearest neighbours in meaning (static embeddings); the full model then
scores each candidate pair. Prompts that name different identifiers (a number, a model or
product code, a name, a date) are different questions, however alike they read. Two
answers disagree when they state other numbers, one says yes and the other no, one
negates the other, or they mean different things (full-model similarity); answers worded
differently that agree are not contradictions. Each pair is a finding location naming
both lines, sorted by confidence.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..text import numbers
from .base import Check, Finding, Location, Locations

AGREE = 0.6  # full-model answer similarity from which differently worded answers say the same
SAME_TOPIC = 0.5  # ... from which a negation is a reversal of the same statement
_YES = re.compile(r"^\W*(?:yes|yeah|yep|sure|of course|correct|absolutely|definitely)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(?:no|nope|not|unfortunately|sorry|never)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:not|no|none|nothing|never|neither|nor|cannot|unable|without)\b|n't\b",
                       re.IGNORECASE)


def polarity(answer: str) -> str | None:
    if _YES.match(answer):
        return "yes"
    if _NO.match(answer):
        return "no"
    return None


def disagreement(a: str, b: str, similarity: float) -> tuple[str, float] | None:
    """Why two answers to one question disagree, with how sure that is; None when they agree."""
    na, nb = numbers(a), numbers(b)
    if na and nb and na != nb:
        return f"other numbers ({', '.join(sorted(na - nb)[:3])} vs {', '.join(sorted(nb - na)[:3])})", 1.0
    pa, pb = polarity(a), polarity(b)
    if pa and pb and pa != pb:
        return f"one answers {pa}, the other {pb}", 1.0
    if similarity >= SAME_TOPIC and bool(_NEGATION.search(a)) != bool(_NEGATION.search(b)):
        return "one answer negates the other", 0.9
    if similarity < AGREE:
        return f"the answers say different things (answer similarity {similarity:.2f})", 1.0 - similarity
    return None


class ContradictionCheck(Check):
    name = "contradictions"

    def __init__(self, max_contradictions: int, same_question: float):
        self.max_contradictions, self.same_question = max_contradictions, same_question

    def finish(self, ctx: Any) -> list[Finding]:
        n = ctx.examples
        if n < 2:
            return []
        answers = np.frombuffer(ctx.completion_hash, dtype=np.int64)
        si, sj, _ = ctx.prompt_pairs
        mi, mj, ms = ctx.semantic_pairs
        surface = set(zip(si.tolist(), sj.tolist(), strict=True))
        i = np.concatenate([si, mi])
        j = np.concatenate([sj, mj])
        sim = np.concatenate([np.full(len(si), 2.0, np.float32), ms])  # near copies first
        if not len(i):
            return []
        codes, pos = np.unique(np.minimum(i, j) * n + np.maximum(i, j), return_index=True)
        i, j, sim = codes // n, codes % n, sim[pos]
        differ = answers[i] != answers[j]
        i, j, sim = i[differ], j[differ], sim[differ]
        keep = ctx.same_identifiers(i, j)
        i, j, sim = i[keep], j[keep], sim[keep]
        # Without embeddings here: near copies only (their sim is 2), answers compared by MinHash.
        keep = ctx.within_budget(i, j, sim, "contradictions") if ctx.meaning else sim > 1.5
        i, j = i[keep], j[keep]
        if not len(i):
            return []
        idx = np.unique(np.concatenate([i, j])).tolist()
        vec = ctx.full_vectors([ctx.prompts[k] for k in idx] + [ctx.completions[k] for k in idx]) if ctx.meaning else {}
        minhash = ctx.completion_sigs.similarity(i, j)
        found: list[Location] = []
        for n_pair, (a, b) in enumerate(zip(i.tolist(), j.tolist(), strict=True)):
            pa, pb = ctx.prompts[a], ctx.prompts[b]
            q = 1.0 if (a, b) in surface else float(vec[pa] @ vec[pb])
            if q < self.same_question:
                continue
            ca, cb = ctx.completions[a], ctx.completions[b]
            answer_sim = float(vec[ca] @ vec[cb]) if vec else float(minhash[n_pair])
            why = disagreement(ca, cb, answer_sim)
            if why is None:
                continue
            reason, strength = why
            found.append(Location(ctx.files[b], ctx.lines[b],
                                  f"contradicts line {ctx.lines[a]} (question similarity {q:.2f}): {reason}",
                                  related_line=ctx.lines[a], similarity=q, score=q * strength))
        if not found:
            return []
        found.sort(key=lambda loc: (-(loc.score or 0), loc.line))
        shown = Locations()
        for loc in found:
            shown.add(loc)
        count = len(found)
        severity = "error" if count > self.max_contradictions else "warning"
        return [Finding(self.name, severity, count,
                        f"{count} pair(s) of examples answer the same question in ways that disagree "
                        f"(allowed {self.max_contradictions}); most certain first", shown.items,
                        threshold=self.max_contradictions)]
