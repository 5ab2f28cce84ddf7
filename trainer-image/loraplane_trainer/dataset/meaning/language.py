"""Language identification with lingua (its models ship in the wheel), built for short text.

Limited to widely used languages (fewer candidates: faster, less memory, fewer confusions);
a text too close to call between two languages gets no language rather than a guess.

In two stages, as the embeddings are: every distinct text goes through lingua's fast mode
(trigrams only, about ten times cheaper); the short texts it places outside the set's main
language are then decided by the precise mode (all n-gram orders), which short text needs.
The precise stage is bounded (3 sqrt(n) of n distinct texts, from 500 to MAX_PRECISE, the most
frequent first); past it the fast mode's answer stands, and `Languages.unverified` counts them. Tokens holding a digit (codes,
prices, times) are left out first: they say nothing about a language, and without them
templated answers ("Yes, model K7 …") collapse into one text each.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

from . import budget

LANGUAGES = ("ENGLISH", "GERMAN", "FRENCH", "SPANISH", "ITALIAN", "PORTUGUESE", "DUTCH", "POLISH", "SWEDISH",
             "DANISH", "BOKMAL", "FINNISH", "CZECH", "ROMANIAN", "HUNGARIAN", "TURKISH", "RUSSIAN", "UKRAINIAN",
             "GREEK", "ARABIC", "HEBREW", "HINDI", "CHINESE", "JAPANESE", "KOREAN", "THAI", "VIETNAMESE",
             "INDONESIAN")
MIN_RELATIVE_DISTANCE = 0.1
LONG = 120  # letters from which trigram statistics alone are reliable (lingua's low-accuracy mode)
MIN_LETTERS = 8  # "OK." or "Yes" says nothing about a language
MIN_PRECISE, MAX_PRECISE = 500, 2000  # distinct short texts the precise mode re-checks (see budget)
PREFIX = 160  # characters of a text that are looked at (past LONG letters, trigrams alone are reliable)
_WITH_DIGIT = re.compile(r"\S*\d\S*")


@dataclass
class Languages:
    """ISO 639-1 code per text (None: too short or too close to call), and how many short texts outside the
    main language kept the fast mode's answer (the precise stage's bound was reached)."""

    codes: list[str | None]
    unverified: int = 0


@cache
def _detector(fast: bool = False) -> Any:
    from lingua import Language, LanguageDetectorBuilder

    builder = (LanguageDetectorBuilder.from_languages(*(getattr(Language, name) for name in LANGUAGES))
               .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE))
    return (builder.with_low_accuracy_mode() if fast else builder).build()


def unload() -> None:
    """Drop lingua's detectors (their language models)."""
    _detector.cache_clear()


def _detect(texts: list[str], fast: bool) -> list[str | None]:
    found = _detector(fast).detect_languages_in_parallel_of(texts) if texts else []
    return [lang.iso_code_639_1.name.lower() if lang is not None else None for lang in found]


def identify(texts: list[str], counts: list[int] | None = None) -> Languages:
    """The language of each text; `counts` (how often each text occurs) ranks the main language and the order
    of the precise stage."""
    counts = counts or [1] * len(texts)
    keys = [_WITH_DIGIT.sub(" ", t[:PREFIX]) for t in texts]
    weight: Counter[str] = Counter()
    for key, c in zip(keys, counts, strict=True):
        weight[key] += c
    letters = {key: sum(ch.isalpha() for ch in key) for key in weight}
    distinct = [key for key in weight if letters[key] >= MIN_LETTERS]
    code = dict(zip(distinct, _detect(distinct, fast=True), strict=True))
    votes = Counter({lang: 0 for lang in code.values() if lang})
    for key, lang in code.items():
        if lang:
            votes[lang] += weight[key]
    main = votes.most_common(1)[0][0] if votes else None
    doubtful = sorted((key for key in distinct if letters[key] < LONG and code[key] != main),
                      key=lambda key: (-weight[key], key))
    checked = doubtful[: budget(len(distinct), min(MIN_PRECISE, MAX_PRECISE), MAX_PRECISE)]
    code.update(zip(checked, _detect(checked, fast=False), strict=True))
    return Languages([code.get(key) for key in keys], unverified=len(doubtful) - len(checked))


def languages(texts: list[str]) -> list[str | None]:
    """ISO 639-1 code of each text's language, None where the text is too short or too close to call."""
    return identify(texts).codes
