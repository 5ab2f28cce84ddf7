"""Back-translation against a real HTTP server on localhost that speaks the OpenAI chat protocol.

The server stands in for a translation model: asked for German it answers a marked
translation, asked for English it answers a reworded question. For a few prompts it
"translates back" into a question of the validation set, as a real model may: those must
be rejected, and no answer may change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aiohttp import web
from loraplane.api import FineTuneJobSpec
from loraplane_trainer.dataset import prepare
from loraplane_trainer.dataset.augment import synthetic
from loraplane_trainer.dataset.augment.back_translation import TEMPLATE

from tests.integration.test_dataset_synthetic import serve

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "examples" / "data" / "support.jsonl"
LEAKS = 3


class Translator:
    """German: "[de] <text>"; English from "[de] <text>": a reworded question (or a validation one)."""

    def __init__(self, validation_prompts: list[str], key: str = "bt-key"):
        self.validation, self.key = validation_prompts, key
        self.requests: list[dict] = []
        self.leaked: list[str] = []

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        content = body["messages"][0]["content"]
        language = re.match(r"Translate the following text into (\w+)\.", content).group(1)
        text = content.split("\n\n", 1)[1]
        if language != "English":
            reply = f"[{language[:2].lower()}] {text}"
        elif len(self.leaked) < LEAKS:
            reply = self.validation[len(self.leaked)]
            self.leaked.append(reply)
        else:
            original = text.split("] ", 1)[1].rstrip("?.!")
            reply = f"Could you explain to me {original[0].lower()}{original[1:]}, please?"
        return web.json_response({"id": "x", "object": "chat.completion", "model": body["model"], "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}]})


def spec(endpoint: str | None, count: int = 0) -> FineTuneJobSpec:
    aug = {"backTranslation": {"endpoint": endpoint, "model": "translator", "count": count,
                               "pivotLanguages": ["German", "French"],
                               "apiKeySecretRef": {"name": "bt", "key": "key"}}} if endpoint else None
    return FineTuneJobSpec.model_validate({"baseModel": {"name": "m"}, "dataset": {"uri": str(SUPPORT)},
                                           "augmentation": aug, "output": {"uri": "file:///x"}})


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(synthetic, "BACKOFF_SECONDS", 0.01)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_back_translation_rewords_training_prompts_only_and_never_leaks_validation(tmp_path):
    plain = prepare(spec(None), tmp_path / "plain")
    validation = read(plain.validation_path)
    translator = Translator([v["messages"][0]["content"] for v in validation])
    with serve(translator) as endpoint:
        prepared = prepare(spec(endpoint, 40), tmp_path / "bt", secrets={"bt/key": "bt-key"})
    stats = prepared.report.stats["backTranslation"]
    assert stats["requested"] == 40 and stats["received"] == 40 and stats["failed"] == 0
    assert len(translator.requests) == 80  # there and back
    assert {r["messages"][0]["content"].split(".")[0] for r in translator.requests} >= {
        "Translate the following text into German", "Translate the following text into English"}
    assert read(prepared.validation_path) == validation, "the validation side is untouched"
    train = read(prepared.train_path)
    added = [r for r in train if r["source"] == "back-translation"]
    assert prepared.report.augmented["back-translation"] == len(added) == 40 - LEAKS
    assert prepared.report.augmentation_rejected.get("near-validation", 0) >= LEAKS
    val_prompts = {v["messages"][0]["content"] for v in validation}
    assert not val_prompts & {r["messages"][0]["content"] for r in added}
    originals = {r["origin"]: r for r in read(plain.train_path)}
    for r in added:
        assert r["messages"][0]["content"].startswith("Could you explain to me")
        assert r["messages"][-1] == originals[r["origin"]]["messages"][-1], "answers are never changed"
    assert TEMPLATE.format(language="German", text="x").startswith("Translate")


def test_a_refused_key_stops_with_a_clear_error(tmp_path):
    from loraplane_trainer.dataset import SyntheticError

    with serve(Translator([])) as endpoint, pytest.raises(SyntheticError, match="refused the API key"):
        prepare(spec(endpoint, 2), tmp_path, secrets={"bt/key": "wrong"})
