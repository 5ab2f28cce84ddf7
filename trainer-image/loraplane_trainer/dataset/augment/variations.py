"""Seeded prompt variations: rephrasing templates, casing, punctuation, realistic typos, greetings.

Completions are never touched. The same seed, example and index always give the same
variation, so a re-run trains on the same data.
"""

from __future__ import annotations

import random
import re

from ..example import Example
from ..text import stable_hash

TEMPLATES = (
    "Quick question: {p}",
    "{p} Thanks!",
    "{p} Thanks in advance.",
    "Can you tell me: {p}",
    "I was wondering, {p}",
    "{p} Please help.",
)
GREETINGS = ("Hi, ", "Hello! ", "Hey there, ", "Hi team, ", "Good morning, ")
GREETING_RE = re.compile(r"^\s*(?:hi|hello|hey|good (?:morning|afternoon|evening))(?: there| team)?\s*[,!.]*\s*",
                         re.IGNORECASE)
# Neighbouring keys on a QWERTY keyboard: the typos people actually make.
NEIGHBOURS = {
    "a": "qwsz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc", "g": "ftyhbv",
    "h": "gyujnb", "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop", "m": "njk", "n": "bhjm",
    "o": "iklp", "p": "ol", "q": "wa", "r": "edft", "s": "awedxz", "t": "rfgy", "u": "yhji",
    "v": "cfgb", "w": "qase", "x": "zsdc", "y": "tghu", "z": "asx",
}
METHODS = ("template", "casing", "punctuation", "typos", "greeting")


def _lower_first(p: str) -> str:
    """Lower-case the first letter unless it starts an acronym ("FAQ", "EU")."""
    return p if p[:2].isupper() else p[:1].lower() + p[1:]


def template(p: str, rng: random.Random) -> str:
    chosen = rng.choice(TEMPLATES)
    return chosen.format(p=p if chosen.startswith("{p}") else _lower_first(p))


def casing(p: str, rng: random.Random) -> str:
    return rng.choice((p.lower(), p[:1].upper() + p[1:].lower(), p.upper() if len(p) < 60 else p.lower()))


def punctuation(p: str, rng: random.Random) -> str:
    stripped = p.rstrip("?!. ")
    return rng.choice((stripped, stripped + "??", stripped + "?!", re.sub(r"[,'’]", "", p)))


def typos(p: str, rng: random.Random) -> str:
    words = p.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not candidates:
        return p
    for i in rng.sample(candidates, k=min(len(candidates), rng.choice((1, 1, 2)))):
        w = words[i]
        k = rng.randrange(1, len(w) - 1)
        kind = rng.choice(("swap", "drop", "double", "neighbour"))
        if kind == "swap":
            w = w[: k] + w[k + 1] + w[k] + w[k + 2:]
        elif kind == "drop":
            w = w[:k] + w[k + 1:]
        elif kind == "double":
            w = w[:k] + w[k] + w[k:]
        elif w[k].lower() in NEIGHBOURS:
            w = w[:k] + rng.choice(NEIGHBOURS[w[k].lower()]) + w[k + 1:]
        words[i] = w
    return " ".join(words)


def greeting(p: str, rng: random.Random) -> str:
    if GREETING_RE.match(p):
        rest = GREETING_RE.sub("", p, count=1)
        return rest[:1].upper() + rest[1:]
    return rng.choice(GREETINGS) + _lower_first(p)


FUNCTIONS = {"template": template, "casing": casing, "punctuation": punctuation, "typos": typos, "greeting": greeting}


def variations(ex: Example, count: int, seed: int, methods: list[str] | tuple[str, ...] = METHODS) -> list[Example]:
    """Up to `count` distinct variations of an example's last user prompt."""
    methods = [m for m in methods if m in FUNCTIONS] or list(METHODS)
    original = ex.prompt.split("\n")[-1] if "\n" in ex.prompt else ex.prompt
    seen = {original}
    out: list[Example] = []
    for k in range(count):
        rng = random.Random(stable_hash(f"{seed}:{ex.origin}:{k}"))
        for _ in range(6):
            prompt = original
            for method in rng.sample(methods, k=min(len(methods), rng.choice((1, 2)))):
                prompt = FUNCTIONS[method](prompt, rng)
            prompt = prompt.strip()
            if prompt and prompt not in seen:
                seen.add(prompt)
                out.append(ex.with_prompt(prompt, "variation"))
                break
    return out
