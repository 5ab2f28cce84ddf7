"""Where a session's prompts come from: a JSONL file (e.g. the held-out validation split) or a probe set."""

from __future__ import annotations

import json
import random
from pathlib import Path

from .safety import load_probes
from .session import Item


class PromptSourceError(ValueError):
    """A prompt file that cannot be read; the message names the file and the line."""


def read_prompt_file(path: Path) -> list[tuple[str, str | None]]:
    """(prompt, reference) from JSONL of {prompt, completion} or {messages: [...]} (last user turn)."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptSourceError(f"{path}:{n}: not JSON: {exc.msg}") from exc
        if isinstance(row, dict) and isinstance(row.get("prompt"), str):
            out.append((row["prompt"], row.get("completion")))
        elif isinstance(row, dict) and isinstance(row.get("messages"), list):
            users = [m.get("content") for m in row["messages"] if isinstance(m, dict) and m.get("role") == "user"]
            answers = [m.get("content") for m in row["messages"]
                       if isinstance(m, dict) and m.get("role") == "assistant"]
            if not users:
                raise PromptSourceError(f"{path}:{n}: no user message")
            out.append((users[-1], answers[-1] if answers else None))
        else:
            raise PromptSourceError(f"{path}:{n}: needs a 'prompt' or a 'messages' field")
    if not out:
        raise PromptSourceError(f"{path}: no prompts")
    return out


def sample(prompts: list[tuple[str, str | None]], n: int | None, seed: int) -> list[tuple[str, str | None]]:
    """n prompts in a seeded random order (all of them when n is None), duplicates dropped."""
    unique = list(dict.fromkeys(prompts))
    random.Random(seed).shuffle(unique)
    return unique[:n] if n else unique


def probe_prompts(uri: str | None) -> list[tuple[str, str | None]]:
    return [(p.prompt, None) for p in load_probes(uri)]


def items_from(prompts: list[tuple[str, str | None]], answers: dict[str, list[str]]) -> list[Item]:
    return [Item(id=f"item-{n + 1}", prompt=p, reference=ref, answers={v: a[n] for v, a in answers.items()})
            for n, (p, ref) in enumerate(prompts)]
