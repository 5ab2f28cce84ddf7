"""Adapter affinity on a shared pool: adapter swaps per 1,000 requests and p95, against random placement.

Two REAL vLLM replicas (the CPU build) serve SmolLM2-135M with `--max-loras 4` and
`--max-cpu-loras 4`, so an adapter that leaves a GPU slot comes back from disk. More
adapters than a replica has slots (eight tiny random-weight peft adapters, one per chatbot
on the pool) are registered on both replicas, and the router (the real application, in process, so its
placement can be recorded) sends the same request sequence three times:

  - random placement (the baseline: every replica sees every adapter),
  - least outstanding requests (the router without affinity),
  - affinity (rendezvous hashing to one home replica of two, bounded load).

A swap is a request whose adapter is not among the replica's `max_loras` most recently
used adapters (LRU over the router's own record of which replica served which adapter,
against that replica's slot count; the first load of each adapter counts too). Figures
are printed as ratios to the random baseline of the same run.

Run (heavy: two vLLMs at once, about 5 minutes on 2 cores):
    OMP_NUM_THREADS=1 PYTHONPATH=operator:server-image:trainer-image .venv/bin/python bench/pool_affinity.py \
        [--requests 200] [--adapters 8] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from collections import OrderedDict, defaultdict
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web
from loraplane.local.stack import start_vllm
from loraplane.pool_routing import pool_files
from loraplane.routing import RoutingTable
from loraplane_server.router.app import Router
from loraplane_server.router.metrics import RouterMetrics
from loraplane_server.router.pool import UpstreamPool
from loraplane_server.table_watch import TableWatcher

SERVED = "smollm2"


def make_adapters(base_dir: Path, out: Path, n: int) -> list[Path]:
    """Tiny random-weight LoRA adapters (r=8 on q/v/o; B scaled so each changes the greedy answer)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    paths = []
    for i in range(n):
        path = out / f"a{i}"
        paths.append(path)
        if (path / "adapter_config.json").exists():
            continue
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"],
                            init_lora_weights=False)
        model = get_peft_model(base, config)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.mul_(20.0)
        model.save_pretrained(path)
    return paths


def chatbot(i: int, adapter: Path) -> RoutingTable:
    return RoutingTable.model_validate({
        "model": f"bot-{i}", "namespace": "bench", "baseModel": SERVED, "cache": {"enabled": False},
        "variants": [{"name": "v1", "weight": 100, "adapterUri": str(adapter)}],
    })


def register(url: str, tables: list[RoutingTable]) -> None:
    for t in tables:
        v = t.variants[0]
        r = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": t.lora_name(v), "lora_path": v.adapter_uri},
                       timeout=120)
        if r.status_code != 200 and "already" not in r.text:
            raise SystemExit(f"loading {t.lora_name(v)} on {url}: {r.status_code} {r.text[:300]}")


def swaps(record: list[tuple[str, str]], slots: int) -> int:
    """Requests whose adapter was not among its replica's `slots` most recently used (LRU)."""
    lru: dict[str, OrderedDict[str, None]] = defaultdict(OrderedDict)
    misses = 0
    for url, adapter in record:
        held = lru[url]
        if adapter in held:
            held.move_to_end(adapter)
            continue
        misses += 1
        held[adapter] = None
        if len(held) > slots:
            held.popitem(last=False)
    return misses


async def run_mode(mode: str, tables_dir: Path, upstreams: list[str], sequence: list[int], concurrency: int,
                   seed: int, slots: int) -> dict:
    pool = UpstreamPool(upstreams, max_in_flight=8, queue_size=256, affinity_replicas=1 if mode == "affinity" else 0)
    if mode == "random":
        rng = random.Random(f"placement-{seed}")  # not the sequence's stream: that would correlate the two
        pool.place = lambda _adapter, loads, *_: rng.choice(sorted(loads))
    record: list[tuple[str, str]] = []
    acquire = pool.acquire

    async def recording_acquire(exclude=frozenset(), *, tenant="", weight=1, adapter=None):
        upstream = await acquire(exclude, tenant=tenant, weight=weight, adapter=adapter)
        record.append((upstream.url, adapter or ""))
        return upstream

    pool.acquire = recording_acquire
    watcher = TableWatcher(tables_dir)
    watcher.check()
    router = Router(watcher, pool, RouterMetrics(), max_concurrent=1024)
    runner = web.AppRunner(router.app(), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in sequence:
        queue.put_nowait(i)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = {"model": f"bot-{i}", "messages": [{"role": "user", "content": "Say something."}],
                    "max_tokens": 2, "temperature": 0}
            started = time.perf_counter()
            async with http.post(f"{url}/v1/chat/completions", json=body) as r:
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"{mode}: HTTP {r.status}: {(await r.text())[:300]}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
            await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    finally:
        await runner.cleanup()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "mode": mode, "requests": len(latencies), "wall_s": wall,
        "swaps_per_1000": 1000 * swaps(record, slots) / len(record),
        "p50_s": statistics.median(latencies), "p95_s": latencies[int(0.95 * (len(latencies) - 1))],
        "per_replica": {u: sum(1 for r, _ in record if r == u) for u in upstreams},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--modes", default="random,least-loaded,affinity", help="Placements to run, in order.")
    parser.add_argument("--work", type=Path, help="Working directory (adapters are reused from it).")
    parser.add_argument("--max-loras", type=int, default=4, help="GPU slots per replica (also --max-cpu-loras).")
    args = parser.parse_args()
    from loraplane_trainer.smollm2 import ensure_smollm2

    base = ensure_smollm2()
    work = args.work or Path(tempfile.mkdtemp(prefix="pool-affinity-"))
    t0 = time.perf_counter()
    adapters = make_adapters(base, work / "adapters", args.adapters)
    tables = [chatbot(i, p) for i, p in enumerate(adapters)]
    tables_dir = work / "routing"
    tables_dir.mkdir(exist_ok=True)
    for name, text in pool_files(tables).items():
        (tables_dir / name).write_text(text)
    print(f"{len(adapters)} adapters made in {time.perf_counter() - t0:.0f}s; starting two vLLM replicas "
          f"(--max-loras {args.max_loras} --max-cpu-loras {args.max_loras})", flush=True)
    procs, urls = [], []
    try:
        for r in range(2):
            proc, url = start_vllm(base, SERVED, work / f"vllm-{r}.log", timeout=900, max_loras=args.max_loras,
                                   max_lora_rank=16, max_model_len=512, dtype="bfloat16",
                                   extra_args=["--max-cpu-loras", str(args.max_loras), "--max-num-seqs", "8"])
            procs.append(proc)
            urls.append(url)
        for url in urls:
            register(url, tables)
        rng = random.Random(args.seed)
        sequence = [rng.randrange(len(tables)) for _ in range(args.requests)]
        results = {}
        for mode in args.modes.split(","):
            results[mode] = asyncio.run(run_mode(mode, tables_dir, urls, sequence, args.concurrency, args.seed,
                                                   args.max_loras))
            print(json.dumps(results[mode]), flush=True)
    finally:
        for proc in procs:
            proc.stop()
    base_row = results["random"]
    print(f"\npool affinity: 2 vLLM replicas (CPU), {len(tables)} adapters, {args.max_loras} slots each, "
          f"{args.requests} requests at concurrency {args.concurrency}; {os.cpu_count()} CPUs, shared")
    print(f"{'placement':<14}{'swaps/1000':>12}{'vs random':>11}{'p95 s':>8}{'vs random':>11}{'wall s':>8}")
    for mode, row in results.items():
        fewer = base_row["swaps_per_1000"] / row["swaps_per_1000"] if row["swaps_per_1000"] else float("inf")
        print(f"{mode:<14}{row['swaps_per_1000']:>12.0f}{fewer:>10.1f}x{row['p95_s']:>8.2f}"
              f"{row['p95_s'] / base_row['p95_s']:>10.2f}x{row['wall_s']:>8.0f}")
    print("('vs random' for swaps: how many times fewer; for p95: the ratio to random's p95. Target: >= 3x fewer.)")


if __name__ == "__main__":
    main()
