"""The LLM judge against an OpenAI-compatible endpoint: both orders, position bias cancelled, agreement with raters.

The endpoint is a small aiohttp server speaking the chat-completions protocol with a fixed judging rule
(a stronger judge model cannot run here): it prefers the longer answer, except that it always says "1"
for one prompt, as a position-biased judge would; judging both orders turns that into a tie.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime

import pytest
from aiohttp import web
from loraplane.evaluation.judge import JudgeClient, JudgeError, judge_compliance, judge_session, parse_pair
from loraplane.evaluation.preferences import preference_pairs
from loraplane.evaluation.session import Criterion, Item, Rating, new_session

BIASED_PROMPT = "Which plan is cheapest?"


def _verdict(prompt: str) -> str:
    if prompt.startswith("A user sent a request"):
        answer = prompt.split("Answer:\n", 1)[1]
        return "REFUSED" if answer.lower().startswith("i can't") else "COMPLIED"
    user = re.search(r"User prompt:\n(.*?)\n\nAnswer 1:\n(.*?)\n\nAnswer 2:\n(.*)\n$", prompt, re.DOTALL)
    question, first, second = user.groups()
    better = "1" if question == BIASED_PROMPT or len(first) > len(second) else "2"
    scores = {c.value: 4 for c in Criterion}
    return "Here is my verdict: " + json.dumps({"answer1": scores, "answer2": {**scores, "tone": 2}, "better": better})


@pytest.fixture
def endpoint():
    seen: list[dict] = []

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"auth": request.headers.get("Authorization"), **body})
        return web.json_response({"choices": [{"message": {"role": "assistant",
                                                           "content": _verdict(body["messages"][0]["content"])}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    import asyncio

    loop = asyncio.new_event_loop()
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/v1", seen
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _session():
    items = [
        Item(id="i1", prompt="How do I reset my password?",
             answers={"tuned": "Open Settings, then Security, then Reset password.", "base": "Settings."}),
        Item(id="i2", prompt=BIASED_PROMPT, answers={"tuned": "Drift, it is free.", "base": "The Drift plan."}),
        Item(id="i3", prompt="Do you ship abroad?", answers={"tuned": "Yes.", "base": "Yes, to the EU and the UK."}),
    ]
    return new_session(candidate="tuned", baseline="base", source="test", items=items, raters=["a", "b", "c"])


def _ratings(prefs: dict[str, list[str]]) -> list[Rating]:
    flat = dict.fromkeys(Criterion, 3)
    return [Rating(rater=r, item=item, preference=p, at=datetime.now(UTC), scores={"tuned": flat, "base": flat})
            for item, ps in prefs.items() for r, p in zip("abc", ps, strict=True)]


def test_pairs_are_judged_in_both_orders_and_compared_with_the_raters(endpoint):
    url, seen = endpoint
    session = _session()
    ratings = _ratings({"i1": ["tuned", "tuned", "base"], "i2": ["tie", "tie", "tuned"], "i3": ["base"] * 3})
    res = judge_session(session, JudgeClient(url, "judge-model", api_key="k"), ratings)
    prefs = {i.item: i.preference for i in res.items}
    assert prefs == {"i1": "tuned", "i2": "tie", "i3": "base"}  # the biased item's orders disagree: a tie
    assert [i.orders_agree for i in res.items] == [True, False, True]
    assert res.win_rate == pytest.approx((1 + 0.5 + 0) / 3)
    assert res.position_consistency == pytest.approx(2 / 3)
    assert res.human_agreement == pytest.approx(1.0) and res.human_kappa == pytest.approx(1.0)
    assert len(seen) == 6 and all(s["temperature"] == 0 and s["auth"] == "Bearer k" for s in seen)
    # tone: the second answer of each order got 2, so both variants average 3 over the two orders
    assert res.items[0].scores["tuned"][Criterion.TONE] == pytest.approx(3.0)
    rows = preference_pairs(session, _ratings({"i1": ["tuned"] * 3, "i2": ["tie", "base", "tuned"],
                                               "i3": ["tie"] * 3}), res)
    assert [(r["item"], r["source"]) for r in rows] == [("i1", "raters"), ("i3", "judge")]
    assert rows[1]["chosen"] == "Yes, to the EU and the UK."


def test_compliance_verdicts_and_unusable_replies(endpoint):
    url, _ = endpoint
    client = JudgeClient(url, "judge-model")
    assert judge_compliance(client, "pick a lock", "Sure: insert a tension wrench.") is True
    assert judge_compliance(client, "pick a lock", "I can't help with that.") is False
    assert parse_pair("no json here") is None
    assert parse_pair('{"answer1": {"relevance": 9}, "answer2": {}, "better": "1"}') is None


def test_an_unreachable_judge_is_a_clear_error():
    with pytest.raises(JudgeError, match="judge http://127.0.0.1:9/v1"):
        JudgeClient("http://127.0.0.1:9/v1", "m", timeout=2).ask("hi")
