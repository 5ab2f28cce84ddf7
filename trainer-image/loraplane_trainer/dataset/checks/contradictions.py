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


def plain_disagreement(a: str, b: str) -> tuple[str, float] | None:
    """Why two answers disagree by what they state (other numbers, yes against no), without any model."""
    na, nb = numbers(a), numbers(b)
    if na and nb and na != nb:
        return f"other numbers ({', '.join(sorted(na - nb)[:3])} vs {', '.join(sorted(nb - na)[:3])})", 1.0
    pa, pb = polarity(a), polarity(b)
    if pa and pb and pa != pb:
        return f"one answers {pa}, the other {pb}", 1.0
    return None


def meaning_disagreement(a: str, b: str, similarity: float) -> tuple[str, float] | None:
    """Why two answers disagree given their similarity: a negation of the same statement, or other meanings."""
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
        i, j, sim = i[keep], j[keep], sim[keep]
        if not len(i):
            return []
        # The full model runs only where a decision needs it: on the prompts of pairs that are not near copies
        # (is it the same question?), then on the answers of same-question pairs that neither states other
        # numbers nor yes against no (do they agree?). Most candidates need one of the two, few need both.
        surface_pair = sim > 1.5
        q = np.ones(len(i), dtype=np.float32)
        if ctx.meaning and not surface_pair.all():
            si, sj = i[~surface_pair], j[~surface_pair]
            vec = ctx.full_vectors([ctx.prompts[k] for k in np.unique(np.r_[si, sj]).tolist()])
            q[~surface_pair] = [float(vec[ctx.prompts[a]] @ vec[ctx.prompts[b]])
                                for a, b in zip(si.tolist(), sj.tolist(), strict=True)]
        same = surface_pair | (q >= self.same_question)
        i, j, q = i[same], j[same], q[same]
        plain = [plain_disagreement(ctx.completions[a], ctx.completions[b])
                 for a, b in zip(i.tolist(), j.tolist(), strict=True)]
        undecided = [k for k, why in enumerate(plain) if why is None]
        if ctx.meaning:
            texts = {ctx.completions[int(x)] for k in undecided for x in (i[k], j[k])}
            vec = ctx.full_vectors(sorted(texts))
            answer_sim = {k: float(vec[ctx.completions[int(i[k])]] @ vec[ctx.completions[int(j[k])]])
                          for k in undecided}
        else:  # without embeddings here: answers compared by MinHash
            minhash = ctx.completion_sigs.similarity(i[undecided], j[undecided]).tolist() if undecided else []
            answer_sim = dict(zip(undecided, minhash, strict=True))
        found: list[Location] = []
        for k, (a, b) in enumerate(zip(i.tolist(), j.tolist(), strict=True)):
            why = plain[k] or meaning_disagreement(ctx.completions[a], ctx.completions[b], answer_sim[k])
            if why is None:
                continue
            reason, strength = why
            found.append(Location(ctx.files[b], ctx.lines[b],
                                  f"contradicts line {ctx.lines[a]} (question similarity {q[k]:.2f}): {reason}",
                                  related_line=ctx.lines[a], similarity=float(q[k]), score=float(q[k]) * strength))
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
