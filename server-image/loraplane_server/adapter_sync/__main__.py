"""`loraplane-adapter-sync` / `python -m loraplane_server.adapter_sync`: the sidecar beside each vLLM container."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import aiohttp
import click
from aiohttp import web

from ..table_watch import TableWatcher
from .disk import parse_size
from .sync import AdapterSync, SyncMetrics
from .vllm_client import VllmClient


def _size(value: str | None) -> int | None:
    try:
        return parse_size(value) if value else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "LORAPLANE_SYNC"})
@click.option("--routing-table", required=True, type=click.Path(),
              help="The pool's tables: a directory with one file per chatbot, or one routing.yaml (reloaded live).")
@click.option("--vllm-url", default="http://127.0.0.1:8000", show_default=True, help="The vLLM server beside us.")
@click.option(
    "--adapters-dir", default="/adapters", show_default=True, type=click.Path(file_okay=False, path_type=Path),
    help="Local volume shared with vLLM; verified adapters are placed here.",
)
@click.option(
    "--disk-budget", callback=lambda _c, _p, v: _size(v),
    help="Bytes the adapters volume may hold (500Mi, 2Gi); beyond it the least recently used copies are "
         "deleted and fetched again on their next request. Unset: unbounded.",
)
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8001, show_default=True, type=int, help="Readiness (/readyz) and /metrics.")
@click.option("--interval", default=5.0, show_default=True, type=float, help="Seconds between reconcile passes.")
@click.option("--reload-interval", default=2.0, show_default=True, type=float, help="Seconds between table checks.")
@click.option("--vllm-api-key-file", type=click.Path(dir_okay=False, exists=True),
              help="vLLM's API key (the server's VLLM_API_KEY), sent with every call to its API.")
@click.option("--log-level", default="INFO", show_default=True)
def main(routing_table, vllm_url, adapters_dir, disk_budget, host, port, interval, reload_interval,
         vllm_api_key_file, log_level) -> None:
    """Download, verify and register the pool's adapters in vLLM; fetch the rest on their first request."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    metrics = SyncMetrics()
    watcher = TableWatcher(routing_table, on_result=lambda r: metrics.reloads.labels(r).inc())
    holder: dict = {}

    async def lifecycle(app: web.Application):
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300, sock_connect=5))
        sync: AdapterSync = holder["sync"]
        api_key = Path(vllm_api_key_file).read_text().strip() if vllm_api_key_file else None
        sync.vllm = VllmClient(session, vllm_url, api_key)
        watcher._on_change = lambda _t: sync.wake.set()
        watcher.check()
        tasks = [asyncio.create_task(sync.run(interval)), asyncio.create_task(watcher.run(reload_interval))]
        yield
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await session.close()

    sync = AdapterSync(watcher, None, adapters_dir.resolve(), metrics, disk_budget=disk_budget)  # type: ignore[arg-type]
    holder["sync"] = sync
    app = sync.app()
    app.cleanup_ctx.append(lifecycle)
    web.run_app(app, host=host, port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
