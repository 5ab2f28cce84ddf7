"""Token counts with the base model's real tokenizer (SmolLM2-135M-Instruct) instead of the estimate."""

from __future__ import annotations

import json
from pathlib import Path

from loraplane.api.finetunejob import DatasetChecks
from loraplane_trainer.dataset import check, open_uri
from loraplane_trainer.dataset.checks.length import count_tokens

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"


def test_max_tokens_counts_with_the_chat_template(smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    report = check(open_uri(str(DATA / "bad" / "max-tokens.jsonl")), DatasetChecks(), max_tokens=1024,
                   tokenizer=tokenizer)
    finding = report.finding("max-tokens")
    expected = json.loads((DATA / "bad" / "expected.json").read_text())["max-tokens.jsonl"]["at"]
    assert finding.lines == expected and "counted with the base model's tokenizer" in finding.message
    assert report.stats["tokens"]["method"] == "tokenizer"
    clean = check(open_uri(str(DATA / "support.jsonl")), DatasetChecks(), max_tokens=64, tokenizer=tokenizer)
    longest = clean.stats["tokens"]["longest"]
    assert 30 < longest < 120, "a short support answer plus the chat template's system prompt"
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
                                        tokenize=True)
    from loraplane_trainer.dataset.example import Example

    ex = Example([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}])
    assert count_tokens(tokenizer, ex) == len(ids["input_ids"] if hasattr(ids, "keys") else ids)
