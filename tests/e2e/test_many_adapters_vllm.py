"""Fifty adapters of five chatbots on ONE real vLLM (CPU build) with 2 GPU slots, a CPU cache of 4 and a disk
budget of 40 copies: every answer is its own adapter's, the same after evictions as before, and a new or
restarted adapter sync beside a vLLM that holds nothing converges to the pool's adapter set.

The pool's tables are a directory with one file per chatbot, as the operator mounts them. Adapter sync
registers what fits its disk budget ahead of time; the other ten are fetched on their first request
through our LoRA resolver plugin in vLLM, deleting the least recently used copies (unregistered first).
This module starts its own vLLM: the session's has no resolver plugin and no CPU-cache limit.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from loraplane.local.stack import ManagedProcess, free_port, start_vllm, wait_http
from loraplane.pool_routing import table_file
from loraplane.routing import RoutingTable

from tests.support.random_adapters import ensure_random_adapters

# About 3 minutes on a quiet machine (two vLLM passes over 50 adapters, one at a time); more under load.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

SERVED = "smollm2"
CHATBOTS = 5
PER_CHATBOT = 10
ON_DISK = 40  # the disk budget, in adapter copies: ten of fifty are fetched on their first request
PROMPT = [{"role": "user", "content": "Say something."}]


@dataclass
class Pool:
    work: Path
    tables: Path
    adapters: list[str]  # lora names, chatbot by chatbot
    sync_url: str
    vllm_url: str
    sync_port: int
    vllm_port: int
    budget: int
    model_dir: Path
    processes: dict[str, ManagedProcess]

    def start_sync(self) -> None:
        self.processes["sync"] = ManagedProcess("adapter-sync", [
            *_python(), "-m", "loraplane_server.adapter_sync", "--routing-table", str(self.tables),
            "--vllm-url", self.vllm_url, "--adapters-dir", str(self.work / "adapters"),
            "--disk-budget", str(self.budget), "--host", "127.0.0.1", "--port", str(self.sync_port),
            "--interval", "2", "--reload-interval", "1",
        ], self.work / "adapter-sync.log").start()

    def start_vllm(self) -> None:
        self.processes["vllm"], _ = start_vllm(
            self.model_dir, SERVED, self.work / "vllm.log", port=self.vllm_port, timeout=420,
            adapter_sync_url=self.sync_url, max_loras=2, max_cpu_loras=4, max_lora_rank=8, max_model_len=512,
            dtype="bfloat16",
        )

    def wait_ready(self) -> None:
        wait_http(f"{self.sync_url}/readyz", self.processes["sync"], 240, "adapter sync")

    def stop(self) -> None:
        for name in ("sync", "vllm"):
            if name in self.processes:
                self.processes.pop(name).stop()


def _python() -> list[str]:
    import sys

    return [sys.executable]


@pytest.fixture(scope="module")
def pool(smollm2_dir, tmp_path_factory):
    paths = ensure_random_adapters(smollm2_dir, CHATBOTS * PER_CHATBOT)
    work = tmp_path_factory.mktemp("many-adapters")
    tables = work / "routing"
    tables.mkdir()
    names = []
    for c in range(CHATBOTS):
        mine = paths[c * PER_CHATBOT:(c + 1) * PER_CHATBOT]
        table = RoutingTable.model_validate({
            "model": f"bot-{c}", "namespace": f"team-{c}", "chatbot": f"bot-{c}", "baseModel": SERVED,
            "variants": [{"name": f"v{i}", "weight": 100 if i == 0 else 0, "adapterUri": str(p)}
                         for i, p in enumerate(mine)],
        })
        (tables / table_file(table.namespace, table.chatbot_name)).write_text(table.to_yaml())
        names += [table.lora_name(v) for v in table.variants]
    one = max(sum(f.stat().st_size for f in p.iterdir()) for p in paths)
    p = Pool(work, tables, names, "", "", free_port(), free_port(), ON_DISK * one + one // 2, smollm2_dir, {})
    p.sync_url, p.vllm_url = f"http://127.0.0.1:{p.sync_port}", f"http://127.0.0.1:{p.vllm_port}"
    try:
        p.start_sync()  # first: vLLM's resolver asks it for cold adapters
        p.start_vllm()
        p.wait_ready()
        yield p
    finally:
        p.stop()


def answer(vllm_url: str, model: str) -> str:
    r = httpx.post(f"{vllm_url}/v1/chat/completions", timeout=300, json={
        "model": model, "messages": PROMPT, "max_tokens": 6, "temperature": 0})
    assert r.status_code == 200, f"{model}: HTTP {r.status_code} {r.text[:300]}"
    return r.json()["choices"][0]["message"]["content"]


def answers(vllm_url: str, models: list[str]) -> dict[str, str]:
    # One at a time: a batch of one is computed the same way every time, so an answer can be compared
    # exactly (in bf16, two requests batched together may differ in a late token). With two GPU slots
    # and a CPU cache of four, each new adapter still evicts another.
    return {m: answer(vllm_url, m) for m in models}


def sync_counter(sync_url: str, operation: str) -> float:
    text = httpx.get(f"{sync_url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("loraplane_adapter_sync_operations_total")
               and f'operation="{operation}"' in line and 'result="ok"' in line)


def vllm_adapters(vllm_url: str) -> set[str]:
    data = httpx.get(f"{vllm_url}/v1/models", timeout=10).json()["data"]
    return {m["id"] for m in data if m.get("parent")}


def test_fifty_adapters_answer_as_themselves_across_evictions_and_a_restart(pool):
    status = httpx.get(f"{pool.sync_url}/status", timeout=10).json()
    assert len(status["adapters"]) == 50 and len(status["onDisk"]) == ON_DISK
    assert set(status["registered"]) == vllm_adapters(pool.vllm_url) == set(status["onDisk"])
    assert sum(a["state"] == "on-demand" for a in status["adapters"]) == 10

    base = answer(pool.vllm_url, SERVED)
    first = answers(pool.vllm_url, pool.adapters)  # the last ten were on no disk: fetched on first request
    assert len(set(first.values())) == 50, "each adapter has its own greedy answer"
    assert base not in first.values()

    order = list(pool.adapters)
    random.Random(7).shuffle(order)
    again = answers(pool.vllm_url, order)  # GPU slots, CPU cache and the disk all evict again
    wrong = {m: (first[m], again[m]) for m in order if again[m] != first[m]}
    assert not wrong, f"answers changed after evictions: {wrong}"
    assert sync_counter(pool.sync_url, "resolve") >= 10 and sync_counter(pool.sync_url, "evict") >= 10
    status = httpx.get(f"{pool.sync_url}/status", timeout=10).json()
    assert status["diskUsedBytes"] <= status["diskBudgetBytes"]
    assert set(status["registered"]) <= vllm_adapters(pool.vllm_url)  # residency as vLLM reports it

    # A new replica's sidecar, or a restarted pod's: vLLM holds no adapter (the state a restarted vLLM is in,
    # made here through its own API, since a second start of vLLM costs minutes on CPU) and the volume is
    # empty. Adapter sync starts again and converges to the same set, answering as before.
    pool.processes.pop("sync").stop()
    for name in vllm_adapters(pool.vllm_url):
        httpx.post(f"{pool.vllm_url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=30).raise_for_status()
    shutil.rmtree(pool.work / "adapters")
    pool.start_sync()
    pool.wait_ready()
    status = httpx.get(f"{pool.sync_url}/status", timeout=10).json()
    assert len(status["onDisk"]) == ON_DISK and set(status["onDisk"]) == set(status["registered"])
    assert set(status["registered"]) == vllm_adapters(pool.vllm_url)
    held = set(status["onDisk"])
    cold = [m for m in pool.adapters if m not in held][:2]
    sample = [*sorted(held)[:4], *cold]
    after = answers(pool.vllm_url, sample)
    assert after == {m: first[m] for m in sample}
