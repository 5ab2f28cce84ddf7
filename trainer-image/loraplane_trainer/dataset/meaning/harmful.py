"""Harmful content, from two classifiers that run offline; a sentence's score is the higher of the two.

- Profanity (alt-profanity-check: a linear SVM over character and word n-grams, trained on
  toxic, obscene, insulting and hateful comments; it ships its model): insults and obscenity.
- Meaning (where the embedding model is installed): a logistic-regression probe over sentence
  embeddings, trained at run time on the seed sentences of `harmful_seeds` (five categories of
  harm and harmless sentences that share their words). It finds what carries no bad word:
  hatred without slurs, self-harm, politely worded sexual requests, threats, weapons.
  In two stages, as the other meaning checks: a probe over the static embeddings ranks every
  distinct sentence, and the full model's probe decides the MAX_PROBED highest ranked (all of
  them in a set of ordinary size); the rest keep the profanity score.

Each sentence is scored on its own and a text gets its worst sentence's score: one abusive
sentence in a long, polite answer is still abusive (scored whole, the rest dilutes it).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

from . import EMBEDDINGS, budget, missing

_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+|,\s+")
_STATEMENT = re.compile(r"(?<=[.!?;:])\s+|\n+")
MAX_SENTENCES = 64  # per text: enough for any example, bounded for hostile ones
MIN_PROBED, MAX_PROBED = 1024, 2048  # distinct sentences the full model's probe scores (see budget)
PROBE_C = 10.0  # inverse regularisation, chosen by leave-one-out on the seeds alone (see docs/dataset-checks.md)
HARMLESS = "harmless"
NEAR_SEED = 0.3  # cosine to the nearest harmful seed below which the probe says nothing (the least of the seeds'
# own leave-one-out nearest-other-seed similarities)


def sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE.split(text[:20_000]) if p.strip()]
    return parts[:MAX_SENTENCES] or [text[:1000]]


@dataclass
class Scores:
    """Per text: the worst sentence's score (0-1) and the category the meaning probe gives it ("profanity"
    when the profanity classifier scored it higher)."""

    scores: np.ndarray
    categories: list[str]


class Probe:
    """Multinomial logistic regression from embeddings to a category of harm or HARMLESS."""

    def __init__(self, vectors: np.ndarray, labels: list[str]):
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(C=PROBE_C, class_weight="balanced", max_iter=5000).fit(vectors, labels)
        self.harmless = list(self.model.classes_).index(HARMLESS)
        self.seeds = vectors[np.array([label != HARMLESS for label in labels])]

    def __call__(self, vectors: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """P(harmful) and the likeliest category of harm of each vector."""
        p = self.model.predict_proba(vectors)
        # Far from every harmful seed (nonsense, another language, another domain) the regression only
        # extrapolates: no evidence of harm there.
        near = (vectors @ self.seeds.T).max(axis=1) >= NEAR_SEED
        harm = np.where(near, 1.0 - p[:, self.harmless], 0.0)
        p[:, self.harmless] = -1
        return harm.astype(np.float32), [str(self.model.classes_[k]) for k in p.argmax(axis=1)]


_PROBES: dict[tuple[str, str], Probe] = {}
_LOCK = threading.Lock()


def _probe(model: str, stage: str) -> Probe:
    """The probe of one embedding model and stage ("static" or "full"), trained once per process."""
    with _LOCK:
        if (model, stage) not in _PROBES:
            from .embeddings import embedder
            from .harmful_seeds import HARMFUL
            from .harmful_seeds import HARMLESS as HARMLESS_SEEDS

            texts = [s for seeds in HARMFUL.values() for s in seeds] + list(HARMLESS_SEEDS)
            labels = [c for c, seeds in HARMFUL.items() for _ in seeds] + [HARMLESS] * len(HARMLESS_SEEDS)
            e = embedder(model)
            _PROBES[model, stage] = Probe(e.static(texts) if stage == "static" else e.encode(texts), labels)
        return _PROBES[model, stage]


def statements(text: str) -> list[str]:
    """Whole sentences (not split at commas: the meaning probe needs a sentence's context)."""
    parts = [p.strip() for p in _STATEMENT.split(text[:20_000]) if p.strip()]
    return parts[:MAX_SENTENCES] or [text[:1000]]


def harmful_scores(texts: list[str], embedding_model: str | None = None) -> Scores:
    """Score of each text (its worst sentence); the meaning probe joins in when `embedding_model` is given and
    the embedding libraries are installed."""
    if not texts:
        return Scores(np.zeros(0, dtype=np.float32), [])
    from profanity_check import predict_prob

    # The profanity classifier reads each clause, the probe each sentence; both read the whole text too.
    clauses = [[t, *sentences(t)] for t in texts]
    probed = [[t, *statements(t)] for t in texts] if embedding_model and not missing(EMBEDDINGS) else None
    unique = sorted({s for parts in clauses for s in parts})
    at = {s: k for k, s in enumerate(unique)}
    rude = np.asarray(predict_prob(unique), dtype=np.float32)
    out = np.array([max(rude[at[s]] for s in parts) for parts in clauses], dtype=np.float32)
    worst = ["profanity"] * len(texts)
    if probed is not None:
        meaning, kinds = _meaning(sorted({s for parts in probed for s in parts}), embedding_model)
        for n, parts in enumerate(probed):
            s = max(parts, key=lambda s: meaning[s])
            if meaning[s] > out[n]:
                out[n], worst[n] = meaning[s], kinds[s]
    return Scores(out, worst)


def _meaning(unique: list[str], model: str) -> tuple[dict[str, float], dict[str, str]]:
    """The meaning probe's P(harmful) and category of each sentence: ranked by the static probe, the
    likeliest (a budget sub-linear in their number, at most MAX_PROBED) scored by the full model's, the rest 0."""
    from .embeddings import embedder

    e = embedder(model)
    chosen = unique
    limit = budget(len(unique), MIN_PROBED, MAX_PROBED)
    if len(unique) > limit:
        rough, _ = _probe(model, "static")(e.static(unique))
        chosen = [unique[k] for k in np.argsort(-rough, kind="stable")[:limit].tolist()]
    harm, kinds = _probe(model, "full")(e.encode(chosen))
    score = dict.fromkeys(unique, 0.0)
    score.update(zip(chosen, harm.tolist(), strict=True))
    return score, dict(zip(chosen, kinds, strict=True))
