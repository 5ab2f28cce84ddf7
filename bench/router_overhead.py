"""What the router costs per request, measured against a direct call and against nginx as a reference proxy.

One run starts, on localhost:
  - nginx returning a fixed chat completion (the "upstream": fast, so the proxies' own cost shows),
  - the router in front of it (one process, uvloop, metrics on, cache enabled),
  - nginx as a reverse proxy in front of it (one worker, keep-alive upstream),
  - a bare aiohttp + uvloop proxy (the floor of any aiohttp proxy on the machine),
and drives each with wrk: p50/p99 latency at one connection, requests/s at 16.
A streaming check then sends a 20-chunk SSE answer (a chunk every 20 ms) direct
and through the router and prints the mean extra delay per chunk.

Needs the Debian packages nginx and wrk (`apt-get update && apt-get install -y nginx wrk`);
the benchmark installs nothing itself. Run: .venv/bin/python bench/router_overhead.py
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

DURATION = os.environ.get("BENCH_DURATION", "4s")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "Hello there"}],
                   "max_tokens": 16, "temperature": 0.7})
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "stable",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "General Kenobi."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def nginx_conf(work: Path, upstream_port: int, proxy_port: int) -> Path:
    answer = ANSWER.replace("'", "\\'")
    conf = f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    upstream fixed {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{upstream_port};
        location /health {{ return 200 'ok'; }}
        location / {{ default_type application/json; return 200 '{answer}'; }}
    }}
    server {{
        listen 127.0.0.1:{proxy_port};
        location / {{
            proxy_pass http://fixed;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    path = work / "nginx.conf"
    path.write_text(conf)
    return path


def parse_duration_ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk duration {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def wrk(url: str, connections: int, script: Path) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{DURATION}", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))}
    for pct in ("50", "99"):
        figures[f"p{pct}"] = parse_duration_ms(re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} error responses:\n{out}")
    return figures


async def stream_delays(url: str, model: str) -> list[float]:
    """Arrival time of each chunk of one streamed answer, relative to the first."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(
        url, json={"model": model, "messages": [{"role": "user", "content": "x"}], "stream": True}
    ) as r:
        times = []
        async for _chunk in r.content.iter_any():
            times.append(time.perf_counter())
    return [t - times[0] for t in times]


async def streaming_upstream(port: int) -> None:
    """An SSE upstream: 20 chunks, one every 20 ms."""
    from aiohttp import web

    async def handler(request):
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(20):
            await resp.write(f'data: {{"choices":[{{"index":0,"delta":{{"content":"t{i}"}}}}]}}\n\n'.encode())
            await asyncio.sleep(0.02)
        await resp.write(b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":20}}\n\ndata: [DONE]\n\n')
        return resp

    async def health(_request):
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()


def bare_proxy(port: int, upstream: str) -> None:
    """Reference point: the least an aiohttp + uvloop proxy does (keep-alive pool, JSON rewrite of `model`)."""
    import aiohttp
    import uvloop
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        body["model"] = "stable"
        async with request.app["session"].post(f"{upstream}{request.path}", json=body) as r:
            data = await r.read()
            return web.Response(body=data, status=r.status, content_type="application/json")

    async def session_ctx(app: web.Application):
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app["session"].close()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    app.cleanup_ctx.append(session_ctx)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=uvloop.new_event_loop())


def start_bare_proxy(upstream: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, "--bare-proxy", str(port), upstream], start_new_session=True)
    wait_port(port)
    return proc


def start_router(work: Path, upstream: str, port: int) -> subprocess.Popen:
    table = work / f"routing-{port}.yaml"
    table.write_text(
        "model: bench\nbaseModel: base\nvariants:\n"
        "- {name: stable, weight: 90, adapterUri: file:///unused/stable}\n"
        "- {name: canary, weight: 10, adapterUri: file:///unused/canary}\n"
        "stickinessHeader: x-user-id\ncache: {enabled: true, ttlSeconds: 600, maxEntries: 10000}\n"
        "pricePerGpuHour: 2.0\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "loraplane_server.router", "--routing-table", str(table), "--upstream", upstream,
         "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(free_port()),
         "--log-level", "WARNING", "--max-in-flight", "256"],
        start_new_session=True,
    )
    wait_port(port)
    for _ in range(100):
        if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
            break
        time.sleep(0.1)
    return proc


def main() -> int:
    missing = [tool for tool in ("nginx", "wrk") if not shutil.which(tool)]
    if missing:
        print(f"missing {', '.join(missing)}: apt-get update && apt-get install -y nginx wrk", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="router-bench-"))
    script = work / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(BODY)}\n"
    )
    up_port, nginx_proxy_port, router_port, bare_port = free_port(), free_port(), free_port(), free_port()
    conf = nginx_conf(work, up_port, nginx_proxy_port)
    nginx = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"], start_new_session=True)
    procs = [nginx]
    try:
        wait_port(up_port)
        wait_port(nginx_proxy_port)
        procs.append(start_router(work, f"http://127.0.0.1:{up_port}", router_port))
        procs.append(start_bare_proxy(f"http://127.0.0.1:{up_port}", bare_port))
        targets = {
            "direct": f"http://127.0.0.1:{up_port}/v1/chat/completions",
            "router": f"http://127.0.0.1:{router_port}/v1/chat/completions",
            "nginx": f"http://127.0.0.1:{nginx_proxy_port}/v1/chat/completions",
            "bare": f"http://127.0.0.1:{bare_port}/v1/chat/completions",
        }
        for url in targets.values():  # warm-up (keep-alive pools, first-call imports)
            wrk(url, 4, script)
        # Rounds interleave the targets so a burst of load from elsewhere hits all of them alike; medians reported.
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(ROUNDS):
            for name, url in targets.items():
                runs[name].append({**wrk(url, 1, script), "rps16": wrk(url, 16, script)["rps"]})
        results = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}

        print(f"router overhead (median of {ROUNDS} interleaved wrk runs of {DURATION}; {os.cpu_count()} CPUs, shared)")
        print(f"{'path':<8} {'p50 ms':>8} {'p99 ms':>8} {'req/s @16':>10} {'+p50 ms':>8} {'+p99 ms':>8}")
        d = results["direct"]
        for name, r in results.items():
            print(f"{name:<8} {r['p50']:>8.3f} {r['p99']:>8.3f} {r['rps16']:>10.0f} "
                  f"{r['p50'] - d['p50']:>8.3f} {r['p99'] - d['p99']:>8.3f}")
        added = {n: results[n]["p50"] - d["p50"] for n in ("router", "nginx")}
        ratio = f"{added['router'] / added['nginx']:.1f}x" if added["nginx"] >= 0.001 else "n/a, nginx adds ~0"
        print(f"router adds {added['router']:.3f} ms at p50 ({ratio}; nginx adds {added['nginx']:.3f} ms); "
              f"router req/s at 16 connections = {results['router']['rps16'] / results['nginx']['rps16']:.2f} of nginx's")
        r = results["router"]
        print(f"router req/s at 16 connections = {r['rps16'] / results['bare']['rps16']:.2f} of a bare aiohttp proxy's "
              "(bare: no selection, metrics, cache or queueing; the floor of any aiohttp proxy on this machine)")
        print(f"targets: +p50 <= 0.5 ms: {'met' if added['router'] <= 0.5 else 'MISSED'}; "
              f"+p99 <= 2 ms: {'met' if r['p99'] - d['p99'] <= 2 else 'MISSED'}; "
              f">= 5000 req/s: {'met' if r['rps16'] >= 5000 else 'MISSED'}")

        # Streaming: per-chunk delay through the router vs direct.
        sse_port, sse_router_port = free_port(), free_port()

        async def streaming() -> tuple[list[float], list[float]]:
            await streaming_upstream(sse_port)
            procs.append(await asyncio.to_thread(start_router, work, f"http://127.0.0.1:{sse_port}", sse_router_port))
            direct = await stream_delays(f"http://127.0.0.1:{sse_port}/v1/chat/completions", "stable")
            routed = await stream_delays(f"http://127.0.0.1:{sse_router_port}/v1/chat/completions", "bench")
            return direct, routed

        direct, routed = asyncio.run(streaming())
        n = min(len(direct), len(routed))
        extra = [routed[i] - direct[i] for i in range(n)]
        print(f"streaming: {len(direct)} chunks direct, {len(routed)} via router; chunk arrival spread vs direct: "
              f"mean {1000 * sum(extra) / n:+.2f} ms, max {1000 * max(extra, key=abs):+.2f} ms "
              "(no buffering: each chunk arrives as it is produced)")
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-proxy":
        bare_proxy(int(sys.argv[2]), sys.argv[3])
        sys.exit(0)
    sys.exit(main())
