"""Demo traffic: customer questions sent through the router, answers judged by a simulated user.

The simulated user knows the right answer (the held-out reference completion) and
gives a thumbs up when the answer carries it, a thumbs down otherwise — a
stand-in for real users' feedback, computed from the answers of this run.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

VARIANT_HEADER = "x-loraplane-variant"
REQUEST_ID_HEADER = "x-request-id"
GOOD_ANSWER_F1 = 0.6


@dataclass(frozen=True)
class Question:
    prompt: str
    reference: str
    intent: str | None = None


@dataclass
class Answer:
    question: Question
    user: str
    variant: str
    text: str
    status: int
    seconds: float
    request_id: str | None
    cached: bool
    thumbs_up: bool | None = None


def load_questions(validation_jsonl: Path, limit: int) -> list[Question]:
    """Held-out questions, one per intent first so the sample covers the whole support surface."""
    rows = [json.loads(line) for line in validation_jsonl.read_text().splitlines() if line.strip()]
    questions = []
    for row in rows:
        messages = row.get("messages") or []
        user = next((m["content"] for m in messages if m.get("role") == "user"), None)
        reference = next((m["content"] for m in reversed(messages) if m.get("role") == "assistant"), None)
        if user and reference:
            questions.append(Question(user, reference, row.get("intent")))
    seen: set[str | None] = set()
    first, rest = [], []
    for q in questions:
        (rest if q.intent in seen else first).append(q)
        seen.add(q.intent)
    return (first + rest)[:limit]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9$.,']+", text.lower().replace(",", " ").replace(".", " "))


def token_f1(answer: str, reference: str) -> float:
    """Word-overlap F1 between an answer and the reference (SQuAD style)."""
    a, r = _words(answer), _words(reference)
    if not a or not r:
        return 0.0
    common = sum((Counter(a) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


async def ask(client: httpx.AsyncClient, endpoint: str, model: str, question: Question, user: str,
              stickiness_header: str, max_tokens: int) -> Answer:
    """One chat completion through the router."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question.prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    started = time.perf_counter()
    resp = await client.post(f"{endpoint}/chat/completions", json=body, headers={stickiness_header: user})
    seconds = time.perf_counter() - started
    text = ""
    if resp.status_code == 200:
        text = resp.json()["choices"][0]["message"]["content"] or ""
    return Answer(question, user, resp.headers.get(VARIANT_HEADER, "?"), text.strip(), resp.status_code, seconds,
                  resp.headers.get(REQUEST_ID_HEADER), resp.headers.get("x-loraplane-cache") == "hit")


async def give_feedback(client: httpx.AsyncClient, endpoint: str, answer: Answer) -> None:
    """The simulated user's thumbs up or down, sent to the router's feedback endpoint."""
    if answer.status != 200 or not answer.request_id:
        return
    answer.thumbs_up = token_f1(answer.text, answer.question.reference) >= GOOD_ANSWER_F1
    resp = await client.post(f"{endpoint}/feedback",
                             json={"requestId": answer.request_id, "score": "up" if answer.thumbs_up else "down"})
    resp.raise_for_status()


# Questions in flight at once. vLLM batches them: on 2 CPU cores 24 demo questions (48 tokens at most,
# base and adapter mixed) took 32 s four at a time, 24 s eight, 18 s twelve and 21 s all at once.
CONCURRENCY = 12


async def run_round(endpoint: str, model: str, questions: list[Question], round_no: int, *,
                    stickiness_header: str, max_tokens: int = 64, concurrency: int = CONCURRENCY) -> list[Answer]:
    """Every question once, each from a different simulated user, with feedback on every answer."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=300) as client:
        async def one(i: int, q: Question) -> Answer:
            async with limit:
                answer = await ask(client, endpoint, model, q, f"user-{round_no}-{i}", stickiness_header, max_tokens)
                await give_feedback(client, endpoint, answer)
                return answer

        return list(await asyncio.gather(*(one(i, q) for i, q in enumerate(questions))))
