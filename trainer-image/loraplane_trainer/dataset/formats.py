"""Record formats: prompt/completion, chat messages, and mapped columns (Alpaca, CSV, ...).

`to_example` turns one parsed record into an `Example` or raises `RecordError` with a
message that names the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .example import ROLES, Example

FORMATS = ("auto", "prompt-completion", "chat", "mapped")


class RecordError(ValueError):
    """A record that cannot become an example; the message names the field."""


@dataclass(frozen=True)
class Mapping:
    """Column names of the mapped format."""

    prompt: str = "prompt"
    completion: str = "completion"
    input: str | None = None
    system: str | None = None
    intent: str | None = None

    @classmethod
    def from_spec(cls, spec: Any) -> Mapping | None:
        if spec is None:
            return None
        return cls(spec.prompt, spec.completion, spec.input, spec.system, spec.intent)


# Column layouts `auto` recognises besides prompt/completion and messages.
KNOWN_MAPPINGS = (
    Mapping(prompt="instruction", input="input", completion="output"),  # Alpaca
    Mapping(prompt="question", completion="answer"),
    Mapping(prompt="query", completion="response"),
    Mapping(prompt="input", completion="output"),
)


def detect(record: dict[str, Any], mapping: Mapping | None) -> str:
    """Which format a record is in."""
    if "messages" in record:
        return "chat"
    if mapping is not None and mapping.prompt in record:
        return "mapped"
    if "prompt" in record or "completion" in record:
        return "prompt-completion"
    for known in KNOWN_MAPPINGS:
        if known.prompt in record and known.completion in record:
            return "mapped"
    raise RecordError(
        f"unknown record format: fields {sorted(record)[:8]}; expected prompt/completion, messages, "
        "or columns named by dataset.fieldMapping"
    )


def to_example(record: Any, fmt: str = "auto", mapping: Mapping | None = None) -> Example:
    """One record as an Example."""
    if not isinstance(record, dict):
        raise RecordError(f"record must be a JSON object, got {_type(record)}")
    kind = detect(record, mapping) if fmt == "auto" else fmt
    if kind == "chat":
        messages = _chat(record)
    elif kind == "prompt-completion":
        messages = _pair(record, Mapping())
    elif kind == "mapped":
        chosen = mapping or next(
            (m for m in KNOWN_MAPPINGS if m.prompt in record and m.completion in record), Mapping()
        )
        messages = _pair(record, chosen)
    else:
        raise RecordError(f"unknown format {kind!r}; expected one of {', '.join(FORMATS)}")
    intent_key = (mapping.intent if mapping and mapping.intent else None) or "intent"
    return Example(messages=messages, intent=_intent(record, intent_key), tags=_tags(record))


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def _valid_unicode(value: str, where: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RecordError(f"{where} holds an invalid unicode escape (lone surrogate) at character {e.start}") from e
    return value


def _text(record: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    if key not in record or (record[key] is None and not required):
        if required:
            raise RecordError(f"missing field {key!r}")
        return None
    value = record[key]
    if not isinstance(value, str):
        raise RecordError(f"field {key!r} must be a string, got {_type(value)}")
    if required and not value.strip():
        raise RecordError(f"field {key!r} is empty")
    return _valid_unicode(value, f"field {key!r}")


def _pair(record: dict[str, Any], mapping: Mapping) -> list[dict[str, str]]:
    prompt = _text(record, mapping.prompt)
    if mapping.input:
        extra = _text(record, mapping.input, required=False)
        if extra and extra.strip():
            prompt = f"{prompt}\n\n{extra}"
    completion = _text(record, mapping.completion)
    messages = []
    if mapping.system:
        system = _text(record, mapping.system, required=False)
        if system and system.strip():
            messages.append({"role": "system", "content": system})
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    return messages


def _chat(record: dict[str, Any]) -> list[dict[str, str]]:
    if "messages" not in record:
        raise RecordError("missing field 'messages'")
    raw = record["messages"]
    if not isinstance(raw, list):
        raise RecordError(f"field 'messages' must be an array, got {_type(raw)}")
    if not raw:
        raise RecordError("field 'messages' is empty")
    messages = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise RecordError(f"{where} must be an object, got {_type(msg)}")
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise RecordError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise RecordError(f"{where}.content must be a string, got {_type(content)}")
        if not content.strip():
            raise RecordError(f"{where}.content is empty")
        messages.append({"role": role, "content": _valid_unicode(content, f"{where}.content")})
    if messages[-1]["role"] != "assistant":
        raise RecordError("the last message must be the assistant's answer")
    if not any(m["role"] == "user" for m in messages):
        raise RecordError("messages need at least one user turn")
    return messages


def _intent(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"field {key!r} must be a string, got {_type(value)}")
    return value.strip() or None


def _tags(record: dict[str, Any]) -> list[str]:
    value = record.get("tags")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise RecordError("field 'tags' must be an array of strings")
    return list(value)
