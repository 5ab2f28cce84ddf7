"""The router's Prometheus metrics, under the names of `loraplane.router_metrics` (the canary reads them).

Every per-chatbot series carries `namespace` and `chatbot` (the ChatbotDeployment) besides `model`
(its served name), so on a shared pool each chatbot's analysis reads only its own series.
"""

from __future__ import annotations

from loraplane import router_metrics as names
from loraplane.routing import RoutingTable
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
FEEDBACK_BUCKETS = (0.0, 0.25, 0.5, 0.75, 1.0)
CHATBOT_LABELS = ("namespace", "chatbot", "model")
# Requests refused before any chatbot is known (unknown model, bad body) carry these.
NO_CHATBOT = ("", "", "")


def chatbot_labels(table: RoutingTable | None) -> tuple[str, str, str]:
    """(namespace, chatbot, model) of a table's series."""
    return (table.namespace, table.chatbot_name, table.model) if table is not None else NO_CHATBOT


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(names.REQUESTS, "Requests by variant and HTTP status.", [*CHATBOT_LABELS, "variant", "code"], registry=r)
        self.duration = Histogram(
            names.REQUEST_DURATION, "Request latency to the last byte (cache hits excluded).",
            [*CHATBOT_LABELS, "variant"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.ttft = Histogram(
            names.TIME_TO_FIRST_TOKEN, "Time to the first streamed chunk.",
            [*CHATBOT_LABELS, "variant"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.tokens = Counter(names.TOKENS, "Tokens from the answers' usage.", [*CHATBOT_LABELS, "variant", "kind"], registry=r)
        self.cache = Counter(names.CACHE, "Cacheable requests by result.", [*CHATBOT_LABELS, "variant", "result"], registry=r)
        self.feedback = Histogram(
            names.FEEDBACK, "User feedback normalised to 0..1.", [*CHATBOT_LABELS, "variant"], buckets=FEEDBACK_BUCKETS, registry=r,
        )
        self.cost = Counter(names.COST, "Estimated GPU cost from usage tokens.", [*CHATBOT_LABELS, "variant"], registry=r)
        self.queue_depth = Gauge(names.QUEUE_DEPTH, "Requests waiting for a vLLM replica.", ["upstream"], registry=r)
        self.upstream_errors = Counter(
            names.UPSTREAM_ERRORS, "Failed upstream attempts.", ["upstream", "reason"], registry=r
        )
        self.rejected = Counter(
            names.REJECTED, "Requests refused before routing (overload, bad body).", [*CHATBOT_LABELS, "reason"], registry=r
        )
        self.reloads = Counter(names.ROUTING_TABLE_RELOADS, "Routing table loads.", ["result"], registry=r)
        self.in_flight = Gauge(names.IN_FLIGHT, "Requests holding or waiting for a vLLM slot, per chatbot.",
                               list(CHATBOT_LABELS), registry=r)

        self._series: dict[tuple[str, str, str, str], VariantSeries] = {}

    def series(self, table: RoutingTable, variant: str) -> VariantSeries:
        """The labelled children of one variant, looked up once (labels() costs a lock and a tuple per call)."""
        key = (*chatbot_labels(table), variant)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = VariantSeries(self, chatbot_labels(table), variant)
        return found

    def reject(self, table: RoutingTable | None, reason: str) -> None:
        self.rejected.labels(*chatbot_labels(table), reason).inc()

    def usage(self, table: RoutingTable, variant: str, usage: dict | None) -> None:
        """Count tokens and the cost estimate of one answer's `usage`."""
        if not isinstance(usage, dict):
            return
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens"))
        series = self.series(table, variant)
        series.prompt_tokens.inc(prompt)
        series.completion_tokens.inc(completion)
        if table.price_per_gpu_hour:
            series.cost.inc(estimated_cost(table, prompt, completion))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class VariantSeries:
    """Every per-variant series of one (model, variant)."""

    def __init__(self, metrics: RouterMetrics, chatbot: tuple[str, str, str], variant: str) -> None:
        self._requests = metrics.requests
        self.chatbot, self.variant = chatbot, variant
        self._codes: dict[str, object] = {}
        self.duration = metrics.duration.labels(*chatbot, variant)
        self.ttft = metrics.ttft.labels(*chatbot, variant)
        self.prompt_tokens = metrics.tokens.labels(*chatbot, variant, "prompt")
        self.completion_tokens = metrics.tokens.labels(*chatbot, variant, "completion")
        self.cost = metrics.cost.labels(*chatbot, variant)
        self.cache_hit = metrics.cache.labels(*chatbot, variant, "hit")
        self.cache_miss = metrics.cache.labels(*chatbot, variant, "miss")
        self.feedback = metrics.feedback.labels(*chatbot, variant)

    def request(self, code: str) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._requests.labels(*self.chatbot, self.variant, code)
        child.inc()


def estimated_cost(table: RoutingTable, prompt_tokens: int, completion_tokens: int) -> float:
    """GPU-seconds implied by the tokens, priced at the table's price per GPU-hour."""
    gpu_seconds = (completion_tokens + table.prompt_token_weight * prompt_tokens) / table.gpu_tokens_per_second
    return gpu_seconds * (table.price_per_gpu_hour or 0.0) / 3600.0


def _int(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0
