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
LONG = 120  # letters from which trigram statistics alone are reliable (lingua's low-accuracy mode: ~6x faster)
MIN_LETTERS = 8  # "OK." or "Yes" says nothing about a language


@cache
def _detector(fast: bool = False) -> Any:
    from lingua import Language, LanguageDetectorBuilder

    builder = (LanguageDetectorBuilder.from_languages(*(getattr(Language, name) for name in LANGUAGES))
               .with_minimum_relative_distance(MIN_RELATIVE_DISTANCE))
    return (builder.with_low_accuracy_mode() if fast else builder).build()


def languages(texts: list[str]) -> list[str | None]:
    """ISO 639-1 code of each text's language, None where the text is too short or too close to call."""
    out: list[str | None] = [None] * len(texts)
    letters = [sum(c.isalpha() for c in t[:400]) for t in texts]
    for fast in (False, True):
        todo = [k for k, n in enumerate(letters) if n >= MIN_LETTERS and (n >= LONG) == fast]
        if not todo:
            continue
        found = _detector(fast).detect_languages_in_parallel_of([texts[k] for k in todo])
        for k, lang in zip(todo, found, strict=True):
            out[k] = lang.iso_code_639_1.name.lower() if lang is not None else None
    return out
