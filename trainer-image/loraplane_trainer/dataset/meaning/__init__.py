"""Meaning-aware comparison: sentence embeddings, identifiers, language and harmful content.

The models are optional at import time: where a library is not installed (the fine-tuning API
image checks uploads without torch), its checks are skipped and the report's stats say so; the
trainer, which has them all, checks again before training.
"""

from __future__ import annotations

from importlib.util import find_spec

EMBEDDINGS = ("torch", "sentence_transformers")
LANGUAGE = ("lingua",)
HARMFUL = ("profanity_check",)


def budget(n: int, floor: int, ceiling: int) -> int:
    """How many of n items a precise (costly) stage takes: `floor`, or 3 sqrt(n) when more, at most `ceiling`.
    Sub-linear: a set ten times larger gets about three times the precise work, the most likely first."""
    return int(min(ceiling, max(floor, 3 * n**0.5)))


def missing(modules: tuple[str, ...]) -> str | None:
    """The first of `modules` that is not installed, or None."""
    return next((m for m in modules if find_spec(m) is None), None)


def unload() -> None:
    """Drop the models loaded in this process (the embedding model, lingua's detectors), for a process
    that goes on to other work after its checks (the trainer runs them in a child process instead)."""
    import sys

    for name in ("embeddings", "language"):  # only those this process imported: nothing loads here
        module = sys.modules.get(f"{__name__}.{name}")
        if module is not None:
            module.unload()
