"""Chat examples to token ids with a completion-only loss mask, using the base model's chat template."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetInvalid

IGNORE = -100


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE on system/user/template tokens: the loss is on assistant turns only

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def target_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def read_chat_jsonl(path: str | Path) -> list[dict]:
    """Examples of a prepared split: one {"messages": [...], ...} object per line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetInvalid(f"{path}:{n}: not JSON: {exc}") from exc
            messages = record.get("messages")
            if not messages or not any(m.get("role") == "assistant" for m in messages):
                raise DatasetInvalid(f"{path}:{n}: needs `messages` with at least one assistant turn")
            out.append(record)
    return out


def _segments(tokenizer, messages: list[dict]) -> list[tuple[str, bool]]:
    """Split the rendered conversation into (text, is_assistant_content) pieces.

    Renders growing prefixes of the conversation: each assistant turn is the text
    between its generation prompt and the end of the turn (including the end-of-turn
    token, so the model learns to stop). Templates that are not prefix-stable get
    the last assistant turn only.
    """
    def render(msgs, gen=False):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    pieces: list[tuple[str, bool]] = []
    prev = ""
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            head = render(messages[:i], gen=True)
            if not head.startswith(prev):
                return _last_turn_only(tokenizer, messages)
            pieces.append((head[len(prev):], False))
            prev = head
        full = render(messages[: i + 1])
        if not full.startswith(prev):
            return _last_turn_only(tokenizer, messages)
        pieces.append((full[len(prev):], message["role"] == "assistant"))
        prev = full
    return pieces


def _last_turn_only(tokenizer, messages: list[dict]) -> list[tuple[str, bool]]:
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    head = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages[: last + 1], tokenize=False)
    if not full.startswith(head):
        raise DatasetInvalid("the base model's chat template renders a turn differently with and without history")
    return [(head, False), (full[len(head):], True)]


def tokenize_chat(tokenizer, messages: list[dict], max_tokens: int) -> TokenizedExample:
    """Token ids and labels of one conversation, truncated to max_tokens."""
    ids: list[int] = []
    labels: list[int] = []
    for text, trained in _segments(tokenizer, messages):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        labels.extend(piece if trained else [IGNORE] * len(piece))
    return TokenizedExample(ids[:max_tokens], labels[:max_tokens])


def prompt_text(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """The generation prompt up to the last assistant turn, and that turn's reference answer."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt = tokenizer.apply_chat_template(messages[:last], tokenize=False, add_generation_prompt=True)
    return prompt, messages[last]["content"]


def tokenize_all(tokenizer, records: list[dict], max_tokens: int) -> list[TokenizedExample]:
    """Tokenize every record; examples left with no assistant token after truncation are dropped."""
    out = [tokenize_chat(tokenizer, r["messages"], max_tokens) for r in records]
    return [e for e in out if e.target_tokens > 0]
