"""The rating server with recorded answers: blindness of every page, header and redirect; ratings mapped back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from loraplane.evaluation.blinding import order
from loraplane.evaluation.session import Criterion, Item, new_session, read_ratings, write_session
from loraplane_server.evaluation.app import RatingServer

CANDIDATE, BASELINE = "zq-tuned-v7", "zq-stable-v6"  # names no answer text contains
RECORDED = [
    ("How do I reset my password?", "Open Settings, choose Security, then Reset password.",
     "You can reset it from the settings page."),
    ("What are your opening hours?", "We are open 9 to 5, Monday to Friday.", "Our hours vary."),
    ("Can I return a gift?", "Yes, within 30 days with the gift receipt.", "Returns are possible."),
    ("Do you ship abroad?", "We ship to the EU and the UK.", "Shipping depends on the country."),
]


def make_session(directory: Path, raters=("ann", "bo", "cy")):
    items = [Item(id=f"item-{n}", prompt=q, answers={CANDIDATE: t, BASELINE: b})
             for n, (q, t, b) in enumerate(RECORDED, 1)]
    s = new_session(candidate=CANDIDATE, baseline=BASELINE, source="recorded", items=items, raters=list(raters))
    write_session(directory, s)
    return s


@pytest.fixture
async def client(tmp_path):
    session = make_session(tmp_path)
    server = RatingServer(tmp_path)
    async with TestClient(TestServer(server.app())) as c:
        yield c, session, tmp_path


def assert_blind(text: str, session) -> None:
    for secret in (session.candidate, session.baseline, "tuned", "stable", "candidate", "baseline", session.blinding_key):
        assert secret not in text, f"{secret!r} leaked"
    for rater in session.raters[1:]:  # no other rater's token
        assert rater.token not in text


def form_for(scores_a: int, scores_b: int, pref: str) -> dict:
    form = {f"A-{c.value}": str(scores_a) for c in Criterion}
    form |= {f"B-{c.value}": str(scores_b) for c in Criterion}
    return form | {"preference": pref}


async def test_pages_headers_and_redirects_never_name_a_variant(client):
    c, session, directory = client
    token = session.raters[0].token
    seen = []
    r = await c.get(f"/rate/{token}", allow_redirects=False)
    seen.append(r)
    assert r.status == 303
    for path in [r.headers["Location"], "/static/rate.js", "/static/rate.css", f"/rate/{token}/done"]:
        seen.append(await c.get(path))
    for n in range(1, len(session.items) + 1):
        page = await c.get(f"/rate/{token}/{n}")
        assert page.status == 200
        seen.append(page)
        post = await c.post(f"/rate/{token}/{n}", data=form_for(4, 2, "A"), allow_redirects=False)
        assert post.status == 303
        seen.append(post)
        seen.append(await c.get(f"/rate/{token}/{n}"))  # the page pre-filled with the saved rating
    for resp in seen:
        body = await resp.text()
        assert_blind(body + repr(dict(resp.headers)), session)
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    ratings = read_ratings(directory)
    assert len(ratings) == len(session.items)
    for rating in ratings:  # label A got 4 and was preferred: that is the variant the rater saw as A
        shown_a, shown_b = order(session, "ann", rating.item)
        assert rating.preference == shown_a
        assert all(v == 4 for v in rating.scores[shown_a].values())
        assert all(v == 2 for v in rating.scores[shown_b].values())


async def test_the_a_b_order_differs_between_raters_and_items(client):
    c, session, _ = client
    orders = {(r.name, i.id): order(session, r.name, i.id) for r in session.raters for i in session.items}
    assert len(set(orders.values())) == 2  # both orders occur
    page = await c.get(f"/rate/{session.raters[0].token}/1")
    text = await page.text()
    first = order(session, "ann", "item-1")[0]
    a_text = re.search(r'aria-label="Answer A"><h2>Answer A</h2><div class="text">([^<]*)<', text).group(1)
    assert a_text == session.items[0].answers[first]


async def test_an_incomplete_form_is_refused_naming_the_field_and_keeps_what_was_given(client):
    c, session, directory = client
    token = session.raters[1].token
    form = form_for(3, 3, "tie")
    del form["B-tone"]
    r = await c.post(f"/rate/{token}/2", data=form)
    assert r.status == 400
    text = await r.text()
    assert "answer B: rate &#x27;tone&#x27; from 1 to 5" in text
    assert 'name="A-tone" value="3" required checked' in text
    assert read_ratings(directory) == []


async def test_unknown_tokens_and_items_are_not_found(client):
    c, session, _ = client
    assert (await c.get("/rate/not-a-token-at-all-0123456789")).status == 404
    assert (await c.get(f"/rate/{session.raters[0].token}/99")).status == 404
    assert (await c.post("/rate/not-a-token-at-all-0123456789/1", data=form_for(1, 1, "A"))).status == 404
    assert (await c.get("/static/../app.py")).status == 404


async def test_a_changed_rating_replaces_the_earlier_one(client):
    c, session, directory = client
    token = session.raters[2].token
    await c.post(f"/rate/{token}/1", data=form_for(5, 1, "A"), allow_redirects=False)
    await c.post(f"/rate/{token}/1", data=form_for(1, 5, "B"), allow_redirects=False)
    (rating,) = read_ratings(directory)
    assert rating.preference == order(session, "cy", "item-1")[1]
