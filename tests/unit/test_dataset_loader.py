"""Loading: formats, sources, malformed lines with file and line, streaming limits, fuzzing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loraplane.api.finetunejob import DatasetSpec
from loraplane_trainer.dataset import sources
from loraplane_trainer.dataset.example import Example
from loraplane_trainer.dataset.formats import Mapping
from loraplane_trainer.dataset.sources import Malformed, SourceError, open_configmap, open_inline, open_uri


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def load(path: Path, **kw) -> tuple[list[Example], list[Malformed]]:
    items = list(open_uri(str(path), **kw))
    return [i for i in items if isinstance(i, Example)], [i for i in items if isinstance(i, Malformed)]


def test_prompt_completion_jsonl_keeps_intent_tags_and_lines(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"prompt": "Q1", "completion": "A1", "intent": "x", "tags": ["t"]}\n\n'
                 '{"prompt": "Q2", "completion": "A2"}\n')
    examples, bad = load(path)
    assert not bad
    assert [(e.prompt, e.completion, e.intent, e.tags, e.line) for e in examples] == [
        ("Q1", "A1", "x", ["t"], 1), ("Q2", "A2", None, [], 3)]
    assert examples[0].to_record()["messages"] == [{"role": "user", "content": "Q1"},
                                                   {"role": "assistant", "content": "A1"}]


def test_multi_turn_chat_learns_the_last_answer(tmp_path):
    record = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Plans?"},
                           {"role": "assistant", "content": "Three."}]}
    examples, bad = load(write(tmp_path, "c.jsonl", json.dumps(record) + "\n"))
    assert not bad and examples[0].completion == "Three." and examples[0].prompt == "Hi\nPlans?"
    assert examples[0].messages[0]["role"] == "system"


def test_alpaca_columns_are_detected(tmp_path):
    path = write(tmp_path, "a.json", json.dumps([
        {"instruction": "Translate", "input": "hello", "output": "hallo"},
        {"instruction": "Add", "input": "", "output": "2"},
    ], indent=1))
    examples, bad = load(path)
    assert not bad
    assert examples[0].prompt == "Translate\n\nhello" and examples[1].prompt == "Add"
    assert [e.line for e in examples] == [2, 7]


def test_csv_with_a_field_mapping(tmp_path):
    path = write(tmp_path, "d.csv", 'q,a,label\n"How, exactly?",Like this.,howto\nEmpty,,x\n')
    examples, bad = load(path, fmt="mapped", mapping=Mapping(prompt="q", completion="a", intent="label"))
    assert [(e.prompt, e.completion, e.intent) for e in examples] == [("How, exactly?", "Like this.", "howto")]
    assert [(b.line, b.message) for b in bad] == [(3, "field 'a' is empty")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "a", "completion": ', "invalid JSON"),
        ('{"prompt": "a"}', "missing field 'completion'"),
        ('{"prompt": 3, "completion": "b"}', "field 'prompt' must be a string, got number"),
        ('{"prompt": "  ", "completion": "b"}', "field 'prompt' is empty"),
        ('["a", "b"]', "record must be a JSON object, got array"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "messages[0].role must be one of"),
        ('{"messages": [{"role": "user", "content": "x"}]}', "the last message must be the assistant's answer"),
        ('{"text": "x"}', "unknown record format"),
        ('{"prompt": "a", "completion": "b", "tags": "x"}', "field 'tags' must be an array of strings"),
    ],
)
def test_malformed_lines_name_the_line_and_the_field(tmp_path, line, message):
    good = '{"prompt": "q", "completion": "a"}'
    examples, bad = load(write(tmp_path, "d.jsonl", f"{good}\n{line}\n{good}\n"))
    assert len(examples) == 2, "the lines around a bad one are still loaded"
    assert len(bad) == 1 and bad[0].line == 2 and message in bad[0].message
    assert bad[0].file.endswith("d.jsonl")


def test_bad_utf8_and_bom(tmp_path):
    good = b'{"prompt": "q", "completion": "a"}\n'
    examples, bad = load(write(tmp_path, "d.jsonl", b"\xef\xbb\xbf" + good + b'{"prompt": "\xff"}\n' + good))
    assert len(examples) == 2
    assert [(b.line, b.skipped) for b in bad] == [(1, False), (2, True)]
    assert "byte order mark" in bad[0].message and "invalid UTF-8" in bad[1].message


def test_a_huge_line_is_reported_not_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1000)
    good = '{"prompt": "q", "completion": "a"}\n'
    huge = json.dumps({"prompt": "x" * 5000, "completion": "a"}) + "\n"
    examples, bad = load(write(tmp_path, "d.jsonl", good + huge + good))
    assert [e.line for e in examples] == [1, 3]
    assert bad[0].line == 2 and "longer than 1000 bytes" in bad[0].message


def test_hash_is_the_sha256_of_the_file(tmp_path):
    data = "".join(json.dumps({"prompt": f"q{i}", "completion": "a"}) + "\n" for i in range(5000))
    path = write(tmp_path, "d.jsonl", data)
    reader = open_uri(str(path))
    assert len(list(reader)) == 5000
    assert reader.sha256 == hashlib.sha256(data.encode()).hexdigest()


def test_relative_paths_resolve_against_base_dir_and_file_uris(tmp_path):
    write(tmp_path, "d.jsonl", '{"prompt": "q", "completion": "a"}\n')
    assert len(list(open_uri("d.jsonl", base_dir=tmp_path))) == 1
    assert len(list(open_uri(f"file://{tmp_path}/d.jsonl"))) == 1
    with pytest.raises(SourceError, match="file not found"):
        open_uri("missing.jsonl", base_dir=tmp_path)


def test_configmap_and_inline_sources(tmp_path, monkeypatch):
    (tmp_path / "cm" / "data").mkdir(parents=True)
    (tmp_path / "cm" / "data" / "set.jsonl").write_text('{"prompt": "q", "completion": "a"}\n')
    monkeypatch.setenv("LORAPLANE_CONFIGMAP_DIR", str(tmp_path / "cm"))
    items = list(open_configmap("data", "set.jsonl"))
    assert items[0].file == "configmap/data/set.jsonl"
    spec = DatasetSpec.model_validate({"inline": [{"prompt": "q", "completion": "a"}, {"prompt": "q2"}]})
    items = list(open_inline(spec.inline))
    assert isinstance(items[0], Example) and isinstance(items[1], Malformed) and items[1].line == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.sampled_from([b'{"prompt": "q", "completion": "a"}', b'{"prompt": "q", "compl', b'{"prompt": null}',
                     b'{"messages": [{"role": "user"}]}', b"[" * 5000, b'{"prompt": 1e999, "completion": []}',
                     b"\xef\xbb\xbf{}", b'{"prompt": "\\ud800", "completion": "a"}',
                     b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',
                     b'{"messages": {"role": "user"}}', b'{"instruction": "i", "input": 3, "output": "o"}']),
), max_size=20))
@pytest.mark.parametrize("fmt", ["auto", "chat", "prompt-completion", "mapped"])
def test_fuzzed_bytes_never_crash_and_every_problem_has_a_line(tmp_path, fmt, chunks):
    data = b"\n".join(chunks)
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    items = list(open_uri(str(path), fmt=fmt))
    lines = data.split(b"\n")
    for item in items:
        assert 1 <= item.line <= len(lines)
        if isinstance(item, Malformed):
            assert item.message
        else:
            assert item.completion.strip() and item.prompt.strip()
