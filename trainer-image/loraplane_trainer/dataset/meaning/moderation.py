"""The optional OpenAI-compatible moderation endpoint of the harmful-content check.

`POST {endpoint}/moderations` with `{"input": [...], "model": ...}` answers one result per text
(`flagged`, `categories`, `category_scores`), the shape of OpenAI's moderation API. Only distinct texts the
offline classifiers did not already flag are sent, the highest scored first, at most `maxTexts`, in batches
of `batchSize`. 429, 5xx and connection errors are retried with exponential backoff (Retry-After
honoured), as the augmentation endpoints are; a refused key, a reply of another shape or a request that
still fails stops the check with a ModerationError naming the field. The texts never appear in an error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..api_keys import from_secrets_or_env

API_KEY_ENV = "LORAPLANE_MODERATION_API_KEY"
FIELD = "dataset.checks.moderation"
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0


class ModerationError(RuntimeError):
    """The moderation endpoint could not be used (unreachable, refused the key, answered another shape)."""


@dataclass
class Moderated:
    """What the endpoint said: the categories of each flagged text (by index into the texts sent) and its
    highest category score (1.0 when the endpoint gives no scores)."""

    flagged: dict[int, tuple[list[str], float]] = field(default_factory=dict)
    sent: int = 0
    requests: int = 0
    retries: int = 0


def api_key(ref: Any, secrets: Mapping[str, str] | None) -> str | None:
    """The API key: from the secrets map ("name/key") or, in the pod, from LORAPLANE_MODERATION_API_KEY."""
    return from_secrets_or_env(ref, secrets, API_KEY_ENV)


def _result(item: Any) -> tuple[bool, list[str], float]:
    if not isinstance(item, dict) or not isinstance(item.get("flagged"), bool):
        raise ValueError("a result without a boolean 'flagged'")
    categories = item.get("categories") or {}
    scores = item.get("category_scores") or {}
    if not isinstance(categories, dict) or not isinstance(scores, dict):
        raise ValueError("'categories' and 'category_scores' must be objects")
    named = sorted(str(k) for k, v in categories.items() if v is True)
    numbers = [float(v) for k, v in scores.items() if isinstance(v, int | float) and (not named or k in named)]
    return item["flagged"], named, max(numbers, default=1.0)


def _post(client: httpx.Client, url: str, payload: dict, cfg: Any, out: Moderated) -> list[Any]:
    for attempt in range(cfg.max_retries + 1):
        delay = min(BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS)
        try:
            response = client.post(url, json=payload)
        except httpx.TransportError as e:
            reason = f"{type(e).__name__}: {e}"
        else:
            if response.status_code == 200:
                try:
                    results = response.json()["results"]
                except (ValueError, KeyError, TypeError):
                    raise ModerationError(f"{FIELD}: {url} did not answer an OpenAI moderation reply "
                                          "(no 'results')") from None
                if not isinstance(results, list) or len(results) != len(payload["input"]):
                    raise ModerationError(f"{FIELD}: {url} answered {len(results) if isinstance(results, list) else 0}"
                                          f" result(s) for {len(payload['input'])} text(s)")
                return results
            if response.status_code in (401, 403):
                raise ModerationError(f"{FIELD}: {url} refused the API key (HTTP {response.status_code})")
            if response.status_code != 429 and response.status_code < 500:
                raise ModerationError(f"{FIELD}: {url} answered HTTP {response.status_code}: "
                                      f"{response.text[:200]}")
            reason = f"HTTP {response.status_code}"
            retry_after = response.headers.get("retry-after", "")
            if retry_after.replace(".", "", 1).isdigit():
                delay = min(float(retry_after), MAX_BACKOFF_SECONDS)
        if attempt == cfg.max_retries:
            raise ModerationError(f"{FIELD}: {url} failed after {attempt + 1} attempt(s): {reason}")
        out.retries += 1
        time.sleep(delay * (1 + random.random() * 0.1))
    raise AssertionError("unreachable")


def moderate(texts: list[str], cfg: Any, key: str | None = None) -> Moderated:
    """Ask the endpoint about `texts` (distinct, already in the order to send, at most cfg.max_texts)."""
    out = Moderated()
    texts = texts[: cfg.max_texts]
    url = cfg.endpoint.rstrip("/") + "/moderations"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx.Timeout(cfg.timeout_seconds, connect=min(10.0, cfg.timeout_seconds))
    with httpx.Client(headers=headers, timeout=timeout) as client:
        for start in range(0, len(texts), cfg.batch_size):
            batch = texts[start : start + cfg.batch_size]
            payload: dict[str, Any] = {"input": batch}
            if cfg.model:
                payload["model"] = cfg.model
            results = _post(client, url, payload, cfg, out)
            out.requests += 1
            out.sent += len(batch)
            for k, item in enumerate(results):
                try:
                    flagged, categories, score = _result(item)
                except ValueError as e:
                    raise ModerationError(f"{FIELD}: {url} answered {e}") from None
                if flagged:
                    out.flagged[start + k] = (categories, score)
    return out
