"""Harmful content: a classifier that ships its model (alt-profanity-check: a linear SVM over
character and word n-grams, trained on toxic, obscene, insulting and hateful comments).

Each sentence is scored on its own and a text gets its worst sentence's score: one abusive
sentence in a long, polite answer is still abusive (scored whole, the rest dilutes it).
"""

from __future__ import annotations

import re

import numpy as np

_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+|,\s+")
MAX_SENTENCES = 64  # per text: enough for any example, bounded for hostile ones


def sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE.split(text[:20_000]) if p.strip()]
    return parts[:MAX_SENTENCES] or [text[:1000]]


def harmful_scores(texts: list[str]) -> np.ndarray:
    """Probability that each text holds toxic, hateful, obscene or sexual content (its worst sentence)."""
    if not texts:
        return np.zeros(0, dtype=np.float32)
    from profanity_check import predict_prob

    split = [sentences(t) for t in texts]
    unique = sorted({s for parts in split for s in parts} | set(texts))
    score = dict(zip(unique, np.asarray(predict_prob(unique), dtype=np.float32).tolist(), strict=True))
    return np.array([max(score[t], *(score[s] for s in parts)) for t, parts in zip(texts, split, strict=True)],
                    dtype=np.float32)
