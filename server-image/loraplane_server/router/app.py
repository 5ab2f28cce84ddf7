"""The router's HTTP application: OpenAI-compatible endpoints in front of the vLLM pool.

Per request: pick the variant (pinned, sticky or weighted), answer from the
cache when the request is deterministic, else take a replica slot (429 when
every queue is full), forward with `model` rewritten, retry on another replica
only while nothing has reached the client, stream the answer through event by
event, and record per-variant metrics. A client that disconnects cancels the
handler (aiohttp handler cancellation), which closes the upstream connection,
and vLLM aborts the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time

import aiohttp
from aiohttp import web
from loraplane.routing import RoutingTable

from ..table_watch import TableWatcher
from .cache import ResponseCache, cache_key, is_cacheable
from .feedback import FeedbackError, SeenIds, new_request_id, normalise_score, variant_of
from .metrics import RouterMetrics
from .pool import NoUpstream, QueueFull, UpstreamPool
from .selection import UnknownModel, choose

log = logging.getLogger(__name__)

VARIANT_HEADER = "x-loraplane-variant"
REQUEST_ID_HEADER = "x-request-id"
# Headers passed to vLLM; everything else (cookies, hop-by-hop, encodings) stays here.
FORWARDED_HEADERS = ("authorization", "traceparent", "tracestate")
# A client that hangs up: aiohttp raises one of these from write().
_CLIENT_GONE = (ConnectionResetError, aiohttp.ClientConnectionResetError, BrokenPipeError)


def openai_error(status: int, message: str, kind: str, code: str | None = None, headers: dict | None = None):
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, headers=headers)


class Router:
    def __init__(
        self,
        watcher: TableWatcher,
        pool: UpstreamPool,
        metrics: RouterMetrics,
        *,
        request_timeout: float = 600.0,
        retry_after_seconds: int = 1,
        rng: random.Random | None = None,
    ) -> None:
        self.watcher = watcher
        self.pool = pool
        self.metrics = metrics
        self.cache = ResponseCache(10_000, 600)
        self.seen_feedback = SeenIds()
        # Cacheable requests being answered right now: identical ones wait for that answer (no thundering herd).
        self._inflight: dict[str, asyncio.Future] = {}
        self.request_timeout = request_timeout
        self.retry_after_seconds = retry_after_seconds
        self.rng = rng or random.Random()
        self.session: aiohttp.ClientSession | None = None
        if watcher.table is not None:
            self.cache.configure(watcher.table.cache)

    def on_table(self, table: RoutingTable) -> None:
        self.cache.configure(table.cache)

    # --- lifecycle -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/feedback", self.feedback)
        app.router.add_get("/metrics", self.metrics_endpoint)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.cleanup_ctx.append(self._session_ctx)
        return app

    async def _session_ctx(self, _app: web.Application):
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=self.request_timeout)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
        yield
        await self.session.close()

    # --- plain endpoints ---------------------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        healthy = [u.url for u in self.pool.upstreams if u.healthy]
        ready = self.watcher.table is not None and bool(healthy)
        body = {"ready": ready, "routingTable": self.watcher.table is not None, "healthyUpstreams": healthy}
        if self.watcher.last_error:
            body["routingTableError"] = self.watcher.last_error
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_endpoint(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": "text/plain; version=0.0.4"})

    async def models(self, _request: web.Request) -> web.Response:
        table = self.watcher.table
        if table is None:
            return openai_error(503, "no routing table loaded yet", "service_unavailable")
        ids = [table.model] + ([v.name for v in [*table.variants, *table.retained]] if table.allow_pinning else [])
        now = int(time.time())
        data = [{"id": i, "object": "model", "created": now, "owned_by": "loraplane"} for i in ids]
        return web.json_response({"object": "list", "data": data})

    async def feedback(self, request: web.Request) -> web.Response:
        table = self.watcher.table
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return openai_error(400, "body must be JSON: {\"requestId\": ..., \"score\": ...}", "invalid_request_error")
        if not isinstance(body, dict):
            return openai_error(400, "body must be a JSON object", "invalid_request_error")
        request_id = body.get("requestId") or body.get("request_id") or request.headers.get(REQUEST_ID_HEADER)
        if not request_id:
            return openai_error(400, "requestId is required", "invalid_request_error", "missing_request_id")
        try:
            variant = variant_of(request_id)
            score = normalise_score(body.get("score"))
        except FeedbackError as exc:
            return openai_error(400, str(exc), "invalid_request_error")
        if table is None or table.variant(variant) is None:
            return openai_error(404, f"requestId {request_id}: variant {variant!r} is not served", "not_found")
        if not self.seen_feedback.add(request_id):
            return openai_error(409, f"requestId {request_id} already has feedback", "conflict")
        self.metrics.series(table.model, variant).feedback.observe(score)
        return web.json_response({"requestId": request_id, "variant": variant, "score": score})

    # --- the proxy -----------------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        table = self.watcher.table
        if table is None:
            return openai_error(503, "no routing table loaded yet", "service_unavailable")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return openai_error(400, f"body is not valid JSON: {exc}", "invalid_request_error")
        if not isinstance(body, dict):
            return openai_error(400, "body must be a JSON object", "invalid_request_error")
        sticky_key = request.headers.get(table.stickiness_header) if table.stickiness_header else None
        try:
            choice = choose(table, body.get("model"), sticky_key, self.rng)
        except UnknownModel as exc:
            return openai_error(404, str(exc), "invalid_request_error", "model_not_found")
        variant = choice.variant.name
        request_id = new_request_id(variant)
        tags = {VARIANT_HEADER: variant, REQUEST_ID_HEADER: request_id}
        model = table.model
        series = self.metrics.series(model, variant)

        key = None
        leader: asyncio.Future | None = None
        if is_cacheable(body, table.cache):
            key = cache_key(variant, request.path, body)
            hit = self.cache.get(key)
            if hit is None and key in self._inflight:
                hit = await asyncio.shield(self._inflight[key])  # None when that request failed: go on alone
            (series.cache_hit if hit else series.cache_miss).inc()
            if hit:
                series.request("200")
                return web.Response(body=hit[0], content_type=hit[1], headers={**tags, "x-loraplane-cache": "hit"})
            leader = self._inflight[key] = asyncio.get_running_loop().create_future()

        upstream_body = {**body, "model": table.upstream_model(choice.variant)}
        stream = bool(body.get("stream"))
        strip_usage = False
        if stream and not (body.get("stream_options") or {}).get("include_usage"):
            # Ask vLLM for the usage chunk (tokens and cost need it) and drop it before the client sees it.
            upstream_body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            strip_usage = True
        payload = json.dumps(upstream_body).encode()
        headers = {"Content-Type": "application/json", REQUEST_ID_HEADER: request_id}
        headers.update({h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers})

        code = "500"
        tried: set[str] = set()
        try:
            while True:
                try:
                    upstream = await self.pool.acquire(tried)
                except QueueFull as exc:
                    code = "429"
                    return openai_error(
                        429, f"overloaded: {exc}; retry later", "rate_limit_exceeded", "queue_full",
                        headers={**tags, "Retry-After": str(self.retry_after_seconds)},
                    )
                except NoUpstream as exc:
                    code = "503"
                    return openai_error(503, str(exc), "service_unavailable", headers=tags)
                try:
                    resp = await self.session.post(f"{upstream.url}{request.path}", data=payload, headers=headers)
                except asyncio.CancelledError:
                    self.pool.release(upstream)
                    raise
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    # Nothing reached the client yet: safe to try another replica.
                    self.pool.release(upstream)
                    self.pool.mark_failed(upstream, f"{type(exc).__name__}: {exc}")
                    self.metrics.upstream_errors.labels(upstream.url, "connect").inc()
                    tried.add(upstream.url)
                    continue
                if resp.status == 503 and len(tried) + 1 < len(self.pool):
                    # An overloaded or draining replica: also before the first byte, so try another.
                    self.metrics.upstream_errors.labels(upstream.url, "unavailable").inc()
                    resp.release()
                    self.pool.release(upstream)
                    tried.add(upstream.url)
                    continue
                break
            try:
                if resp.status >= 500:
                    self.metrics.upstream_errors.labels(upstream.url, f"http_{resp.status}").inc()
                if stream and resp.status == 200:
                    code = "502"  # until the stream ends well: a replica dying mid-stream is an upstream error
                    try:
                        code, out = await self._stream(request, resp, table, variant, tags, started, strip_usage)
                    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                        # Bytes already reached the client: no retry; aborting the connection tells it so.
                        self.metrics.upstream_errors.labels(upstream.url, "stream_broken").inc()
                        raise
                    return out
                data = await resp.read()
                code = str(resp.status)
                content_type = resp.headers.get("Content-Type", "application/json")
                if resp.status == 200:
                    self._record_usage(table, variant, data)
                    if key is not None:
                        self.cache.put(key, data, content_type.split(";")[0])
                        if leader is not None:
                            leader.set_result((data, content_type.split(";")[0]))
                series.duration.observe(time.perf_counter() - started)
                return web.Response(body=data, status=resp.status, headers={**tags, "Content-Type": content_type})
            finally:
                resp.close()
                self.pool.release(upstream)
        except asyncio.CancelledError:
            code = "499"  # client closed the request (nginx's convention)
            raise
        finally:
            series.request(code)
            if leader is not None:
                if not leader.done():
                    leader.set_result(None)
                if self._inflight.get(key) is leader:
                    del self._inflight[key]

    async def _stream(
        self, request, resp, table: RoutingTable, variant: str, tags: dict, started: float, strip_usage: bool
    ) -> tuple[str, web.StreamResponse]:
        out = web.StreamResponse(
            status=200,
            headers={**tags, "Content-Type": resp.headers.get("Content-Type", "text/event-stream"),
                     "Cache-Control": "no-cache"},
        )
        await out.prepare(request)
        pending = b""
        first = True
        try:
            async for chunk in resp.content.iter_any():
                if first:
                    self.metrics.series(table.model, variant).ttft.observe(time.perf_counter() - started)
                    first = False
                pending += chunk
                # Forward every complete SSE event at once; a partial one waits for its end.
                end = _events_end(pending)
                if end == 0:
                    continue
                events, pending = pending[:end], pending[end:]
                if b'"usage":{' in events or b'"usage": {' in events:
                    events = self._take_usage(table, variant, events, strip_usage)
                if events:
                    await out.write(events)
            if pending:
                await out.write(pending)
            await out.write_eof()
        except _CLIENT_GONE:
            return "499", out
        self.metrics.series(table.model, variant).duration.observe(time.perf_counter() - started)
        return "200", out

    def _take_usage(self, table: RoutingTable, variant: str, events: bytes, strip: bool) -> bytes:
        kept = []
        for event in events.split(b"\n\n"):
            if event.startswith(b"data: {") and b'"usage"' in event:
                with contextlib.suppress(ValueError):
                    data = json.loads(event[6:])
                    if data.get("usage"):
                        self.metrics.usage(table, variant, data["usage"])
                        if strip and not data.get("choices"):
                            continue
            kept.append(event)
        return b"\n\n".join(kept)

    def _record_usage(self, table: RoutingTable, variant: str, data: bytes) -> None:
        with contextlib.suppress(ValueError, AttributeError):
            self.metrics.usage(table, variant, json.loads(data).get("usage"))


def _events_end(buffer: bytes) -> int:
    """Length of the complete SSE events at the start of buffer (events end with a blank line, LF or CRLF)."""
    lf = buffer.rfind(b"\n\n")
    crlf = buffer.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
