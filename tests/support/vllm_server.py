"""A REAL vLLM OpenAI server (the CPU build) for the test session, with runtime LoRA loading enabled.

Started once per session from the `smollm2_dir` model (about 40 s, 1.5 GB) by
the same code `loraplane serve` uses, and stopped at the end. Import the
fixture into a test module: `from tests.support.vllm_server import vllm_server`.
For a quicker inner loop, LORAPLANE_TEST_VLLM_URL points the fixture at a vLLM
already running (started with --enable-lora, served as "smollm2", runtime
LoRA updating allowed) instead of starting one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from loraplane.local.stack import ManagedProcess, start_vllm

SERVED_NAME = "smollm2"


@dataclass
class VllmServer:
    url: str
    served_name: str
    process: ManagedProcess | None
    log_path: Path | None


# Test modules import the fixture, so pytest holds one definition per importing module; this keeps
# it to one server per session all the same: the first user starts it, the last one stops it.
_shared: dict = {"server": None, "users": 0}


@pytest.fixture(scope="session")
def vllm_server(smollm2_dir: Path, tmp_path_factory) -> VllmServer:
    if os.environ.get("LORAPLANE_TEST_VLLM_URL"):
        yield VllmServer(os.environ["LORAPLANE_TEST_VLLM_URL"].rstrip("/"), SERVED_NAME, None, None)
        return
    if _shared["server"] is None:
        log_path = tmp_path_factory.mktemp("vllm") / "vllm.log"
        proc, url = start_vllm(smollm2_dir, SERVED_NAME, log_path, timeout=420,
                               max_loras=2, max_lora_rank=16, max_model_len=1024, dtype="bfloat16")
        _shared["server"] = VllmServer(url, SERVED_NAME, proc, log_path)
    _shared["users"] += 1
    try:
        yield _shared["server"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            _shared["server"].process.stop()
            _shared["server"] = None
