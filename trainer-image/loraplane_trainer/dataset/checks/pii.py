"""Personal data: e-mail addresses, phone numbers, card numbers and keys. Values are never echoed in full.

Every pattern runs in time linear in the text: quantifiers are bounded, and e-mail
addresses are looked for only around an "@" (a pattern that starts at every word and
scans ahead for one is quadratic on text such as "a.a.a.…").
"""

from __future__ import annotations

import re
from typing import Any

from ..example import Example
from .base import Check, Finding, Locations

# RFC 5321 limits: a local part has at most 64 characters, a domain at most 255.
MAX_LOCAL, MAX_DOMAIN = 64, 255
_LOCAL = re.compile(r"[\w+-][\w.+-]{0,63}$")
_DOMAIN = re.compile(r"[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}\.[a-zA-Z]{2,24}\b")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{2,4}[\s.-]\d{3,4}[\s.-]?\d{3,5}(?![\w])")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
KEYS = re.compile(
    r"\b(?:AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,512}|gh[pousr]_[A-Za-z0-9]{30,512}|xox[abpr]-[A-Za-z0-9-]{10,512}"
    r"|AIza[0-9A-Za-z_-]{35})\b|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)


def luhn(digits: str) -> bool:
    total, double = 0, False
    for ch in reversed(digits):
        d = int(ch) * (2 if double else 1)
        total += d - 9 if d > 9 else d
        double = not double
    return total % 10 == 0


def mask(kind: str, value: str) -> str:
    """A hint of the value that identifies the spot, never the value."""
    if kind == "e-mail":
        user, _, domain = value.partition("@")
        return f"{user[:1]}***@{domain}"
    digits = re.sub(r"\D", "", value)
    if kind in ("phone", "card number"):
        return f"***{digits[-2:]}"
    return f"{value[:4]}***"


def emails(text: str) -> list[str]:
    """The e-mail addresses in a text, found from each "@" outwards within RFC length limits."""
    out, after = [], 0
    at = text.find("@")
    while at != -1:
        local = _LOCAL.search(text, max(after, at - MAX_LOCAL), at)
        domain = _DOMAIN.match(text, at + 1, at + 1 + MAX_DOMAIN)
        if local and domain and (local.start() == 0 or not _word_char(text[local.start() - 1])):
            out.append(text[local.start() : domain.end()])
            after = domain.end()
        at = text.find("@", max(at + 1, after))
    return out


def _word_char(c: str) -> bool:
    return c.isalnum() or c in "_.+-"


def scan(text: str) -> list[tuple[str, str]]:
    """(kind, masked value) of each piece of personal data in a text."""
    found = [("e-mail", value) for value in emails(text)]
    found += [("key", m.group()) for m in KEYS.finditer(text)]
    long_numbers = []  # 13-19 digit runs: card numbers when they pass Luhn, never phone numbers
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        long_numbers.append(m.span())
        if 13 <= len(digits) <= 19 and luhn(digits):
            found.append(("card number", m.group()))
    for m in PHONE.finditer(text):
        inside = any(a <= m.start() and m.end() <= b for a, b in long_numbers)
        if 9 <= len(re.sub(r"\D", "", m.group())) <= 15 and not inside:
            found.append(("phone", m.group()))
    return [(kind, mask(kind, value)) for kind, value in found]


class PiiCheck(Check):
    name = "pii"

    def __init__(self, mode: str):
        self.mode = mode
        self.found = Locations()
        self.kinds: dict[str, int] = {}

    def observe(self, index: int, ex: Example) -> None:
        if self.mode == "off":
            return
        hits = [hit for m in ex.messages for hit in scan(m["content"])]
        if hits:
            for kind, _ in hits:
                self.kinds[kind] = self.kinds.get(kind, 0) + 1
            self.found.add(ex, ", ".join(f"{kind} {masked}" for kind, masked in hits[:3]))

    def finish(self, ctx: Any) -> list[Finding]:
        if not self.found.count:
            return []
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items()))
        severity = "error" if self.mode == "error" else "warning"
        return [Finding(self.name, severity, self.found.count,
                        f"{self.found.count} example(s) contain personal data ({kinds})", self.found.items)]
