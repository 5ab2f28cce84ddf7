"""Token length: examples longer than training.maxTokens are truncated by the trainer."""

from __future__ import annotations

from typing import Any

from ..example import Example
from .base import Check, Finding, Locations

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # role markers and separators of a chat template, per message


def estimate_tokens(ex: Example) -> int:
    return sum(len(m["content"]) // CHARS_PER_TOKEN + 1 + MESSAGE_OVERHEAD for m in ex.messages)


def count_tokens(tokenizer: Any, ex: Example) -> int:
    """Tokens of the example as the trainer formats it (chat template when the tokenizer has one)."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(ex.messages, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)
    return sum(len(tokenizer.encode(m["content"])) + MESSAGE_OVERHEAD for m in ex.messages)


class TokenLengthCheck(Check):
    name = "max-tokens"

    def __init__(self, max_tokens: int | None, tokenizer: Any = None):
        self.max_tokens, self.tokenizer = max_tokens, tokenizer
        self.method = "tokenizer" if tokenizer is not None else "estimate"
        self.how = ("counted with the base model's tokenizer" if tokenizer is not None
                    else f"estimated at {CHARS_PER_TOKEN} characters per token, no tokenizer given")
        self.found = Locations()
        self.total = 0
        self.longest = 0
        self.truncated_tokens = 0

    def observe(self, index: int, ex: Example) -> None:
        n = count_tokens(self.tokenizer, ex) if self.tokenizer is not None else estimate_tokens(ex)
        self.total += n
        self.longest = max(self.longest, n)
        if self.max_tokens and n > self.max_tokens:
            self.truncated_tokens += n - self.max_tokens
            self.found.add(ex, f"{n} tokens")

    def finish(self, ctx: Any) -> list[Finding]:
        ctx.stats["tokens"] = {"method": self.method, "how": self.how, "total": self.total, "longest": self.longest,
                               "mean": round(self.total / ctx.examples, 1) if ctx.examples else 0}
        if not self.found.count:
            return []
        return [Finding(self.name, "warning", self.found.count,
                        f"{self.found.count} example(s) longer than maxTokens={self.max_tokens} would be truncated "
                        f"({self.truncated_tokens} tokens cut; {self.how})",
                        self.found.items, threshold=self.max_tokens)]
