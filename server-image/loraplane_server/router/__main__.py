"""`loraplane-router` / `python -m loraplane_server.router`: run the A/B router."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import click
from aiohttp import web

from ..table_watch import TableWatcher
from .app import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONCURRENT,
    Router,
)
from .feedback import DEFAULT_MAX_AGE_SECONDS, RequestIds
from .metrics import RouterMetrics
from .placement import DEFAULT_AFFINITY_REPLICAS, DEFAULT_LOAD_FACTOR
from .pool import DEFAULT_FAILURE_THRESHOLD, DEFAULT_HEALTH_TIMEOUT, UpstreamPool, dns_loop


@click.command(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "LORAPLANE_ROUTER"})
@click.option("--routing-table", required=True, type=click.Path(),
              help="The pool's tables directory (one <namespace>.<chatbot>.yaml each) or one routing.yaml; reloaded live.")
@click.option("--upstream", "upstreams", multiple=True, help="vLLM base URL, e.g. http://vllm-0:8000 (repeatable).")
@click.option(
    "--upstream-dns", "dns_targets", multiple=True,
    help="HOST:PORT resolved periodically, one upstream per address (a headless Service; repeatable).",
)
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int, help="Users' port: /v1/*, /healthz, /readyz.")
@click.option("--admin-port", default=9090, show_default=True, type=int,
              help="Operator's port: /metrics and /pool/residency (keep it out of users' reach).")
@click.option("--affinity-replicas", default=DEFAULT_AFFINITY_REPLICAS, show_default=True, type=int,
              help="Home replicas per adapter (rendezvous hashing); 0 places by load alone.")
@click.option("--affinity-load-factor", default=DEFAULT_LOAD_FACTOR, show_default=True, type=float,
              help="A full home replica is skipped above this times the mean load (then the least loaded serves).")
@click.option("--residency-interval", default=10.0, show_default=True, type=float,
              help="Seconds between reads of each replica's adapters (/v1/models, vllm:lora_requests_info).")
@click.option("--max-in-flight", default=32, show_default=True, type=int, help="Requests at once per vLLM replica.")
@click.option("--queue-size", default=64, show_default=True, type=int, help="Queued requests per replica before 429.")
@click.option("--retry-after", default=1, show_default=True, type=int, help="Retry-After seconds on 429.")
@click.option("--reload-interval", default=2.0, show_default=True, type=float, help="Seconds between table checks.")
@click.option("--health-interval", default=5.0, show_default=True, type=float, help="Seconds between health checks.")
@click.option("--health-timeout", default=DEFAULT_HEALTH_TIMEOUT, show_default=True, type=float,
              help="Seconds a replica's /health has to answer.")
@click.option("--health-failure-threshold", default=DEFAULT_FAILURE_THRESHOLD, show_default=True, type=int,
              help="Failed health checks in a row before a replica leaves the pool.")
@click.option("--request-timeout", default=600.0, show_default=True, type=float, help="Upstream read timeout.")
@click.option("--max-concurrent", default=DEFAULT_MAX_CONCURRENT, show_default=True, type=int,
              help="Completions admitted at once (before their body is read); more answer 429.")
@click.option("--max-body-bytes", default=DEFAULT_MAX_BODY_BYTES, show_default=True, type=int,
              help="Largest request body; larger ones answer 413.")
@click.option("--body-timeout", default=DEFAULT_BODY_TIMEOUT, show_default=True, type=float,
              help="Seconds a client has to send its whole body (408 after).")
@click.option("--header-timeout", default=DEFAULT_HEADER_TIMEOUT, show_default=True, type=float,
              help="Seconds a connection has to send complete request headers (also the idle keep-alive time).")
@click.option("--signing-key-file", type=click.Path(dir_okay=False, exists=True),
              help="Key signing request ids (shared by every replica); unset: a random key per process.")
@click.option("--feedback-max-age", default=DEFAULT_MAX_AGE_SECONDS, show_default=True, type=float,
              help="Seconds after an answer during which its feedback is taken.")
@click.option("--upstream-api-key-file", type=click.Path(dir_okay=False, exists=True),
              help="vLLM's API key, sent as the bearer token of every upstream request.")
@click.option("--log-level", default="INFO", show_default=True)
def main(routing_table, upstreams, dns_targets, host, port, admin_port, affinity_replicas, affinity_load_factor,
         residency_interval, max_in_flight, queue_size, retry_after,
         reload_interval, health_interval, health_timeout, health_failure_threshold, request_timeout, max_concurrent, max_body_bytes, body_timeout,
         header_timeout, signing_key_file, feedback_max_age, upstream_api_key_file, log_level) -> None:
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
        affinity_replicas=affinity_replicas, load_factor=affinity_load_factor,
        failure_threshold=health_failure_threshold,
    )
    watcher = TableWatcher(routing_table, on_result=lambda r: metrics.reloads.labels(r).inc())
    watcher.check()
    key = Path(signing_key_file).read_bytes().strip() if signing_key_file else None
    api_key = Path(upstream_api_key_file).read_text().strip() if upstream_api_key_file else None
    router = Router(
        watcher, pool, metrics, request_timeout=request_timeout, retry_after_seconds=retry_after,
        request_ids=RequestIds(key, max_age_seconds=feedback_max_age), upstream_api_key=api_key,
        max_concurrent=max_concurrent, max_body_bytes=max_body_bytes, body_timeout=body_timeout,
        header_timeout=header_timeout,
    )
    watcher._on_change = router.on_table
    app = router.app()

    async def background(_app):
        tasks = [asyncio.create_task(watcher.run(reload_interval)),
                 asyncio.create_task(pool.health_loop(router.session, health_interval, health_timeout)),
                 asyncio.create_task(router.residency.run(router.session, residency_interval))]
        if dns_targets:
            tasks.append(asyncio.create_task(dns_loop(pool, list(dns_targets), static, 10.0)))
        yield
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    app.cleanup_ctx.append(background)

    async def admin_site(_app):
        runner = web.AppRunner(router.admin_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, admin_port).start()
        yield
        await runner.cleanup()

    app.cleanup_ctx.append(admin_site)
    loop = None
    with contextlib.suppress(ImportError):
        import uvloop  # a faster event loop; the proxy's per-request cost is mostly loop overhead

        loop = uvloop.new_event_loop()
    logging.getLogger(__name__).info("router on %s:%d, admin on %d (pid %d)", host, port, admin_port, os.getpid())
    web.run_app(app, host=host, port=port, access_log=None, print=None, loop=loop, **router.server_options())


if __name__ == "__main__":
    main()
