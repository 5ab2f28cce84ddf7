"""Where canary figures come from, behind the narrow `MetricsSource` protocol.

- `RouterMetricsSource` scrapes the router's own `/metrics` (Prometheus text, parsed
  with prometheus_client's parser). Counters there are cumulative, so a window is the
  difference between a scrape now and a `baseline` scrape taken when the step began;
  the baseline is a plain dict, kept in the ChatbotDeployment's status.
- `PrometheusSource` asks a Prometheus query API for `increase(...[window])`, so it
  needs no baseline and sees every router replica.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .. import router_metrics as rm
from .analysis import VariantFigures
from .quantile import histogram_quantile


class MetricsError(Exception):
    """The source could not be read (unreachable, bad answer); the analysis then makes no decision."""


class MetricsSource(Protocol):
    """Figures per variant for one analysis window."""

    async def baseline(self, model: str) -> dict[str, Any] | None:
        """State to remember when a step begins (None for sources that need none)."""

    async def figures(
        self, model: str, variants: Sequence[str], since: datetime, now: datetime,
        baseline: Mapping[str, Any] | None,
    ) -> dict[str, VariantFigures]:
        """Figures of each variant between `since` and `now`; variants without data are left out."""


# ---------------------------------------------------------------- router /metrics


@dataclass
class _Counts:
    """Cumulative counts of one variant, as a scrape shows them."""

    requests: float = 0.0
    errors: float = 0.0
    latency: dict[float, float] = field(default_factory=dict)
    feedback_sum: float = 0.0
    feedback_count: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "errors": self.errors,
            # JSON keys are strings; "+Inf" round-trips through float().
            "latency": {_le_key(b): c for b, c in sorted(self.latency.items())},
            "feedbackSum": self.feedback_sum, "feedbackCount": self.feedback_count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Counts:
        return cls(
            requests=float(data.get("requests", 0)), errors=float(data.get("errors", 0)),
            latency={float(b): float(c) for b, c in (data.get("latency") or {}).items()},
            feedback_sum=float(data.get("feedbackSum", 0)), feedback_count=float(data.get("feedbackCount", 0)),
        )


def _le_key(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def parse_router_metrics(text: str, model: str, chatbot: tuple[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Cumulative per-variant counts of `model` from the router's Prometheus text.

    With `chatbot` (namespace, name), a series that carries namespace and chatbot labels (a pool's
    router labels every series so) counts only when both are that chatbot's.
    """
    counts: dict[str, _Counts] = {}

    def of(labels: Mapping[str, str]) -> _Counts | None:
        if "variant" not in labels:
            return None
        if chatbot is not None and "chatbot" in labels:
            if (labels.get("namespace"), labels["chatbot"]) != chatbot:
                return None
        elif labels.get("model") != model:
            return None
        return counts.setdefault(labels["variant"], _Counts())

    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as err:
        raise MetricsError(f"router /metrics is not Prometheus text: {err}") from err
    for family in families:
        for sample in family.samples:
            c = of(sample.labels)
            if c is None:
                continue
            if sample.name == rm.REQUESTS:
                c.requests += sample.value
                if str(sample.labels.get("code", "")).startswith("5"):
                    c.errors += sample.value
            elif sample.name == rm.REQUEST_DURATION + "_bucket":
                bound = float(sample.labels["le"])
                c.latency[bound] = c.latency.get(bound, 0.0) + sample.value
            elif sample.name == rm.FEEDBACK + "_sum":
                c.feedback_sum += sample.value
            elif sample.name == rm.FEEDBACK + "_count":
                c.feedback_count += sample.value
    return {variant: c.to_dict() for variant, c in counts.items()}


def merge_scrapes(scrapes: Iterable[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Sum the per-variant counts of several router replicas."""
    total: dict[str, _Counts] = {}
    for scrape in scrapes:
        for variant, data in scrape.items():
            c, t = _Counts.from_dict(data), total.setdefault(variant, _Counts())
            t.requests += c.requests
            t.errors += c.errors
            t.feedback_sum += c.feedback_sum
            t.feedback_count += c.feedback_count
            for bound, n in c.latency.items():
                t.latency[bound] = t.latency.get(bound, 0.0) + n
    return {variant: c.to_dict() for variant, c in total.items()}


def _window_counts(cur: _Counts, base: _Counts) -> _Counts:
    """What one scrape target counted since its baseline.

    A counter lower than its baseline means that target (one router pod) restarted: its
    baseline is then ignored (the window starts at the restart), as Prometheus' increase() does.
    """
    if cur.requests < base.requests or cur.feedback_count < base.feedback_count:
        base = _Counts()
    return _Counts(
        requests=cur.requests - base.requests,
        errors=cur.errors - base.errors,
        latency={b: n - base.latency.get(b, 0.0) for b, n in cur.latency.items()},
        feedback_sum=cur.feedback_sum - base.feedback_sum,
        feedback_count=cur.feedback_count - base.feedback_count,
    )


def _figures(window: Mapping[str, _Counts]) -> dict[str, VariantFigures]:
    return {
        variant: VariantFigures(
            requests=c.requests,
            errors=c.errors,
            p95_latency_seconds=histogram_quantile(0.95, c.latency),
            feedback_mean=c.feedback_sum / c.feedback_count if c.feedback_count > 0 else None,
            feedback_count=c.feedback_count,
        )
        for variant, c in window.items()
    }


def window_figures(now: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, Mapping[str, Any]] | None,
                   ) -> dict[str, VariantFigures]:
    """Figures per variant for the window between two cumulative scrapes of one target."""
    return _figures({
        variant: _window_counts(_Counts.from_dict(data), _Counts.from_dict((baseline or {}).get(variant) or {}))
        for variant, data in now.items()
    })


TARGETS = "targets"  # a per-target baseline: {"targets": {url: {variant: counts}}}


def per_target_window_figures(now: Mapping[str, Mapping[str, Mapping[str, Any]]],
                              baseline: Mapping[str, Any] | None) -> dict[str, VariantFigures]:
    """Figures per variant summed over scrape targets, each against its own baseline.

    Resets are found per target: one router pod restarting drops only its own baseline,
    while the other pods' windows stay exact. A target absent from the baseline (a new pod)
    counts from zero; a target gone since (a deleted pod) is missing from the window.
    """
    bases = (baseline or {}).get(TARGETS) or {}
    total: dict[str, _Counts] = {}
    for target, scrape in now.items():
        for variant, data in scrape.items():
            d = _window_counts(_Counts.from_dict(data), _Counts.from_dict((bases.get(target) or {}).get(variant) or {}))
            t = total.setdefault(variant, _Counts())
            t.requests += d.requests
            t.errors += d.errors
            t.feedback_sum += d.feedback_sum
            t.feedback_count += d.feedback_count
            for bound, n in d.latency.items():
                t.latency[bound] = t.latency.get(bound, 0.0) + n
    return _figures(total)


class RouterMetricsSource:
    """Reads the router's own /metrics from one or more router replicas (no Prometheus needed)."""

    def __init__(self, urls: Sequence[str] | str, *, timeout: float = 5.0, client: httpx.AsyncClient | None = None,
                 chatbot: tuple[str, str] | None = None):
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("RouterMetricsSource needs at least one /metrics URL")
        self.timeout = timeout
        self.chatbot = chatbot
        self._client = client

    async def _scrape(self, model: str) -> dict[str, dict[str, dict[str, Any]]]:
        """Cumulative per-variant counts of each target, by URL."""
        scrapes = {}
        async with _client(self._client, self.timeout) as client:
            for url in self.urls:
                try:
                    resp = await client.get(url)
                    resp.raise_for_status()
                except httpx.HTTPError as err:
                    raise MetricsError(f"cannot scrape {url}: {err}") from err
                scrapes[url] = parse_router_metrics(resp.text, model, self.chatbot)
        return scrapes

    async def baseline(self, model: str) -> dict[str, Any] | None:
        return {TARGETS: await self._scrape(model)}

    async def figures(self, model, variants, since, now, baseline) -> dict[str, VariantFigures]:
        scrapes = await self._scrape(model)
        if baseline and TARGETS not in baseline:
            # A baseline written before baselines were per target: the summed counts, as then.
            figures = window_figures(merge_scrapes(scrapes.values()), baseline)
        else:
            figures = per_target_window_figures(scrapes, baseline)
        return {v: f for v, f in figures.items() if v in variants}


class _client:
    """Use the given client, or open (and close) a short-lived one."""

    def __init__(self, client: httpx.AsyncClient | None, timeout: float):
        self.given, self.timeout, self.own = client, timeout, None

    async def __aenter__(self) -> httpx.AsyncClient:
        if self.given is not None:
            return self.given
        self.own = httpx.AsyncClient(timeout=self.timeout)
        return self.own

    async def __aexit__(self, *exc) -> None:
        if self.own is not None:
            await self.own.aclose()


# ---------------------------------------------------------------- Prometheus query API


def prometheus_queries(model: str, window_seconds: int, namespace: str | None = None,
                       chatbot: str | None = None) -> dict[str, str]:
    """PromQL for each figure, summed over router replicas, by variant.

    `namespace` is the namespace label: the scrape target's (Prometheus' Kubernetes discovery sets
    it), or the chatbot's own, which a pool's router puts on every series (the ServiceMonitor honours
    it). With `chatbot` the selector is namespace + chatbot: on a shared pool only that chatbot's
    series, never another tenant's; chatbots of one name in two namespaces are never summed.
    """
    if chatbot is not None:
        sel = f'namespace="{_escape(namespace or "default")}",chatbot="{_escape(chatbot)}"'
    else:
        sel = f'model="{_escape(model)}"'
        if namespace is not None:
            sel += f',namespace="{_escape(namespace)}"'
    w = f"[{max(int(window_seconds), 1)}s]"
    return {
        "requests": f"sum by (variant) (increase({rm.REQUESTS}{{{sel}}}{w}))",
        "errors": f'sum by (variant) (increase({rm.REQUESTS}{{{sel},code=~"5.."}}{w}))',
        "p95": f"histogram_quantile(0.95, sum by (variant, le) (increase({rm.REQUEST_DURATION}_bucket{{{sel}}}{w})))",
        "feedbackSum": f"sum by (variant) (increase({rm.FEEDBACK}_sum{{{sel}}}{w}))",
        "feedbackCount": f"sum by (variant) (increase({rm.FEEDBACK}_count{{{sel}}}{w}))",
    }


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class PrometheusSource:
    """Reads the router's metrics through a Prometheus HTTP query API (/api/v1/query)."""

    def __init__(self, url: str, *, namespace: str | None = None, timeout: float = 10.0,
                 client: httpx.AsyncClient | None = None, chatbot: str | None = None):
        self.url = url.rstrip("/")
        self.namespace = namespace
        self.chatbot = chatbot
        self.timeout = timeout
        self._client = client

    async def baseline(self, model: str) -> dict[str, Any] | None:
        return None

    async def _vector(self, client: httpx.AsyncClient, query: str, at: datetime) -> dict[str, float]:
        try:
            resp = await client.get(f"{self.url}/api/v1/query", params={"query": query, "time": at.timestamp()})
            resp.raise_for_status()
            body = resp.json()
        except (httpx.HTTPError, ValueError) as err:
            raise MetricsError(f"Prometheus query failed ({self.url}): {err}") from err
        if body.get("status") != "success" or body.get("data", {}).get("resultType") != "vector":
            raise MetricsError(f"Prometheus answered {body.get('status')}: {body.get('error', body.get('data'))}")
        out = {}
        for item in body["data"]["result"]:
            variant = item.get("metric", {}).get("variant")
            value = float(item["value"][1])
            if variant is not None and not math.isnan(value):
                out[variant] = value
        return out

    async def figures(self, model, variants, since, now, baseline) -> dict[str, VariantFigures]:
        window = max(int((now - since).total_seconds()), 1)
        queries = prometheus_queries(model, window, self.namespace, self.chatbot)
        async with _client(self._client, self.timeout) as client:
            v = {name: await self._vector(client, q, now) for name, q in queries.items()}
        out = {}
        for variant in variants:
            if variant not in v["requests"]:
                continue
            count = v["feedbackCount"].get(variant, 0.0)
            out[variant] = VariantFigures(
                requests=v["requests"][variant],
                errors=v["errors"].get(variant, 0.0),
                p95_latency_seconds=v["p95"].get(variant),
                feedback_mean=v["feedbackSum"].get(variant, 0.0) / count if count > 0 else None,
                feedback_count=count,
            )
        return out
