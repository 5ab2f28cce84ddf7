"""One streaming pass over a dataset that runs every check and keeps only compact per-example state
(signatures, hashes, line numbers, intent ids, texts cut to MAX_TEXT characters) for the checks that
compare examples and for the split. The meaning stage (embeddings) runs once, after the pass."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .checks.base import Check, Finding
from .checks.contradictions import ContradictionCheck
from .checks.duplicates import DuplicateCheck
from .checks.harmful import HarmfulCheck
from .checks.length import TokenLengthCheck
from .checks.malformed import MalformedCheck
from .checks.paraphrases import ParaphraseCheck
from .checks.pii import PiiCheck
from .checks.size import SizeCheck
from .checks.skew import SkewCheck
from .checks.style import StyleCheck
from .example import Example
from .meaning import EMBEDDINGS, budget, missing
from .meaning.embeddings import DEFAULT_MODEL, embedder
from .meaning.identifiers import differ, identifiers, words
from .meaning.moderation import api_key as moderation_key
from .meaning.neighbours import neighbour_pairs
from .similarity import SignatureMatrix, components, similar_pairs
from .sources import Malformed
from .text import normalise_completion, normalise_prompt, normalise_strict, numbers, stable_hash

MAX_TEXT = 1000  # characters of each prompt and answer kept for the meaning stage
NEIGHBOURS = 10
STATIC_CANDIDATE = 0.75  # static-embedding cosine from which two prompts are compared with the full model
MIN_FULL_TEXTS, MAX_FULL_TEXTS = 1024, 2048  # examples whose prompt (and maybe answer) the full model encodes,
# per check: see meaning.budget


@dataclass
class Analysis:
    """What the pass learned: findings, plus what the split and leakage checks need."""

    near_threshold: float
    embedding_model: str = DEFAULT_MODEL
    examples: int = 0
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    lines: array = field(default_factory=lambda: array("q"))
    prompt_sigs: SignatureMatrix = field(default_factory=SignatureMatrix)
    completion_sigs: SignatureMatrix = field(default_factory=SignatureMatrix)
    prompt_hash: array = field(default_factory=lambda: array("q"))
    completion_hash: array = field(default_factory=lambda: array("q"))
    numbers_hash: array = field(default_factory=lambda: array("q"))
    raw_hash: array = field(default_factory=lambda: array("q"))
    strict_hash: array = field(default_factory=lambda: array("q"))
    prompts: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    intent_ids: array = field(default_factory=lambda: array("q"))
    intent_names: list[str | None] = field(default_factory=list)
    inferred_intents: np.ndarray | None = None
    _intent_index: dict[str | None, int] = field(default_factory=dict)
    _identifiers: dict[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)

    def add(self, ex: Example) -> None:
        self.files.append(ex.file)
        self.lines.append(ex.line)
        p, c = normalise_prompt(ex.prompt), normalise_completion(ex.completion)
        self.prompt_sigs.add(p)
        self.completion_sigs.add(c)
        self.prompt_hash.append(stable_hash(p))
        self.completion_hash.append(stable_hash(c))
        self.raw_hash.append(stable_hash(f"{ex.prompt}\x00{ex.completion}"))
        self.strict_hash.append(stable_hash(f"{normalise_strict(ex.prompt)}\x00{c}"))
        self.prompts.append(ex.prompt[:MAX_TEXT])
        self.completions.append(ex.completion[:MAX_TEXT])
        self.numbers_hash.append(stable_hash("\x00".join(sorted(numbers(ex.completion)))))
        if ex.intent not in self._intent_index:
            self._intent_index[ex.intent] = len(self.intent_names)
            self.intent_names.append(ex.intent)
        self.intent_ids.append(self._intent_index[ex.intent])
        self.examples += 1

    @cached_property
    def prompt_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs of examples whose prompts are near copies (estimated Jaccard >= threshold) naming the same
        things: "model K1" and "model K2" are near in characters but different questions."""
        i, j, sim = similar_pairs(self.prompt_sigs, self.near_threshold)
        keep = self.same_identifiers(i, j)
        return i[keep], j[keep], sim[keep]

    def same_identifiers(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Which pairs of prompts name the same numbers, codes, names and dates."""
        ids = self._identifiers  # by prompt text: a repeated prompt is parsed once
        prompts = self.prompts
        for k in set(i.tolist()) | set(j.tolist()):
            if prompts[k] not in ids:
                ids[prompts[k]] = (identifiers(prompts[k]), words(prompts[k]))
        return np.array([not differ(*ids[prompts[a]], *ids[prompts[b]])
                         for a, b in zip(i.tolist(), j.tolist(), strict=True)], dtype=bool)

    @cached_property
    def meaning(self) -> bool:
        """Whether the embedding stage can run here (the stats say why not)."""
        gone = missing(EMBEDDINGS)
        if gone:
            self.stats["meaning"] = {"model": None, "skipped": f"{gone} is not installed: surface comparison only"}
        return gone is None

    @cached_property
    def prompt_vectors(self) -> np.ndarray:
        """Static sentence embeddings of every prompt (the cheap stage of the meaning checks)."""
        return embedder(self.embedding_model).static([normalise_prompt(p) for p in self.prompts])

    @cached_property
    def semantic_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompt pairs among each other's nearest neighbours in meaning (static cosine >= STATIC_CANDIDATE)."""
        if not self.meaning:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return neighbour_pairs(self.prompt_vectors, NEIGHBOURS, STATIC_CANDIDATE)

    @cached_property
    def answer_groups(self) -> np.ndarray:
        """Group id of each example: examples with the same answer (up to casing and punctuation) share one."""
        h = np.frombuffer(self.completion_hash, dtype=np.int64)
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        return first[inverse].astype(np.int64)

    def within_budget(self, i: np.ndarray, j: np.ndarray, sim: np.ndarray, stage: str) -> np.ndarray:
        """Which candidate pairs the full model scores: the most similar first, until the budget of distinct
        examples (sub-linear in the set's size, at most MAX_FULL_TEXTS); the rest are counted in stats (the cost
        of the precise stage stays bounded)."""
        limit = budget(self.examples, MIN_FULL_TEXTS, MAX_FULL_TEXTS)
        order = np.argsort(-sim, kind="stable")
        seen: set[int] = set()
        keep = np.zeros(len(i), dtype=bool)
        for k in order.tolist():
            new = {int(i[k]), int(j[k])} - seen
            if len(seen) + len(new) > limit:
                continue
            seen |= new
            keep[k] = True
        ctx = self.stats.setdefault("meaning", {"model": self.embedding_model})
        if not self.meaning:
            return np.zeros(len(i), dtype=bool)
        ctx[stage] = {"candidatePairs": int(len(i)), "scored": int(keep.sum())}
        return keep

    def full_vectors(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Full-model embeddings of a few texts (the precise stage), each unique text encoded once."""
        unique = sorted(set(texts))
        return dict(zip(unique, embedder(self.embedding_model).encode(unique), strict=True))

    @cached_property
    def prompt_groups(self) -> np.ndarray:
        """Group id of each example: near-copy prompts share one (the split keeps a group together)."""
        i, j, _ = self.prompt_pairs
        return components(self.examples, i, j)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def default_checks(checks: Any, max_tokens: int | None, tokenizer: Any = None,
                   secrets: Mapping[str, str] | None = None) -> list[Check]:
    """The checks configured by a DatasetChecks spec (`secrets`: "name/key" -> value, for the moderation key)."""
    moderation = checks.moderation
    key = moderation_key(moderation.api_key_secret_ref, secrets) if moderation else None
    return [
        MalformedCheck(checks.max_malformed),
        SizeCheck(checks.min_examples, checks.recommended_examples),
        DuplicateCheck(checks.max_duplicate_fraction),
        ParaphraseCheck(checks.max_paraphrase_group_share),
        ContradictionCheck(checks.max_contradictions, checks.contradiction_similarity),
        StyleCheck(checks.length_outlier_z),
        SkewCheck(checks.max_intent_share, checks.min_intent_share),
        TokenLengthCheck(max_tokens, tokenizer),
        PiiCheck(checks.pii),
        HarmfulCheck(checks.harmful, checks.harmful_threshold, moderation, key),
    ]


def analyse(
    items: Iterable[Example | Malformed],
    checks: Any,
    *,
    max_tokens: int | None = None,
    tokenizer: Any = None,
    keep: Callable[[Example], None] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> Analysis:
    """Run every check over `items` in one pass; `keep` receives each valid example (e.g. to split it)."""
    result = Analysis(near_threshold=checks.near_duplicate_threshold, embedding_model=checks.embedding_model)
    active = default_checks(checks, max_tokens, tokenizer, secrets)
    malformed = next(c for c in active if isinstance(c, MalformedCheck))
    observers = [c for c in active if type(c).observe is not Check.observe]
    for item in items:
        if isinstance(item, Malformed):
            malformed.record(item)
            continue
        index = result.examples
        result.add(item)
        for check in observers:
            check.observe(index, item)
        if keep is not None:
            keep(item)
    for check in active:
        result.findings.extend(check.finish(result))
    if checks.fail_on_warnings:
        for f in result.findings:
            if f.severity == "warning":
                f.severity = "error"
    return result
