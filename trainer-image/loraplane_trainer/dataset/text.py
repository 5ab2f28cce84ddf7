"""Text normalisation and MinHash signatures that similarity, duplicates, contradictions and the split share.

Prompts are compared after stripping what prompt variations change: casing, accents,
punctuation, greetings and polite filler. What is left is shingled into character
3-grams (robust to typos) and signed with MinHash (datasketch). Every hash here is
stable across processes, so the split is deterministic.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib

import numpy as np
from datasketch import MinHash

NUM_PERM = 64
_TEMPLATE = MinHash(num_perm=NUM_PERM, seed=1)
_PERMUTATIONS = _TEMPLATE.permutations
_SCHEME = _TEMPLATE.scheme
_SIGNER = MinHash(num_perm=NUM_PERM, permutations=_PERMUTATIONS, scheme=_SCHEME, hashfunc=zlib.crc32)

_GREETING = re.compile(
    r"^\s*(?:(?:hi|hello|hey|hiya|greetings|good (?:morning|afternoon|evening)|dear [a-z]+)"
    r"(?: there| team| all| support| folks)?\s*[,!.:;-]*\s*)+",
)
_FILLER = re.compile(
    r"\b(?:please|pls|plz|thanks|thank you|thx|cheers|quick question|i was wondering|"
    r"can you tell me|could you tell me|i would like to know|i'd like to know|just wondering)\b"
)
_NON_WORD = re.compile(r"[^\w]+")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_SPACE = re.compile(r"\s+")


def fold(text: str) -> str:
    """Lower case, accents removed, compatibility forms unified."""
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def normalise_prompt(text: str) -> str:
    """A prompt with casing, punctuation, greetings and polite filler removed."""
    folded = fold(text)
    stripped = _FILLER.sub(" ", _GREETING.sub("", folded))
    out = _SPACE.sub(" ", _NON_WORD.sub(" ", stripped)).strip()
    return out or _SPACE.sub(" ", _NON_WORD.sub(" ", folded)).strip() or folded.strip()


def normalise_strict(text: str) -> str:
    """A text with only casing, accents, punctuation and spacing removed: what an exact duplicate ignores."""
    folded = fold(text)
    return _SPACE.sub(" ", _NON_WORD.sub(" ", folded)).strip() or folded.strip()


def normalise_completion(text: str) -> str:
    """An answer with casing, punctuation and spacing removed."""
    folded = fold(text)
    return _SPACE.sub(" ", _NON_WORD.sub(" ", folded)).strip() or folded.strip()


def numbers(text: str) -> frozenset[str]:
    """The numbers an answer states: two answers that differ in them say different things."""
    return frozenset(n.replace(",", "") for n in _NUMBER.findall(text))


def shingles(normalised: str, k: int = 3) -> list[bytes]:
    """Character k-grams of the text padded with spaces (short texts still get one shingle)."""
    padded = f" {normalised} "
    if len(padded) <= k:
        return [padded.encode()]
    # Repeated shingles are harmless to a MinHash (min is idempotent): no set needed.
    if padded.isascii():
        encoded = padded.encode()
        return [encoded[i : i + k] for i in range(len(encoded) - k + 1)]
    return [padded[i : i + k].encode() for i in range(len(padded) - k + 1)]


def signature(normalised: str) -> np.ndarray:
    """MinHash signature (NUM_PERM uint32 values) of a normalised text."""
    m = _SIGNER  # one MinHash reused: building one per text costs more than hashing it
    m.clear()
    m.update_batch(shingles(normalised))
    return m.hashvalues.astype(np.uint32)


def jaccard(a: str, b: str) -> float:
    """Exact Jaccard similarity of the shingle sets of two normalised texts."""
    sa, sb = set(shingles(a)), set(shingles(b))
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def stable_hash(text: str) -> int:
    """A 63-bit hash that is the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big") >> 1
