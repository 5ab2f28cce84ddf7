"""Identifiers in a question: what makes "does model K1 …?" and "does model K2 …?" different questions.

Numbers, dates, versions and product codes (any token with a digit), codes in capitals
("XL", "NYC") and names (capitalised words that do not start a sentence). Two prompts ask
different questions when one holds an identifier the other lacks; casing is ignored so a
lower-cased copy of a prompt still asks the same thing.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[^\W_]+(?:[-./:][^\W_]+)*")
_SENTENCE_END = frozenset(".!?\n")
# Capitalised words that are not names even mid-sentence.
_COMMON = frozenset(["i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "please", "thanks", "hi", "hello", "hey", "dear"])


def identifiers(text: str) -> frozenset[str]:
    """The identifiers of a text, case-folded."""
    found = set()
    for m in _TOKEN.finditer(text):
        token = m.group()
        folded = token.lower()
        if any(c.isdigit() for c in token):
            found.add(folded)
            continue
        if len(token) < 2 or folded in _COMMON:
            continue
        if token.isupper() or token[0].isupper() and not _starts_sentence(text, m.start()):
            found.add(folded)
    return frozenset(found)


def words(text: str) -> frozenset[str]:
    """Every token of a text, case-folded (to look an identifier up in the other prompt)."""
    return frozenset(m.group().lower() for m in _TOKEN.finditer(text))


def differ(ids_a: frozenset[str], words_a: frozenset[str], ids_b: frozenset[str], words_b: frozenset[str]) -> bool:
    """Whether two prompts name different things: an identifier of one that the other does not mention."""
    return not (ids_a <= words_b and ids_b <= words_a)


def _starts_sentence(text: str, pos: int) -> bool:
    before = text[:pos].rstrip(" \t\"'(“‘")
    return not before or before[-1] in _SENTENCE_END or before.endswith((":", "-", "—"))
