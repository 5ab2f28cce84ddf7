"""User feedback on an answer: a signed request id and a score, attributed to the variant that answered.

The router signs every request id it issues (HMAC-SHA256 with the router's key,
over the issue time, a nonce, the chatbot and the variant), so any router replica
holding the same key can attribute feedback for an answer another replica served,
and nobody without the key can make an id up. On a shared pool the id names its
chatbot (`<namespace>.<chatbot>`, covered by the MAC but carried only as a short
tag), so feedback for one chatbot's answer can never be recorded against another
chatbot's variant of the same name. An id is accepted for `max_age` seconds after
it was issued; each replica refuses a second score for an id it has already seen
(see docs/canary.md for what a replay across replicas can still do).

    lp-<issued, hex seconds>-<nonce, 16 hex>-<mac, 32 hex>-<chatbot tag, 8 hex>-<variant>
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

PREFIX = "lp-"
# Variant names are DNS labels (at most 63 characters): a real id is never longer than this.
MAX_REQUEST_ID_LENGTH = 160
DEFAULT_MAX_AGE_SECONDS = 24 * 3600
_MAC_HEX = 32
_TAG_HEX = 8


def chatbot_tag(chatbot: str) -> str:
    """The short tag of a chatbot key in its request ids (the MAC, not the tag, is what binds the id)."""
    return hashlib.sha256(chatbot.encode()).hexdigest()[:_TAG_HEX]


class FeedbackError(ValueError):
    """Bad feedback request; the message names the field."""


class RequestIds:
    """Issues and verifies signed request ids."""

    def __init__(self, key: bytes | None = None, *, max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        # Without a configured key (local runs) ids verify only on the replica that issued them.
        self._key = key or secrets.token_bytes(32)
        self.max_age = max_age_seconds
        self._clock = clock

    @property
    def key(self) -> bytes:
        """The signing key (also what a chatbot's samples token is derived from)."""
        return self._key

    def _mac(self, issued: str, nonce: str, chatbot: str, variant: str) -> str:
        msg = f"{issued}\0{nonce}\0{chatbot}\0{variant}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:_MAC_HEX]

    def issue(self, chatbot: str, variant: str) -> str:
        """A signed id for an answer of `variant` of `chatbot` (the table's `<namespace>.<chatbot>` key)."""
        issued, nonce = f"{int(self._clock()):x}", secrets.token_hex(8)
        mac = self._mac(issued, nonce, chatbot, variant)
        return f"{PREFIX}{issued}-{nonce}-{mac}-{chatbot_tag(chatbot)}-{variant}"

    def verify(self, request_id: object, chatbots: Iterable[str]) -> tuple[str, str]:
        """(chatbot, variant) of a valid, unexpired id issued for one of `chatbots`; FeedbackError otherwise."""
        if not isinstance(request_id, str) or len(request_id) > MAX_REQUEST_ID_LENGTH:
            raise FeedbackError(
                f"requestId must be a string of at most {MAX_REQUEST_ID_LENGTH} characters issued by this router")
        parts = request_id[len(PREFIX):].split("-", 4) if request_id.startswith(PREFIX) else []
        if len(parts) != 5 or not all(parts):
            raise FeedbackError(f"requestId {request_id!r} is not a request id issued by this router")
        issued, nonce, mac, tag, variant = parts
        chatbot = next((c for c in chatbots if chatbot_tag(c) == tag
                        and hmac.compare_digest(mac, self._mac(issued, nonce, c, variant))), None)
        if chatbot is None:
            raise FeedbackError(f"requestId {request_id!r} is not a request id issued by this router")
        age = self._clock() - int(issued, 16)
        if age > self.max_age:
            raise FeedbackError(f"requestId {request_id!r} has expired (feedback is taken for {int(self.max_age)}s)")
        return chatbot, variant


def normalise_score(score: object) -> float:
    """Thumbs ("up"/"down", true/false) -> 1/0; a 1..5 rating s -> (s - 1) / 4."""
    if isinstance(score, bool):
        return 1.0 if score else 0.0
    if isinstance(score, str):
        lowered = score.strip().lower()[:16]
        if lowered in ("up", "thumbs_up", "+1", "good"):
            return 1.0
        if lowered in ("down", "thumbs_down", "-1", "bad"):
            return 0.0
        try:
            score = float(lowered)
        except ValueError:
            raise FeedbackError(f"score {repr(score)[:40]}: use \"up\"/\"down\", true/false or a rating 1..5") from None
    if isinstance(score, (int, float)) and 1 <= score <= 5:
        return (float(score) - 1.0) / 4.0
    raise FeedbackError(f"score {repr(score)[:40]}: use \"up\"/\"down\", true/false or a rating 1..5")


class SeenIds:
    """Bounded memory of request ids that already got feedback (ids are length-capped before they get here)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, request_id: str) -> bool:
        """False when the id was already seen."""
        if request_id in self._ids:
            return False
        self._ids[request_id] = None
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        return True
