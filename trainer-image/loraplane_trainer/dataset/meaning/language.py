"""Language identification with lingua (its models ship in the wheel), built for short text.

Limited to widely used languages (fewer candidates: faster, less memory, fewer confusions);
a text too close to call between two languages gets no language rather than a guess.
"""

from __future__ import annotations

from functools import cache
from typing import Any

LANGUAGES = ("ENGLISH", "GERMAN", "FRENCH", "SPANISH", "ITALIAN", "PORTUGUESE", "DUTCH", "POLISH", "SWEDISH",
             "DANISH", "BOKMAL", "FINNISH", "CZECH", "ROMANIAN", "HUNGARIAN", "TURKISH", "RUSSIAN", "UKRAINIAN",
             "GREEK", "ARABIC", "HEBREW", "HINDI", "CHINESE", "JAPANESE", "KOREAN", "THAI", "VIETNAMESE",
             "INDONESIAN")
MIN_RELATIVE_DISTANCE = 0.1
MIN_LETTERS = 8  # "OK." or "Yes" says nothing about a language


@cache
def _detector() -> Any:
    from lingua import Language, LanguageDetectorBuilder

    return (LanguageDetectorBuilder.from_languages(*(getattr(Language, name) for name in LANGUAGES))
            .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE).build())


def languages(texts: list[str]) -> list[str | None]:
    """ISO 639-1 code of each text's language, None where the text is too short or too close to call."""
    out: list[str | None] = [None] * len(texts)
    todo = [k for k, t in enumerate(texts) if sum(c.isalpha() for c in t[:200]) >= MIN_LETTERS]
    if not todo:
        return out
    found = _detector().detect_languages_in_parallel_of([texts[k] for k in todo])
    for k, lang in zip(todo, found, strict=True):
        out[k] = lang.iso_code_639_1.name.lower() if lang is not None else None
    return out
