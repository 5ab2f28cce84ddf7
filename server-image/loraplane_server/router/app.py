"""The router's HTTP application: OpenAI-compatible endpoints in front of the vLLM pool.

A completion goes through these stages, in `Router.completions`, top to bottom:

1. admit     - take an admission slot before a byte of the body is read (429 when
               every slot is taken), so concurrent bodies bound the router's memory;
2. read      - read the body within the size limit and the body timeout, decode and
               parse it strictly (413/408/400 in OpenAI's error shape);
3. route     - pick the chatbot by its served name, check its API key (401), pick the
               variant (pinned, sticky or weighted) inside that chatbot only;
4. cache     - answer from the cache when the request is deterministic;
5. forward   - take a replica slot (placed by adapter affinity; 429 when every queue is
               full or the chatbot is over its fair share), send with `model` rewritten,
               retrying on another replica only while nothing reached the client (on the
               same one when it closed a kept-alive connection before answering);
6. relay     - pass the answer through (event by event when streamed) under the public
               model name, and record per-variant metrics.

A client that disconnects cancels the handler (aiohttp handler cancellation),
which closes the upstream connection, and vLLM aborts the generation. Headers
must arrive within the server's header timeout (see `__main__`), bodies within
`body_timeout`.

One router serves every chatbot table of its pool (`TableWatcher.pool`); cache,
stickiness, feedback, usage, traffic samples and metrics are kept per chatbot. `/metrics`,
`/pool/residency` and `/v1/samples` are served by `admin_app()` on a separate port, out of users' reach.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from loraplane.pool_routing import PoolRouting
from loraplane.routing import RoutingTable

from ..table_watch import TableWatcher
from .auth import accepts, bearer_digest, visible_tables
from .cache import ResponseCache, cache_key, is_cacheable
from .feedback import FeedbackError, RequestIds, SeenIds, normalise_score
from .metrics import RouterMetrics, VariantSeries, chatbot_labels
from .pool import NoUpstream, QueueFull, Upstream, UpstreamPool
from .residency import ResidencyPoller
from .sampling import PendingSample, Sampling
from .selection import Choice, UnknownModel, choose, pin_ids, resolve_table

log = logging.getLogger(__name__)

VARIANT_HEADER = "x-loraplane-variant"
REQUEST_ID_HEADER = "x-request-id"
# Headers passed to vLLM; everything else (cookies, hop-by-hop, encodings, the client's credentials) stays here.
FORWARDED_HEADERS = ("traceparent", "tracestate")
# A client that hangs up: aiohttp raises one of these from write().
_CLIENT_GONE = (ConnectionResetError, aiohttp.ClientConnectionResetError, BrokenPipeError)
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
DEFAULT_MAX_CONCURRENT = 256
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_HEADER_TIMEOUT = 10.0
UPSTREAM_KEEPALIVE_SECONDS = 3.0
MAX_DISCONNECTS = 3  # per request and replica, before the replica is taken out of the pool
FEEDBACK_MAX_BODY_BYTES = 16 * 1024


def openai_error(status: int, message: str, kind: str, code: str | None = None, headers: dict | None = None):
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def unauthorized() -> web.Response:
    """OpenAI's answer to a missing or wrong key (the same for both, naming neither key nor chatbot)."""
    return openai_error(401, "Incorrect or missing API key for this model: send Authorization: Bearer <key>.",
                        "invalid_request_error", "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


class BadRequest(Exception):
    """A request refused before it is routed; carries the OpenAI-style answer."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind

    def response(self, headers: dict | None = None) -> web.Response:
        return openai_error(self.status, self.message, self.kind, self.code, headers)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


async def read_json_body(request: web.Request, max_bytes: int, timeout: float) -> object:
    """The request body parsed as strict JSON; raises BadRequest naming what is wrong."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise BadRequest(413, f"body of {length} bytes exceeds the limit of {max_bytes}", "body_too_large")
    raw = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(64 * 1024):
                raw += chunk
                if len(raw) > max_bytes:
                    raise BadRequest(413, f"body exceeds the limit of {max_bytes} bytes", "body_too_large")
    except TimeoutError:
        raise BadRequest(408, f"body not received within {timeout:g}s", "body_timeout") from None
    charset = request.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        raise BadRequest(400, f"unsupported charset {charset[:40]!r}; send UTF-8", "unsupported_charset") from None
    try:
        return json.loads(bytes(raw).decode(charset), parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest(400, "body is nested too deeply", "invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BadRequest(400, f"body is not valid JSON: {str(exc)[:200]}", "invalid_json") from None


def validate_completion_body(body: object) -> dict:
    """The fields the router itself reads, checked before they are used."""
    if not isinstance(body, dict):
        raise BadRequest(400, "body must be a JSON object", "invalid_body")
    if not isinstance(body.get("model"), (str, type(None))):
        raise BadRequest(400, "model must be a string", "invalid_model")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest(400, "stream_options must be an object, e.g. {\"include_usage\": true}", "invalid_stream_options")
    return body


def public_model_bytes(data: bytes, upstream_model: str, public_model: str) -> bytes:
    """An answer with vLLM's model name (the variant's) replaced by the one the client asked for."""
    if upstream_model == public_model:
        return data
    old, new = json.dumps(upstream_model).encode(), json.dumps(public_model).encode()
    return data.replace(b'"model":' + old, b'"model":' + new).replace(b'"model": ' + old, b'"model": ' + new)


@dataclass
class Call:
    """One completion on its way through the stages."""

    table: RoutingTable
    body: dict
    choice: Choice
    request_id: str
    series: VariantSeries
    started: float
    code: str = "500"
    key: str | None = None
    leader: asyncio.Future | None = None
    tags: dict[str, str] = field(default_factory=dict)
    sample: PendingSample | None = None  # kept for evaluation (router/sampling.py)

    @property
    def variant(self) -> str:
        return self.choice.variant.name

    @property
    def upstream_model(self) -> str:
        return self.table.upstream_model(self.choice.variant)

    @property
    def public_model(self) -> str:
        """What the answer calls the model: the pin the client sent when it pinned one, else the served name."""
        return (self.choice.asked or self.variant) if self.choice.how == "pinned" else self.table.model


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
        request_ids: RequestIds | None = None,
        upstream_api_key: str | None = None,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    ) -> None:
        self.watcher = watcher
        self.pool = pool
        self.metrics = metrics
        # One cache per chatbot (its table's key), sized by that chatbot's settings.
        self.caches: dict[str, ResponseCache] = {}
        self._gauged: dict[str, tuple[str, str, str]] = {}  # chatbots with an in-flight gauge
        self.residency = ResidencyPoller(pool, upstream_api_key)
        self.request_ids = request_ids or RequestIds()
        self.seen_feedback = SeenIds()
        self.sampling = Sampling(self.request_ids.key, lambda: self.watcher.pool, rng)
        self.upstream_api_key = upstream_api_key
        self.max_concurrent = max_concurrent
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.header_timeout = header_timeout
        self.admitted = 0
        # Cacheable requests being answered right now: identical ones wait for that answer (no thundering herd).
        self._inflight: dict[str, asyncio.Future] = {}
        self.request_timeout = request_timeout
        self.retry_after_seconds = retry_after_seconds
        self.rng = rng or random.Random()
        self.session: aiohttp.ClientSession | None = None
        self.on_table(watcher.pool)

    def on_table(self, pool: PoolRouting) -> None:
        served = {t.key: t for t in pool.served()}
        for key in [k for k in self.caches if k not in served]:
            del self.caches[key]  # a chatbot that left the pool takes its answers with it
            with contextlib.suppress(KeyError):
                self.metrics.in_flight.remove(*self._gauged.pop(key))
        for key, table in served.items():
            self.caches.setdefault(key, ResponseCache(table.cache.max_entries, table.cache.ttl_seconds))
            self.caches[key].configure(table.cache)
            self._gauged[key] = chatbot_labels(table)
            self.metrics.in_flight.labels(*chatbot_labels(table)).set_function(
                lambda k=key, tenants=self.pool.tenants: (t.in_flight + t.queued) if (t := tenants.get(k)) else 0)
        self.sampling.on_table(pool)

    def cache_of(self, table: RoutingTable) -> ResponseCache:
        cache = self.caches.get(table.key)
        if cache is None:
            cache = self.caches[table.key] = ResponseCache(table.cache.max_entries, table.cache.ttl_seconds)
        return cache

    # --- lifecycle -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        # Bodies are read by the handlers themselves, within max_body_bytes; this bounds anything else.
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{id:.+}", self.model)
        app.router.add_post("/v1/feedback", self.feedback)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.cleanup_ctx.append(self._session_ctx)
        return app

    def admin_app(self) -> web.Application:
        """The operator's endpoints, on the admin port: every chatbot's metrics and the pool's residency."""
        app = web.Application(client_max_size=1024)
        app.router.add_get("/metrics", self.metrics_endpoint)
        app.router.add_get("/pool/residency", self.residency_endpoint)
        app.router.add_get("/v1/samples", self.sampling.export)
        app.router.add_get("/healthz", self.healthz)
        return app

    def server_options(self) -> dict:
        """Options of aiohttp's server (web.run_app / web.AppRunner) this router relies on."""
        # aiohttp closes a connection that has not sent complete headers within keepalive_timeout of
        # opening (or of its last answer): a short value makes it the header read timeout, so clients
        # trickling headers cannot hold connections (and file descriptors) open.
        return {"handler_cancellation": True, "keepalive_timeout": self.header_timeout}

    async def _session_ctx(self, _app: web.Application):
        # Idle upstream connections are dropped before vLLM drops them (its uvicorn closes them after
        # VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s): reusing one vLLM is closing fails the request.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=self.request_timeout)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
        yield
        await self.session.close()

    # --- plain endpoints ---------------------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        healthy = [u.url for u in self.pool.upstreams if u.healthy]
        loaded = self.watcher.loaded
        ready = loaded and bool(healthy)
        body = {"ready": ready, "routingTable": loaded, "healthyUpstreams": healthy}
        if self.watcher.last_error:
            body["routingTableError"] = self.watcher.last_error
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_endpoint(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": "text/plain; version=0.0.4"})

    async def residency_endpoint(self, _request: web.Request) -> web.Response:
        return web.json_response(self.residency.document())

    def _model_ids(self, request: web.Request) -> list[str] | None:
        """The model ids this caller may use (its key's chatbots, else the keyless ones); None before any table."""
        pool = self.watcher.pool
        if not self.watcher.loaded:
            return None
        private = pool.only is not None
        tables = visible_tables(pool.served(), bearer_digest(request.headers))
        return [i for t in tables for i in [t.model, *pin_ids(t, private)]]

    async def models(self, request: web.Request) -> web.Response:
        ids = self._model_ids(request)
        if ids is None:
            return openai_error(503, "no routing table loaded yet", "service_unavailable")
        now = int(time.time())
        data = [{"id": i, "object": "model", "created": now, "owned_by": "loraplane"} for i in ids]
        return web.json_response({"object": "list", "data": data})

    async def model(self, request: web.Request) -> web.Response:
        ids = self._model_ids(request)
        if ids is None:
            return openai_error(503, "no routing table loaded yet", "service_unavailable")
        model_id = request.match_info["id"]
        if model_id not in ids:
            return openai_error(404, f"model {model_id[:100]!r} is not served here", "invalid_request_error",
                                "model_not_found")
        return web.json_response({"id": model_id, "object": "model", "created": int(time.time()),
                                  "owned_by": "loraplane"})

    async def feedback(self, request: web.Request) -> web.Response:
        pool = self.watcher.pool
        try:
            body = await read_json_body(request, FEEDBACK_MAX_BODY_BYTES, self.body_timeout)
        except BadRequest as exc:
            return exc.response()
        if not isinstance(body, dict):
            return openai_error(400, "body must be a JSON object: {\"requestId\": ..., \"score\": ...}",
                                "invalid_request_error")
        request_id = body.get("requestId") or body.get("request_id") or request.headers.get(REQUEST_ID_HEADER)
        if not request_id:
            return openai_error(400, "requestId is required", "invalid_request_error", "missing_request_id")
        tables = {t.key: t for t in pool.served()}
        try:
            chatbot, variant = self.request_ids.verify(request_id, tables)
            score = normalise_score(body.get("score"))
        except FeedbackError as exc:
            return openai_error(400, str(exc), "invalid_request_error", "invalid_feedback")
        table = tables[chatbot]
        # Feedback is the chatbot's own data: it takes the same key as its completions.
        if not accepts(table, bearer_digest(request.headers)):
            return unauthorized()
        if table.variant(variant) is None:
            return openai_error(404, f"requestId {request_id}: variant {variant!r} is not served", "not_found")
        if not self.seen_feedback.add(request_id):
            return openai_error(409, f"requestId {request_id} already has feedback", "conflict")
        self.metrics.series(table, variant).feedback.observe(score)
        self.sampling.feedback(table, request_id, score)
        return web.json_response({"requestId": request_id, "variant": variant, "score": score})

    # --- the proxy -----------------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if not self.watcher.loaded:
            return openai_error(503, "no routing table loaded yet", "service_unavailable")
        # 1. admit
        if self.admitted >= self.max_concurrent:
            self.metrics.reject(self.watcher.pool.only, "overloaded")
            return openai_error(
                429, f"overloaded: {self.max_concurrent} requests in progress; retry later", "rate_limit_exceeded",
                "too_many_requests", headers={"Retry-After": str(self.retry_after_seconds)},
            )
        self.admitted += 1
        try:
            # 2. read
            table = self.watcher.pool.only
            try:
                body = validate_completion_body(
                    await read_json_body(request, self.max_body_bytes, self.body_timeout))
                # 3. route
                table, pin = self._table(body)
                if not accepts(table, bearer_digest(request.headers)):
                    self.metrics.reject(table, "unauthorized")
                    return unauthorized()
                choice = self._route(request, table, body, pin)
            except BadRequest as exc:
                self.metrics.reject(table, exc.code)
                return exc.response()
            variant = choice.variant.name
            request_id = self.request_ids.issue(table.key, variant)
            call = Call(table, body, choice, request_id, self.metrics.series(table, variant), started,
                        tags={VARIANT_HEADER: variant, REQUEST_ID_HEADER: request_id})
            call.sample = self.sampling.begin(request, table, body, request_id, variant)
            try:
                # 4. cache
                hit = await self._from_cache(request, call)
                if hit is not None:
                    return hit
                # 5. forward, 6. relay
                return await self._forward_and_relay(request, call)
            except asyncio.CancelledError:
                call.code = "499"  # client closed the request (nginx's convention)
                raise
            finally:
                self._finish(call)
        finally:
            self.admitted -= 1

    def _table(self, body: dict) -> tuple[RoutingTable, str | None]:
        try:
            return resolve_table(self.watcher.pool, body.get("model"))
        except UnknownModel as exc:
            raise BadRequest(404, str(exc), "model_not_found") from None

    def _route(self, request: web.Request, table: RoutingTable, body: dict, pin: str | None) -> Choice:
        sticky_key = request.headers.get(table.stickiness_header) if table.stickiness_header else None
        try:
            return choose(table, body.get("model"), sticky_key, self.rng, pin)
        except UnknownModel as exc:
            raise BadRequest(404, str(exc), "model_not_found") from None

    async def _from_cache(self, request: web.Request, call: Call) -> web.Response | None:
        """A cached answer, or None (then this call may lead: identical calls wait for its answer)."""
        if not is_cacheable(call.body, call.table.cache):
            return None
        # The caller's credentials are part of the key: one user's answer is never another's hit.
        auth = hashlib.sha256(request.headers.get("authorization", "").encode()).hexdigest()
        call.key = cache_key(f"{call.table.key}\0{call.variant}\0{auth}\0{call.public_model}", request.path,
                             call.body)
        hit = self.cache_of(call.table).get(call.key)
        if hit is None and call.key in self._inflight:
            hit = await asyncio.shield(self._inflight[call.key])  # None when that request failed: go on alone
        (call.series.cache_hit if hit else call.series.cache_miss).inc()
        if hit:
            call.code = "200"
            return web.Response(body=hit[0], content_type=hit[1], headers={**call.tags, "x-loraplane-cache": "hit"})
        call.leader = self._inflight[call.key] = asyncio.get_running_loop().create_future()
        return None

    def _upstream_request(self, request: web.Request, call: Call) -> tuple[bytes, dict[str, str], bool]:
        """The body and headers sent to vLLM, and whether the usage chunk is ours to strip."""
        body = call.body
        upstream_body = {**body, "model": call.upstream_model}
        strip_usage = False
        options = body.get("stream_options") or {}
        if body.get("stream") and not options.get("include_usage"):
            # Ask vLLM for the usage chunk (tokens and cost need it) and drop it before the client sees it.
            upstream_body["stream_options"] = {**options, "include_usage": True}
            strip_usage = True
        headers = {"Content-Type": "application/json", REQUEST_ID_HEADER: call.request_id}
        headers.update({h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers})
        if self.upstream_api_key:
            headers["Authorization"] = f"Bearer {self.upstream_api_key}"
        return json.dumps(upstream_body).encode(), headers, strip_usage

    async def _acquire_and_send(self, request: web.Request, call: Call, payload: bytes, headers: dict
                                ) -> tuple[Upstream, aiohttp.ClientResponse] | web.Response:
        """A replica slot and its response head; another replica is tried while nothing reached the client."""
        tried: set[str] = set()
        disconnects: Counter[str] = Counter()  # per replica: connections found closed before an answer
        tenant, adapter = call.table.key, call.upstream_model if call.choice.variant.adapter_uri else None
        while True:
            try:
                upstream = await self.pool.acquire(tried, tenant=tenant, weight=call.table.share, adapter=adapter)
            except QueueFull as exc:
                call.code = "429"
                if exc.reason == "over_share":
                    self.metrics.reject(call.table, "over_share")
                return openai_error(
                    429, f"overloaded: {exc}; retry later", "rate_limit_exceeded", exc.reason,
                    headers={**call.tags, "Retry-After": str(self.retry_after_seconds)},
                )
            except NoUpstream as exc:
                call.code = "503"
                return openai_error(503, str(exc), "service_unavailable", headers=call.tags)
            try:
                resp = await self.session.post(f"{upstream.url}{request.path}", data=payload, headers=headers)
            except asyncio.CancelledError:
                self.pool.release(upstream, tenant)
                raise
            except aiohttp.ServerDisconnectedError as exc:
                self.pool.release(upstream, tenant)
                self.metrics.upstream_errors.labels(upstream.url, "disconnected").inc()
                disconnects[upstream.url] += 1
                # Mostly a kept-alive connection the replica closed as it was reused: no answer came, so
                # send again (the pool may hold more such connections); only a replica that keeps
                # closing them is going away.
                if disconnects[upstream.url] >= MAX_DISCONNECTS:
                    self.pool.mark_failed(upstream, f"{type(exc).__name__}: {exc}")
                    tried.add(upstream.url)
                continue
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self.pool.release(upstream, tenant)
                self.pool.mark_failed(upstream, f"{type(exc).__name__}: {exc}")
                self.metrics.upstream_errors.labels(upstream.url, "connect").inc()
                tried.add(upstream.url)
                continue
            if resp.status == 503 and len(tried) + 1 < len(self.pool):
                # An overloaded or draining replica: also before the first byte, so try another.
                self.metrics.upstream_errors.labels(upstream.url, "unavailable").inc()
                resp.release()
                self.pool.release(upstream, tenant)
                tried.add(upstream.url)
                continue
            return upstream, resp

    async def _forward_and_relay(self, request: web.Request, call: Call) -> web.StreamResponse:
        payload, headers, strip_usage = self._upstream_request(request, call)
        sent = await self._acquire_and_send(request, call, payload, headers)
        if isinstance(sent, web.Response):
            return sent
        upstream, resp = sent
        try:
            if resp.status >= 500:
                self.metrics.upstream_errors.labels(upstream.url, f"http_{resp.status}").inc()
            if call.body.get("stream") and resp.status == 200:
                call.code = "502"  # until the stream ends well: a replica dying mid-stream is an upstream error
                try:
                    call.code, out = await self._relay_stream(request, resp, call, strip_usage)
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                    # Bytes already reached the client: no retry; aborting the connection tells it so.
                    self.metrics.upstream_errors.labels(upstream.url, "stream_broken").inc()
                    raise
                return out
            return await self._relay_whole(resp, call)
        finally:
            resp.close()
            self.pool.release(upstream, call.table.key)

    async def _relay_whole(self, resp: aiohttp.ClientResponse, call: Call) -> web.Response:
        data = public_model_bytes(await resp.read(), call.upstream_model, call.public_model)
        call.code = str(resp.status)
        content_type = resp.headers.get("Content-Type", "application/json")
        if resp.status == 200:
            self._record_usage(call, data)
            if call.sample:
                call.sample.whole(data)
            if call.key is not None:
                self.cache_of(call.table).put(call.key, data, content_type.split(";")[0])
                if call.leader is not None:
                    call.leader.set_result((data, content_type.split(";")[0]))
        call.series.duration.observe(time.perf_counter() - call.started)
        return web.Response(body=data, status=resp.status, headers={**call.tags, "Content-Type": content_type})

    async def _relay_stream(self, request, resp, call: Call, strip_usage: bool) -> tuple[str, web.StreamResponse]:
        out = web.StreamResponse(
            status=200,
            headers={**call.tags, "Content-Type": resp.headers.get("Content-Type", "text/event-stream"),
                     "Cache-Control": "no-cache"},
        )
        await out.prepare(request)
        pending = b""
        first = True
        try:
            async for chunk in resp.content.iter_any():
                if first:
                    call.series.ttft.observe(time.perf_counter() - call.started)
                    first = False
                pending += chunk
                # Forward every complete SSE event at once; a partial one waits for its end.
                end = _events_end(pending)
                if end == 0:
                    continue
                events, pending = pending[:end], pending[end:]
                if b'"usage":{' in events or b'"usage": {' in events:
                    events = self._take_usage(call, events, strip_usage)
                if events:
                    if call.sample:
                        call.sample.events(events)
                    await out.write(public_model_bytes(events, call.upstream_model, call.public_model))
            if pending:
                await out.write(public_model_bytes(pending, call.upstream_model, call.public_model))
            await out.write_eof()
        except _CLIENT_GONE:
            return "499", out
        call.series.duration.observe(time.perf_counter() - call.started)
        return "200", out

    def _finish(self, call: Call) -> None:
        call.series.request(call.code)
        self.sampling.finish(call.sample, call.code)
        if call.leader is not None:
            if not call.leader.done():
                call.leader.set_result(None)
            if self._inflight.get(call.key) is call.leader:
                del self._inflight[call.key]

    def _take_usage(self, call: Call, events: bytes, strip: bool) -> bytes:
        kept = []
        for event in events.split(b"\n\n"):
            if event.startswith(b"data: {") and b'"usage"' in event:
                with contextlib.suppress(ValueError):
                    data = json.loads(event[6:])
                    if data.get("usage"):
                        self.metrics.usage(call.table, call.variant, data["usage"])
                        if strip and not data.get("choices"):
                            continue
            kept.append(event)
        return b"\n\n".join(kept)

    def _record_usage(self, call: Call, data: bytes) -> None:
        with contextlib.suppress(ValueError, AttributeError):
            self.metrics.usage(call.table, call.variant, json.loads(data).get("usage"))


def _events_end(buffer: bytes) -> int:
    """Length of the complete SSE events at the start of buffer (events end with a blank line, LF or CRLF)."""
    lf = buffer.rfind(b"\n\n")
    crlf = buffer.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
