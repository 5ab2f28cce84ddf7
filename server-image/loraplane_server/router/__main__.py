"""`loraplane-router` / `python -m loraplane_server.router`: run the A/B router."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import click
from aiohttp import web

from ..table_watch import TableWatcher
from .app import Router
from .metrics import RouterMetrics
from .pool import UpstreamPool, dns_loop


@click.command(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "LORAPLANE_ROUTER"})
@click.option("--routing-table", required=True, type=click.Path(dir_okay=False), help="routing.yaml (reloaded live).")
@click.option("--upstream", "upstreams", multiple=True, help="vLLM base URL, e.g. http://vllm-0:8000 (repeatable).")
@click.option(
    "--upstream-dns", "dns_targets", multiple=True,
    help="HOST:PORT resolved periodically, one upstream per address (a headless Service; repeatable).",
)
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--max-in-flight", default=32, show_default=True, type=int, help="Requests at once per vLLM replica.")
@click.option("--queue-size", default=64, show_default=True, type=int, help="Queued requests per replica before 429.")
@click.option("--retry-after", default=1, show_default=True, type=int, help="Retry-After seconds on 429.")
@click.option("--reload-interval", default=2.0, show_default=True, type=float, help="Seconds between table checks.")
@click.option("--health-interval", default=5.0, show_default=True, type=float, help="Seconds between health checks.")
@click.option("--request-timeout", default=600.0, show_default=True, type=float, help="Upstream read timeout.")
@click.option("--log-level", default="INFO", show_default=True)
def main(routing_table, upstreams, dns_targets, host, port, max_in_flight, queue_size, retry_after,
         reload_interval, health_interval, request_timeout, log_level) -> None:
    """OpenAI-compatible A/B router in front of a vLLM pool."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Split a comma-separated env value (LORAPLANE_ROUTER_UPSTREAM="http://a:8000,http://b:8000").
    static = [u for item in upstreams for u in item.split(",") if u]
    if not static and not dns_targets:
        raise click.UsageError("give at least one --upstream or --upstream-dns")
    metrics = RouterMetrics()
    pool = UpstreamPool(
        static, max_in_flight=max_in_flight, queue_size=queue_size,
        on_queue_change=lambda u: metrics.queue_depth.labels(u.url).set(len(u.waiting)),
    )
    watcher = TableWatcher(routing_table, on_result=lambda r: metrics.reloads.labels(r).inc())
    watcher.check()
    router = Router(watcher, pool, metrics, request_timeout=request_timeout, retry_after_seconds=retry_after)
    watcher._on_change = router.on_table
    app = router.app()

    async def background(_app):
        tasks = [asyncio.create_task(watcher.run(reload_interval)),
                 asyncio.create_task(pool.health_loop(router.session, health_interval))]
        if dns_targets:
            tasks.append(asyncio.create_task(dns_loop(pool, list(dns_targets), static, 10.0)))
        yield
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    app.cleanup_ctx.append(background)
    loop = None
    with contextlib.suppress(ImportError):
        import uvloop  # a faster event loop; the proxy's per-request cost is mostly loop overhead

        loop = uvloop.new_event_loop()
    logging.getLogger(__name__).info("router on %s:%d (pid %d)", host, port, os.getpid())
    web.run_app(app, host=host, port=port, handler_cancellation=True, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
