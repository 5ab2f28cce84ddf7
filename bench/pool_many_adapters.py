"""Throughput and p95 of one real vLLM (CPU build) when requests spread over 1, 8 and 32 LoRA adapters.

One run starts vLLM (`--max-loras 4`, `--max-cpu-loras 32`, our resolver plugin) with adapter sync beside it
(a pool of five chatbots' tables, 36 random-weight peft adapters, a disk budget of 32 copies, so four
are on no disk and come through the resolver on their first request), then:
  - drives the same closed loop (CONCURRENCY requests in flight, REQUESTS in all, MAX_TOKENS each,
    greedy) at 1, 8 and 32 adapters (round robin) and prints requests/s and p95 latency as ratios to
    the one-adapter case (and the bare base model as a second reference);
  - times first requests: a warm adapter, a registered adapter never used yet (vLLM loads it from the
    volume into its CPU cache and a GPU slot), and an adapter on no disk (the resolver asks adapter
    sync, which fetches, verifies and hands over its path), against the warm request of the same run.
Target: 32 adapters keep at least 70% of the one-adapter throughput.

Run: .venv/bin/python bench/pool_many_adapters.py   (BENCH_REQUESTS, BENCH_CONCURRENCY, BENCH_MAX_TOKENS)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loraplane.local.stack import ManagedProcess, free_port, start_vllm, wait_http  # noqa: E402
from loraplane.pool_routing import table_file  # noqa: E402
from loraplane.routing import RoutingTable  # noqa: E402
from loraplane_trainer.smollm2 import ensure_smollm2  # noqa: E402

from tests.support.random_adapters import ensure_random_adapters  # noqa: E402

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "64"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
MAX_TOKENS = int(os.environ.get("BENCH_MAX_TOKENS", "16"))
ON_DISK, ADAPTERS, CHATBOTS = 32, 36, 4
SERVED = "smollm2"


def ask(url: str, model: str) -> float:
    t = time.perf_counter()
    r = httpx.post(f"{url}/v1/chat/completions", timeout=600, json={
        "model": model, "messages": [{"role": "user", "content": "Tell me about the sea."}],
        "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True})
    r.raise_for_status()
    return time.perf_counter() - t


def closed_loop(url: str, models: list[str]) -> tuple[float, float]:
    """(requests/s, p95 seconds) of REQUESTS requests, CONCURRENCY at a time, round robin over models."""
    order = [models[i % len(models)] for i in range(REQUESTS)]
    start = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        latencies = list(pool.map(lambda m: ask(url, m), order))
    elapsed = time.perf_counter() - start
    return REQUESTS / elapsed, statistics.quantiles(latencies, n=20)[18]


def main() -> None:
    model_dir = ensure_smollm2()
    paths = ensure_random_adapters(model_dir, ADAPTERS)
    work = Path(tempfile.mkdtemp(prefix="bench-many-adapters-"))
    tables = work / "routing"
    tables.mkdir()
    names: list[str] = []
    per = ADAPTERS // CHATBOTS
    for c in range(CHATBOTS):
        t = RoutingTable.model_validate({
            "model": f"bot-{c}", "namespace": f"team-{c}", "chatbot": f"bot-{c}", "baseModel": SERVED,
            "variants": [{"name": f"v{i}", "weight": 100 if i == 0 else 0, "adapterUri": str(p)}
                         for i, p in enumerate(paths[c * per:(c + 1) * per])]})
        (tables / table_file(t.namespace, t.chatbot_name)).write_text(t.to_yaml())
        names += [t.lora_name(v) for v in t.variants]
    one = max(sum(f.stat().st_size for f in p.iterdir()) for p in paths)
    sync_port, vllm_port = free_port(), free_port()
    sync_url, vllm_url = f"http://127.0.0.1:{sync_port}", f"http://127.0.0.1:{vllm_port}"
    sync = ManagedProcess("adapter-sync", [
        sys.executable, "-m", "loraplane_server.adapter_sync", "--routing-table", str(tables),
        "--vllm-url", vllm_url, "--adapters-dir", str(work / "adapters"), "--disk-budget", str(ON_DISK * one),
        "--port", str(sync_port), "--host", "127.0.0.1", "--interval", "2"], work / "adapter-sync.log").start()
    vllm = None
    try:
        t0 = time.perf_counter()
        vllm, _ = start_vllm(model_dir, SERVED, work / "vllm.log", port=vllm_port, timeout=600,
                             adapter_sync_url=sync_url, max_loras=4, max_cpu_loras=32, max_lora_rank=8,
                             max_model_len=512, dtype="bfloat16")
        wait_http(f"{sync_url}/readyz", sync, 300, "adapter sync")
        status = httpx.get(f"{sync_url}/status").json()
        on_disk = set(status["onDisk"])
        print(f"vLLM up and {len(status['registered'])} adapters registered ahead in {time.perf_counter() - t0:.0f} s; "
              f"{len(names) - len(on_disk)} on no disk (budget {ON_DISK} copies)")
        registered = [n for n in names if n in on_disk]
        cold_disk = [n for n in names if n not in on_disk]

        ask(vllm_url, registered[0])  # warm up the engine and the first adapter
        warm = statistics.median(ask(vllm_url, registered[0]) for _ in range(3))
        cold_registered = ask(vllm_url, registered[-1])  # registered, never run: loaded from the volume
        cold_resolved = ask(vllm_url, cold_disk[0])  # on no disk: resolver -> adapter sync fetch -> vLLM
        print(f"\nfirst request latency ({MAX_TOKENS} tokens), against a warm request of {warm:.2f} s:")
        print(f"  registered ahead, never used:  {cold_registered:6.2f} s  ({cold_registered / warm:.2f}x warm)")
        print(f"  on no disk, via the resolver:  {cold_resolved:6.2f} s  ({cold_resolved / warm:.2f}x warm)")

        for m in registered[:32]:  # every adapter of the 32-case has run once: no first-load in the figures
            ask(vllm_url, m)
        print(f"\nclosed loop: {REQUESTS} requests, {CONCURRENCY} in flight, {MAX_TOKENS} tokens, --max-loras 4")
        results = {}
        for label, models in (("base model", [SERVED]), ("1 adapter", registered[:1]),
                              ("8 adapters", registered[:8]), ("32 adapters", registered[:32])):
            results[label] = closed_loop(vllm_url, models)
        rps1, p951 = results["1 adapter"]
        print(f"  {'':12} {'req/s':>7} {'p95 s':>7} {'req/s vs 1':>11} {'p95 vs 1':>9}")
        for label, (rps, p95) in results.items():
            print(f"  {label:12} {rps:7.2f} {p95:7.2f} {rps / rps1:10.2f}x {p95 / p951:8.2f}x")
        verdict = "met" if results["32 adapters"][0] / rps1 >= 0.70 else "NOT met"
        print(f"\ntarget (32 adapters >= 70% of one-adapter throughput): {verdict}")
        ops = [line for line in httpx.get(f"{sync_url}/metrics").text.splitlines()
               if line.startswith("loraplane_adapter_sync_operations_total")]
        print("adapter sync: " + "; ".join(ops))
    finally:
        if vllm:
            vllm.stop()
        sync.stop()


if __name__ == "__main__":
    main()
