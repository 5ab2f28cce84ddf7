"""Mixed styles in the answers: length outliers, markdown vs plain text, role prefixes, casing,
stray whitespace and mixed languages. A model learns the style it is shown, inconsistencies included.

Languages are identified by lingua (see meaning/language.py), once per distinct answer."""

from __future__ import annotations

import math
import re
from array import array
from typing import Any

from ..example import Example
from ..meaning import LANGUAGE, missing
from ..meaning.language import Languages, identify
from .base import Check, Finding, Location, Locations

# Each alternative stops at the next character that could start it again, so a search is linear
# ("[[[[…" or "[a]([a](…" would otherwise be rescanned from every bracket).
MARKDOWN = re.compile(
    r"(?m)^\s{0,3}(?:#{1,6}\s|[-*+]\s|\d+\.\s|```|>\s)|\*\*[^*\n]+\*\*|\[[^\[\]\n]+\]\([^()\s]+\)|`[^`\n]+`"
)
PREFIX = re.compile(r"^\s*(answer|a|assistant|response|bot|agent|reply|output|support)\s*:\s*", re.IGNORECASE)
MIN_LOG_RATIO = math.log(3)  # an outlier is at least 3 times longer or shorter than the median

class StyleCheck(Check):
    """Several style findings from one pass; each has its own check name."""

    name = "style"

    def __init__(self, length_outlier_z: float):
        self.z = length_outlier_z
        self.log_lengths = array("f")
        self.where: list[tuple[str, int]] = []  # (file, line) per example: needed to name outliers at the end
        self.markdown, self.plain = Locations(), Locations()
        self.prefixed = Locations()
        self.lower, self.upper = Locations(), Locations()
        self.whitespace = Locations()
        self.languages: dict[str, Locations] = {}
        self.answers: dict[str, int] = {}  # distinct answer -> index (languages are identified per answer)
        self.answer_of: array = array("q")

    def observe(self, index: int, ex: Example) -> None:
        text = ex.completion
        self.log_lengths.append(math.log(len(text) + 1))
        self.where.append((ex.file, ex.line))
        (self.markdown if MARKDOWN.search(text) else self.plain).add(ex)
        if m := PREFIX.match(text):
            self.prefixed.add(ex, repr(m.group().strip()))
        first = next((c for c in text if c.isalpha()), "")
        if first:
            (self.lower if first.islower() else self.upper).add(ex)
        if text != text.strip() or any(line != line.rstrip() for line in text.split("\n")):
            self.whitespace.add(ex, "leading or trailing whitespace")
        self.answer_of.append(self.answers.setdefault(text[:1000], len(self.answers)))

    def finish(self, ctx: Any) -> list[Finding]:
        n = ctx.examples
        out: list[Finding] = []
        if outliers := self._length_outliers():
            out.append(outliers)
        if self.markdown.count and self.plain.count:
            minority, label = min((self.markdown, "markdown"), (self.plain, "plain text"), key=lambda x: x[0].count)
            out.append(Finding("markdown", "warning", minority.count,
                               f"answers mix markdown ({self.markdown.count}) and plain text ({self.plain.count}); "
                               f"the {minority.count} in {label} are listed", minority.items))
        if self.prefixed.count:
            out.append(Finding("prefix", "warning", self.prefixed.count,
                               f"{self.prefixed.count} answer(s) start with a role prefix such as 'Answer:' "
                               "that the model would learn to repeat", self.prefixed.items))
        if self.lower.count and self.upper.count:
            minority, label = min((self.lower, "lower case"), (self.upper, "upper case"), key=lambda x: x[0].count)
            out.append(Finding("casing", "warning", minority.count,
                               f"answers start in upper case ({self.upper.count}) and lower case "
                               f"({self.lower.count}); the {minority.count} in {label} are listed", minority.items))
        if self.whitespace.count:
            out.append(Finding("whitespace", "warning", self.whitespace.count,
                               f"{self.whitespace.count} answer(s) have leading or trailing whitespace",
                               self.whitespace.items))
        if missing(LANGUAGE):
            found = Languages([None] * len(self.answers))
        else:
            occurrences = [0] * len(self.answers)
            for a in self.answer_of:
                occurrences[a] += 1
            found = identify(list(self.answers), occurrences)
        for (file, line), a in zip(self.where, self.answer_of, strict=True):
            if lang := found.codes[a]:
                self.languages.setdefault(lang, Locations()).add(Location(file, line, lang))
        if len(self.languages) > 1:
            ranked = sorted(self.languages.items(), key=lambda kv: -kv[1].count)
            main = ranked[0][0]
            others = [loc for _, locs in ranked[1:] for loc in locs.items]
            count = sum(locs.count for _, locs in ranked[1:])
            mix = ", ".join(f"{lang} {locs.count}" for lang, locs in ranked)
            out.append(Finding("language", "warning", count,
                               f"answers are in several languages ({mix}); {count} not in {main}", others))
        ctx.stats["styles"] = {"markdown": self.markdown.count, "plain": self.plain.count,
                               "languages": {k: v.count for k, v in self.languages.items()},
                               "languagesUnverified": found.unverified, "examples": n}
        return out

    def _length_outliers(self) -> Finding | None:
        n = len(self.log_lengths)
        if n < 20:
            return None
        mean = sum(self.log_lengths) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in self.log_lengths) / n)
        if std < 1e-6:
            return None
        found = Locations()
        median = sorted(self.log_lengths)[n // 2]
        for (file, line), x in zip(self.where, self.log_lengths, strict=True):
            z = (x - mean) / std
            # A set of very even answers has a tiny spread: also require a real difference in size.
            if abs(z) > self.z and abs(x - median) > MIN_LOG_RATIO:
                chars = round(math.exp(x) - 1)
                found.add(Location(file, line, f"{chars} characters, z={z:+.1f}"))
        if not found.count:
            return None
        return Finding("length-outliers", "warning", found.count,
                       f"{found.count} answer(s) are far longer or shorter than the rest "
                       f"(|z| of log length > {self.z:g}; median {round(math.exp(median) - 1)} "
                       "characters)", found.items, threshold=self.z)

