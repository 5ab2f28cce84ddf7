"""Which variant a rater sees as A and which as B: a keyed hash of rater and item, so it differs per
rater and item, stays the same on reload, and cannot be guessed without the session's secret."""

from __future__ import annotations

import hashlib
import hmac

from .session import Preference, Session


def order(session: Session, rater: str, item: str) -> tuple[str, str]:
    """(variant shown as A, variant shown as B)."""
    digest = hmac.new(session.blinding_key.encode(), f"{rater}\0{item}".encode(), hashlib.sha256).digest()
    a, b = session.variants
    return (a, b) if digest[0] & 1 else (b, a)


def unblind(session: Session, rater: str, item: str, label: str) -> str:
    """The variant behind label A or B ('tie' stays 'tie')."""
    a, b = order(session, rater, item)
    if label == Preference.A:
        return a
    if label == Preference.B:
        return b
    if label == Preference.TIE:
        return Preference.TIE.value
    raise ValueError(f"preference must be A, B or tie, not {label!r}")
