"""A stand-in for the router's /metrics: a real prometheus_client registry with the router's metric
names and labels, served over real HTTP, whose figures a test sets per variant.

The router itself needs vLLM behind it; the canary tests only need what it exports.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

from loraplane import router_metrics as rm
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FEEDBACK_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class RouterMetrics:
    """Per-variant router figures in a registry, as the router exports them."""

    def __init__(self, model: str, namespace: str = "default", chatbot: str | None = None):
        self.model, self.namespace, self.chatbot = model, namespace, chatbot
        labels = ["namespace", "chatbot", "model", "variant"]
        self.registry = CollectorRegistry()
        # prometheus_client appends _total to counters itself.
        self.requests = Counter(rm.REQUESTS.removesuffix("_total"), "requests", [*labels, "code"],
                                registry=self.registry)
        self.duration = Histogram(rm.REQUEST_DURATION, "latency", labels, buckets=LATENCY_BUCKETS,
                                  registry=self.registry)
        self.feedback = Histogram(rm.FEEDBACK, "feedback", labels, buckets=FEEDBACK_BUCKETS,
                                  registry=self.registry)
        self.url: str | None = None
        self._server = None

    @property
    def chatbot_labels(self) -> tuple[str, str, str]:
        """Every series names its chatbot as the router's do: namespace, chatbot, served name (read at each
        serve(): a test may point one stand-in at another chatbot)."""
        return self.namespace, self.chatbot or self.model, self.model

    def serve(self, variant: str, n: int, *, latency: float = 0.2, error_rate: float = 0.0,
              feedback: float | None = None, seed: int = 0) -> None:
        """Record `n` answered requests of `variant` (a share `error_rate` of them 502s)."""
        rnd = random.Random(seed)
        errors = round(n * error_rate)
        for i in range(n):
            code = "502" if i < errors else "200"
            self.requests.labels(*self.chatbot_labels, variant, code).inc()
            self.duration.labels(*self.chatbot_labels, variant).observe(latency * (0.8 + 0.4 * rnd.random()))
            if feedback is not None:
                self.feedback.labels(*self.chatbot_labels, variant).observe(feedback)

    def start(self) -> str:
        self._server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.url = f"http://127.0.0.1:{self._server.server_port}/metrics"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def router_metrics_server(model: str):
    metrics = RouterMetrics(model)
    metrics.start()
    try:
        yield metrics
    finally:
        metrics.stop()
