"""The harmful-content check with an OpenAI-compatible moderation endpoint: a real HTTP server on localhost
answering the OpenAI moderation shape (the endpoint itself is emulated: no moderation model runs here), the
official openai SDK as a second client of the same server to prove the shape, batches, only the texts that
need it, the key from the secrets, and clear errors naming the field."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
from loraplane.api.finetunejob import DatasetChecks
from loraplane_trainer.dataset.checks.harmful import HarmfulCheck
from loraplane_trainer.dataset.meaning import moderation
from loraplane_trainer.dataset.meaning.moderation import ModerationError

CATEGORIES = ["harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
              "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
              "violence/graphic"]
HATEFUL = "People from that valley are vermin and deserve nothing."  # no slur: the offline classifiers miss it


class Endpoint:
    """POST /v1/moderations as OpenAI answers it; flags texts containing 'vermin' as hate."""

    def __init__(self, status: int = 200, shape: bool = True):
        self.status, self.shape, self.requests = status, shape, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if outer.status != 200:
                    self.send_response(outer.status)
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "nope"}}')
                    return
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                results = []
                for text in inputs:
                    hate = "vermin" in text
                    results.append({"flagged": hate, "categories": {c: hate and c == "hate" for c in CATEGORIES},
                                    "category_scores": {c: (0.93 if hate and c == "hate" else 0.01) for c in CATEGORIES},
                                    "category_applied_input_types": {c: ["text"] for c in CATEGORIES}})
                reply = {"id": "modr-1", "model": body.get("model", "omni-moderation-latest"), "results": results}
                data = json.dumps(reply if outer.shape else {"choices": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    e = Endpoint()
    yield e
    e.close()


def context(pairs: list[tuple[str, str]]) -> SimpleNamespace:
    """What the check reads of the analysis pass (offline meaning probe left out: the profanity classifier
    alone scores offline here, which keeps this test fast)."""
    return SimpleNamespace(examples=len(pairs), prompts=[p for p, _ in pairs], completions=[c for _, c in pairs],
                           files=["data.jsonl"] * len(pairs), lines=list(range(1, len(pairs) + 1)), stats={},
                           embedding_model=None, meaning=False)


def spec(url: str, **extra) -> DatasetChecks:
    return DatasetChecks.model_validate({"moderation": {
        "endpoint": url, "model": "omni-moderation-latest", "batchSize": 3,
        "apiKeySecretRef": {"name": "moderation", "key": "token"}, **extra}})


PAIRS = [
    ("How do I reset my password?", "Open Settings > Security and choose Reset password."),
    ("Which plans are there?", "Drift, Cumulus and Stratus."),
    ("What do you think of the valley people?", HATEFUL),
    ("Can I pay with PayPal?", "Yes, PayPal and all major cards are accepted."),
    ("You are a fucking idiot, answer me", "I am sorry you are frustrated; here is the answer."),
    ("Which plans are there?", "Drift, Cumulus and Stratus."),  # a copy: its texts are sent once
    ("Is there a mobile app?", "There are apps for iOS and Android."),
]


def test_the_endpoint_flags_what_the_offline_classifiers_miss_and_sees_only_what_needs_it(endpoint):
    checks = spec(endpoint.url)
    cfg = checks.moderation
    key = moderation.api_key(cfg.api_key_secret_ref, {"moderation/token": "sk-test"})
    ctx = context(PAIRS)
    [finding] = HarmfulCheck("warning", checks.harmful_threshold, cfg, key).finish(ctx)

    by_line = {loc.line: loc for loc in finding.locations}
    assert set(by_line) == {3, 5}  # the hateful answer (endpoint) and the insult (offline)
    assert by_line[3].detail == "answer flagged by the moderation endpoint (hate)"
    assert by_line[3].score == pytest.approx(0.93)
    assert "profanity" in by_line[5].detail and HATEFUL not in json.dumps([loc.detail for loc in finding.locations])

    sent = [t for r in endpoint.requests for t in r["body"]["input"]]
    distinct = set(ctx.prompts) | set(ctx.completions)
    assert len(sent) == len(set(sent)) == len(distinct) - 1  # each distinct text once, but the insult
    assert "You are a fucking idiot, answer me" not in sent
    assert all(len(r["body"]["input"]) <= 3 for r in endpoint.requests) and len(endpoint.requests) == 4
    assert {r["path"] for r in endpoint.requests} == {"/v1/moderations"}
    assert {r["body"]["model"] for r in endpoint.requests} == {"omni-moderation-latest"}
    assert {r["auth"] for r in endpoint.requests} == {"Bearer sk-test"}
    assert ctx.stats["harmful"]["moderation"] == {"sent": len(sent), "requests": 4, "retries": 0, "flagged": 1}


def test_max_texts_sends_the_likeliest_first(endpoint):
    checks = spec(endpoint.url, maxTexts=2)
    ctx = context(PAIRS)
    HarmfulCheck("warning", checks.harmful_threshold, checks.moderation).finish(ctx)
    assert ctx.stats["harmful"]["moderation"]["sent"] == 2 and len(endpoint.requests) == 1


def test_the_key_comes_from_the_pod_environment(monkeypatch):
    ref = DatasetChecks.model_validate({"moderation": {"endpoint": "http://x/v1", "apiKeySecretRef": {
        "name": "m", "key": "k"}}}).moderation.api_key_secret_ref
    monkeypatch.setenv(moderation.API_KEY_ENV, "from-env")
    assert moderation.api_key(ref, None) == "from-env"
    assert moderation.api_key(ref, {"m/k": "from-secret"}) == "from-secret"


@pytest.mark.parametrize(("status", "says"), [(500, "failed after 2 attempt(s): HTTP 500"),
                                              (401, "refused the API key (HTTP 401)"),
                                              (400, "answered HTTP 400")])
def test_a_failing_endpoint_is_a_clear_error_naming_the_field(monkeypatch, status, says):
    monkeypatch.setattr(moderation, "BACKOFF_SECONDS", 0.0)
    failing = Endpoint(status)
    try:
        checks = spec(failing.url, maxRetries=1)
        with pytest.raises(ModerationError) as err:
            HarmfulCheck("warning", checks.harmful_threshold, checks.moderation).finish(context(PAIRS))
    finally:
        failing.close()
    message = str(err.value)
    assert message.startswith("dataset.checks.moderation: ") and says in message
    assert HATEFUL not in message
    assert len(failing.requests) == (2 if status == 500 else 1)


def test_an_unreachable_endpoint_or_another_shape_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(moderation, "BACKOFF_SECONDS", 0.0)
    dead = spec("http://127.0.0.1:9/v1", maxRetries=0).moderation
    with pytest.raises(ModerationError, match="dataset.checks.moderation: .* failed after 1 attempt"):
        moderation.moderate(["hello"], dead)
    chat = Endpoint(shape=False)  # e.g. a chat-completions server without the moderation route
    try:
        with pytest.raises(ModerationError, match="did not answer an OpenAI moderation reply"):
            moderation.moderate(["hello"], spec(chat.url).moderation)
    finally:
        chat.close()


def test_the_official_openai_client_reads_the_same_shape(endpoint):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=endpoint.url, api_key="sk-test", max_retries=0)
    reply = client.moderations.create(input=[HATEFUL, "How do I reset my password?"],
                                      model="omni-moderation-latest")
    assert [r.flagged for r in reply.results] == [True, False]
    assert reply.results[0].categories.hate and reply.results[0].category_scores.hate == pytest.approx(0.93)
    ours = moderation.moderate([HATEFUL, "How do I reset my password?"], spec(endpoint.url).moderation)
    assert list(ours.flagged) == [0] and ours.flagged[0] == (["hate"], pytest.approx(0.93))
    assert endpoint.requests[0]["body"] == endpoint.requests[1]["body"]  # the SDK sends what we send


def test_no_moderation_by_default():
    assert DatasetChecks().moderation is None
    assert np.isfinite(DatasetChecks().harmful_threshold)
