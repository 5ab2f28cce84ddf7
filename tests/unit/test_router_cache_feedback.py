"""Cache keys, TTL and size bound; feedback scores and request ids."""

from __future__ import annotations

import pytest
from loraplane.routing import CacheSettings
from loraplane_server.router.cache import ResponseCache, cache_key, is_cacheable
from loraplane_server.router.feedback import (
    MAX_REQUEST_ID_LENGTH,
    FeedbackError,
    RequestIds,
    SeenIds,
    chatbot_tag,
    normalise_score,
)

BODY = {"model": "bot", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "max_tokens": 5}


def test_cache_key_ignores_routing_fields_but_not_content_or_variant():
    k = cache_key("v1", "/v1/chat/completions", BODY)
    assert k == cache_key("v1", "/v1/chat/completions", {**BODY, "model": "v1", "user": "x"})
    assert k == cache_key("v1", "/v1/chat/completions", dict(reversed(list(BODY.items()))))
    assert k != cache_key("v2", "/v1/chat/completions", BODY)  # never shared across variants
    assert k != cache_key("v1", "/v1/completions", BODY)
    assert k != cache_key("v1", "/v1/chat/completions", {**BODY, "max_tokens": 6})
    assert k != cache_key("v1", "/v1/chat/completions", {**BODY, "messages": [{"role": "user", "content": "hi!"}]})


def test_only_deterministic_unstreamed_requests_are_cacheable():
    on = CacheSettings()
    assert is_cacheable(BODY, on)
    assert not is_cacheable({**BODY, "temperature": 0.7}, on)
    assert not is_cacheable({k: v for k, v in BODY.items() if k != "temperature"}, on)  # default is 1.0
    assert is_cacheable({**BODY, "temperature": 0.7}, CacheSettings(max_temperature=0.8))
    assert not is_cacheable({**BODY, "stream": True}, on)
    assert not is_cacheable({**BODY, "n": 2}, on)
    assert not is_cacheable(BODY, CacheSettings(enabled=False))


def test_cache_ttl_and_lru_bound():
    now = [0.0]
    cache = ResponseCache(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    cache.put("a", b"A", "application/json")
    cache.put("b", b"B", "application/json")
    assert cache.get("a") == (b"A", "application/json")  # a is now most recent
    cache.put("c", b"C", "application/json")
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2
    now[0] = 10.5
    assert cache.get("a") is None and cache.get("c") is None


@pytest.mark.parametrize(
    ("score", "expected"),
    [("up", 1.0), ("down", 0.0), (True, 1.0), (False, 0.0), (1, 0.0), (5, 1.0), (3, 0.5), (4, 0.75), ("2", 0.25)],
)
def test_scores_normalise_to_unit_interval(score, expected):
    assert normalise_score(score) == expected


@pytest.mark.parametrize("score", [0, 6, "meh", None, [1]])
def test_bad_scores_are_refused(score):
    with pytest.raises(FeedbackError, match="score"):
        normalise_score(score)


BOTS = ["default.support-bot", "team-b.sales-bot"]


def test_request_id_carries_the_chatbot_and_variant_and_verifies_on_every_replica_with_the_key():
    ids = RequestIds(b"k" * 32)
    rid = ids.issue("default.support-bot", "support-bot-v3")
    # another replica, same key
    assert RequestIds(b"k" * 32).verify(rid, BOTS) == ("default.support-bot", "support-bot-v3")
    with pytest.raises(FeedbackError, match="requestId"):
        ids.verify("chatcmpl-123", BOTS)
    seen = SeenIds(limit=2)
    assert seen.add(rid) and not seen.add(rid)


def test_forged_tampered_and_foreign_request_ids_are_refused():
    ids = RequestIds(b"k" * 32)
    rid = ids.issue("default.support-bot", "stable")
    for forged in ("lp-forged-canary", rid[: -len("stable")] + "canary",
                   RequestIds(b"other").issue("default.support-bot", "canary")):
        with pytest.raises(FeedbackError, match="not a request id issued by this router"):
            ids.verify(forged, BOTS)


def test_a_request_id_of_one_chatbot_never_verifies_for_another_with_the_same_variant():
    ids = RequestIds(b"k" * 32)
    rid = ids.issue("team-b.sales-bot", "stable")
    with pytest.raises(FeedbackError, match="not a request id issued by this router"):
        ids.verify(rid, ["default.support-bot"])  # the chatbot that answered left the pool
    tag = rid.split("-")[4]
    other_tag = chatbot_tag("default.support-bot")
    with pytest.raises(FeedbackError, match="not a request id issued by this router"):
        ids.verify(rid.replace(f"-{tag}-", f"-{other_tag}-"), BOTS)  # re-tagged for another chatbot
    assert ids.verify(rid, BOTS) == ("team-b.sales-bot", "stable")


def test_request_ids_expire_and_are_length_capped():
    now = [1_000_000.0]
    ids = RequestIds(b"k" * 32, max_age_seconds=60, clock=lambda: now[0])
    rid = ids.issue("default.bot", "stable")
    now[0] += 61
    with pytest.raises(FeedbackError, match="expired"):
        ids.verify(rid, ["default.bot"])
    with pytest.raises(FeedbackError, match=f"at most {MAX_REQUEST_ID_LENGTH}"):
        ids.verify("lp-" + "a" * 1_000_000, ["default.bot"])
    assert len(RequestIds().issue("default.bot", "v" * 63)) <= MAX_REQUEST_ID_LENGTH
