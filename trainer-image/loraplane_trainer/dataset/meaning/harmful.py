"""Harmful content: a classifier that ships its model (alt-profanity-check: a linear SVM over
character and word n-grams, trained on toxic, obscene, insulting and hateful comments)."""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.8  # calibrated probability above which a text is flagged


def harmful_scores(texts: list[str]) -> np.ndarray:
    """Probability that each text is toxic, hateful, obscene or sexual."""
    if not texts:
        return np.zeros(0, dtype=np.float32)
    from profanity_check import predict_prob

    return np.asarray(predict_prob(texts), dtype=np.float32)
