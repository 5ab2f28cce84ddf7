"""Text normalisation and MinHash signatures that similarity, duplicates, contradictions and the split share.

Prompts are compared after stripping what prompt variations change: casing, accents,
punctuation, greetings and polite filler. What is left is shingled into character
3-grams (robust to typos) and signed with MinHash, vectorised in numpy over many texts at
once (one Python call per text cost more than everything else the checks do). Every hash
here is stable across processes, so the split is deterministic.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np

NUM_PERM = 64
SHINGLE = 3
_CHUNK = 1 << 16  # shingles hashed at once (a 512 KiB buffer per permutation)
_RNG = np.random.default_rng(1)
# Multiply-shift hashing (Dietzfelbinger): h(x) = (a * x + b) >> 32 with a odd, one (a, b) per permutation.
_A = _RNG.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_B = _RNG.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
_C = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)

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


def _shingle_hashes(codes: np.ndarray) -> np.ndarray:
    """One 64-bit hash per character 3-gram of a code point array."""
    with np.errstate(over="ignore"):
        h = codes[:-2] * _C[0] + codes[1:-1] * _C[1] + codes[2:] * _C[2]
        h ^= h >> np.uint64(29)  # mix the high bits down: multiply-shift keeps the high half
        h *= _C[0]
        return h ^ (h >> np.uint64(32))


def signatures(normalised: list[str]) -> np.ndarray:
    """MinHash signatures (n x NUM_PERM uint32) of normalised texts: each text's character 3-grams (padded
    with spaces, so short texts still get one), hashed in numpy over many texts at once. Repeated texts are
    hashed once."""
    index: dict[str, int] = {}
    distinct = [index.setdefault(t, len(index)) for t in normalised]
    texts = list(index)
    sigs = np.empty((len(texts), NUM_PERM), dtype=np.uint32)
    start = 0
    while start < len(texts):
        parts, counts, size = [], [], 0
        end = start
        while end < len(texts) and (size < _CHUNK or end == start):
            padded = f" {texts[end]} "
            codes = np.frombuffer(padded.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            if len(codes) < SHINGLE:
                codes = np.concatenate([codes, np.zeros(SHINGLE - len(codes), np.uint32)])
            parts.append(codes)
            counts.append(len(codes) - SHINGLE + 1)
            size += counts[-1]
            end += 1
        # Hash every position of the concatenated texts, then drop the 3-grams that cross a boundary.
        codes = np.concatenate(parts).astype(np.uint64)
        h = _shingle_hashes(codes)
        lengths = np.array([len(p) for p in parts])
        valid = np.ones(len(h), dtype=bool)
        ends = np.cumsum(lengths)[:-1]
        for back in range(1, SHINGLE):
            valid[ends - back] = False
        h = h[valid]
        offsets = np.r_[0, np.cumsum(counts)[:-1]]
        buf = np.empty_like(h)
        with np.errstate(over="ignore"):
            for k in range(NUM_PERM):  # one permutation at a time: in place, in cache
                np.multiply(h, _A[k], out=buf)
                buf += _B[k]
                buf >>= np.uint64(32)
                sigs[start:end, k] = np.minimum.reduceat(buf, offsets)
        start = end
    return sigs[np.array(distinct, dtype=np.int64)]


def jaccard(a: str, b: str) -> float:
    """Exact Jaccard similarity of the shingle sets of two normalised texts."""
    sa, sb = set(shingles(a)), set(shingles(b))
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def stable_hash(text: str) -> int:
    """A 63-bit hash that is the same in every process (Python's hash() is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big") >> 1
