"""One streaming pass over a dataset that runs every check and keeps only compact per-example state
(signatures, hashes, line numbers, intent ids) for the checks that compare examples and for the split."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .checks.base import Check, Finding
from .checks.contradictions import ContradictionCheck
from .checks.duplicates import DuplicateCheck
from .checks.length import TokenLengthCheck
from .checks.malformed import MalformedCheck
from .checks.pii import PiiCheck
from .checks.size import SizeCheck
from .checks.skew import SkewCheck
from .checks.style import StyleCheck
from .example import Example
from .similarity import SignatureMatrix, components, similar_pairs
from .sources import Malformed
from .text import normalise_completion, normalise_prompt, numbers, signature, stable_hash


@dataclass
class Analysis:
    """What the pass learned: findings, plus what the split and leakage checks need."""

    near_threshold: float
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
    intent_ids: array = field(default_factory=lambda: array("q"))
    intent_names: list[str | None] = field(default_factory=list)
    inferred_intents: np.ndarray | None = None
    _intent_index: dict[str | None, int] = field(default_factory=dict)

    def add(self, ex: Example) -> None:
        self.files.append(ex.file)
        self.lines.append(ex.line)
        p, c = normalise_prompt(ex.prompt), normalise_completion(ex.completion)
        self.prompt_sigs.append(signature(p))
        self.completion_sigs.append(signature(c))
        self.prompt_hash.append(stable_hash(p))
        self.completion_hash.append(stable_hash(c))
        self.raw_hash.append(stable_hash(f"{ex.prompt}\x00{ex.completion}"))
        self.numbers_hash.append(stable_hash("\x00".join(sorted(numbers(ex.completion)))))
        if ex.intent not in self._intent_index:
            self._intent_index[ex.intent] = len(self.intent_names)
            self.intent_names.append(ex.intent)
        self.intent_ids.append(self._intent_index[ex.intent])
        self.examples += 1

    @cached_property
    def prompt_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs of examples whose prompts are near copies (estimated Jaccard >= threshold)."""
        return similar_pairs(self.prompt_sigs, self.near_threshold)

    @cached_property
    def prompt_groups(self) -> np.ndarray:
        """Group id of each example: near-copy prompts share one (the split keeps a group together)."""
        i, j, _ = self.prompt_pairs
        return components(self.examples, i, j)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def default_checks(checks: Any, max_tokens: int | None, tokenizer: Any = None) -> list[Check]:
    """The checks configured by a DatasetChecks spec."""
    return [
        MalformedCheck(checks.max_malformed),
        SizeCheck(checks.min_examples, checks.recommended_examples),
        DuplicateCheck(checks.max_duplicate_fraction),
        ContradictionCheck(checks.max_contradictions),
        StyleCheck(checks.length_outlier_z),
        SkewCheck(checks.max_intent_share, checks.min_intent_share),
        TokenLengthCheck(max_tokens, tokenizer),
        PiiCheck(checks.pii),
    ]


def analyse(
    items: Iterable[Example | Malformed],
    checks: Any,
    *,
    max_tokens: int | None = None,
    tokenizer: Any = None,
    keep: Callable[[Example], None] | None = None,
) -> Analysis:
    """Run every check over `items` in one pass; `keep` receives each valid example (e.g. to split it)."""
    result = Analysis(near_threshold=checks.near_duplicate_threshold)
    active = default_checks(checks, max_tokens, tokenizer)
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
