"""Prompts and answers sampled from live traffic with consent (spec.sampling), as the router exports them.

The contract between the router (which keeps them) and the CLI (which draws evaluation prompts and
preference pairs from them): the record, the read token and the preference pairs built from feedback.
A chatbot's samples are read with a token derived from its router's signing key and the chatbot's
name, so holding one chatbot's token never reads another's samples.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

CONSENT_HEADER = "x-loraplane-sample-consent"
CONSENT_VALUES = ("yes", "true", "1")
# A request whose text is longer than this is not sampled: it bounds a replica's memory at
# max_samples x MAX_SAMPLE_CHARS (32 MiB of text at the default 1,000 samples).
MAX_SAMPLE_CHARS = 32 * 1024


class SamplesError(ValueError):
    """A samples file that cannot be read; the message names the file and the line."""


class TrafficSample(BaseModel):
    """One sampled exchange: the request's messages (or prompt), the answer, and its feedback when given."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    request_id: str
    chatbot: str | None = None  # the chatbot's table key, `<namespace>.<chatbot>`
    model: str  # the served name the request asked for
    variant: str
    at: datetime
    messages: list[dict[str, str]] = Field(default_factory=list)  # chat requests: the request's turns
    prompt: str | None = None  # completions requests
    answer: str
    feedback: float | None = None  # 0..1, the router's normalised score

    def turns(self) -> list[dict[str, str]]:
        """The exchange as chat turns with the answer last (`loraplane eval create --prompts` reads these)."""
        asked = self.messages or [{"role": "user", "content": self.prompt or ""}]
        return [*asked, {"role": "assistant", "content": self.answer}]

    def to_json_line(self) -> str:
        row = self.model_dump(by_alias=True, mode="json", exclude_none=True)
        row["messages"] = self.turns()
        return json.dumps(row, ensure_ascii=False) + "\n"


def samples_token(key: bytes, chatbot: str) -> str:
    """The bearer token that reads the samples of `chatbot` (its table key, `<namespace>.<chatbot>`)
    from a router signing request ids with `key`."""
    return hmac.new(key, f"loraplane-samples\0{chatbot}".encode(), hashlib.sha256).hexdigest()


def read_samples(path: Path) -> list[TrafficSample]:
    """Samples from a JSONL export (`loraplane eval samples`); the answer is the last assistant turn."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            turns = row.get("messages") or []
            if turns and turns[-1].get("role") == "assistant":
                row = {**row, "messages": turns[:-1]}
            out.append(TrafficSample.model_validate(row))
        except (json.JSONDecodeError, AttributeError, ValidationError) as exc:
            raise SamplesError(f"{path}:{n}: not a traffic sample: {str(exc).splitlines()[0][:200]}") from exc
    return out


def _single_turn(s: TrafficSample) -> tuple[str | None, str] | None:
    """(system prompt, user prompt) of a one-question exchange; None for multi-turn ones."""
    if not s.messages:
        return (None, s.prompt) if s.prompt is not None else None
    system = [m.get("content", "") for m in s.messages if m.get("role") == "system"]
    users = [m for m in s.messages if m.get("role") != "system"]
    if len(users) != 1 or users[0].get("role") != "user" or len(system) > 1:
        return None
    return (system[0] if system else None), users[0].get("content", "")


def feedback_pairs(samples: list[TrafficSample]) -> list[dict]:
    """Preference pairs from feedback: for each question asked more than once (same system prompt and
    prompt) whose answers got different scores, the best-scored answer is chosen, the worst rejected.

    The rows have the ratings export's shape ({prompt, chosen, rejected, source}, DPO-ready). Multi-turn
    exchanges are left out: their prompt is more than one string.
    """
    groups: dict[tuple[str, str | None, str], list[TrafficSample]] = defaultdict(list)
    for s in samples:
        asked = _single_turn(s)
        if s.feedback is not None and asked is not None:
            groups[(s.model, *asked)].append(s)
    rows = []
    for (model, system, prompt), group in groups.items():
        best = max(group, key=lambda s: (s.feedback, s.at))
        worst = min(group, key=lambda s: (s.feedback, s.at))
        if best.feedback <= worst.feedback or best.answer.strip() == worst.answer.strip():
            continue
        row = {"prompt": prompt, "chosen": best.answer, "rejected": worst.answer, "source": "feedback",
               "model": model, "chosenVariant": best.variant, "rejectedVariant": worst.variant,
               "chosenScore": best.feedback, "rejectedScore": worst.feedback}
        if system is not None:
            row["system"] = system
        rows.append(row)
    return rows
