"""One training example, normalised to chat form, with where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Source = Literal["original", "variation", "synthetic", "back-translation"]
ROLES = ("system", "user", "assistant")


@dataclass
class Example:
    """A chat example: the trainer learns the assistant turns; `line` is 1-based in `file`."""

    messages: list[dict[str, str]]
    intent: str | None = None
    tags: list[str] = field(default_factory=list)
    source: Source = "original"
    file: str = ""
    line: int = 0

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def prompt(self) -> str:
        """The user side of the conversation up to the last answer (what similarity is measured on)."""
        last = self._last_assistant()
        return "\n".join(m["content"] for m in self.messages[:last] if m["role"] == "user")

    @property
    def completion(self) -> str:
        """The last assistant answer."""
        return self.messages[self._last_assistant()]["content"]

    def _last_assistant(self) -> int:
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i]["role"] == "assistant":
                return i
        raise ValueError("example has no assistant turn")

    def with_prompt(self, prompt: str, source: Source) -> Example:
        """A copy whose last user turn is replaced (the answer is untouched)."""
        messages = [dict(m) for m in self.messages]
        last = self._last_assistant()
        for i in range(last - 1, -1, -1):
            if messages[i]["role"] == "user":
                messages[i]["content"] = prompt
                break
        return Example(messages, self.intent, list(self.tags), source, self.file, self.line)

    def to_record(self) -> dict[str, Any]:
        """The JSONL record the trainer reads."""
        return {
            "messages": self.messages,
            "intent": self.intent,
            "tags": self.tags,
            "source": self.source,
            "origin": self.origin,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Example:
        """Inverse of `to_record`."""
        file, _, line = str(record.get("origin", ":0")).rpartition(":")
        return cls(
            messages=record["messages"],
            intent=record.get("intent"),
            tags=list(record.get("tags") or []),
            source=record.get("source", "original"),
            file=file,
            line=int(line) if line.isdigit() else 0,
        )
