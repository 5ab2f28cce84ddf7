"""The Prometheus query-API source, against a small HTTP server speaking Prometheus' /api/v1/query.

No Prometheus server can be installed here; the stand-in answers each query the source
sends with figures computed from a real router metrics registry (as Prometheus would,
for a window that covers all samples), in Prometheus' JSON format.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from loraplane.canary import MetricsError, PrometheusSource, parse_router_metrics, window_figures
from loraplane.canary.sources import prometheus_queries
from prometheus_client import generate_latest

from tests.support.canary_metrics import RouterMetrics

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def prometheus_app(metrics: RouterMetrics, seen: list[dict]) -> web.Application:
    async def query(request: web.Request) -> web.Response:
        q = request.query["query"]
        seen.append(dict(request.query))
        figures = window_figures(parse_router_metrics(generate_latest(metrics.registry).decode(), metrics.model), None)
        counts = parse_router_metrics(generate_latest(metrics.registry).decode(), metrics.model)
        window = int((datetime.fromtimestamp(float(request.query["time"]), UTC) - T0).total_seconds())
        by_name = {text: name for name, text in prometheus_queries(metrics.model, window).items()}
        if q not in by_name:
            return web.json_response({"status": "error", "errorType": "bad_data", "error": f"unexpected {q}"}, status=400)
        value = {
            "requests": lambda v: figures[v].requests,
            "errors": lambda v: figures[v].errors,
            "p95": lambda v: figures[v].p95_latency_seconds,
            "feedbackSum": lambda v: counts[v]["feedbackSum"],
            "feedbackCount": lambda v: counts[v]["feedbackCount"],
        }[by_name[q]]
        result = [{"metric": {"variant": v}, "value": [float(request.query["time"]), str(value(v))]}
                  for v in figures if value(v) is not None]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    return app


async def test_prometheus_source_reads_figures_per_variant():
    metrics = RouterMetrics("bot")
    metrics.serve("v1", 200, latency=0.3, feedback=0.8)
    metrics.serve("v2", 50, latency=0.3, error_rate=0.1, feedback=0.6)
    seen: list[dict] = []
    async with TestServer(prometheus_app(metrics, seen)) as server:
        source = PrometheusSource(str(server.make_url("")))
        assert await source.baseline("bot") is None  # Prometheus needs no baseline
        figs = await source.figures("bot", ["v1", "v2", "v3"], T0, T0 + timedelta(minutes=10), None)
    assert set(figs) == {"v1", "v2"}
    assert figs["v2"].requests == 50 and figs["v2"].errors == 5
    assert figs["v1"].feedback_mean == pytest.approx(0.8) and figs["v2"].feedback_count == 50
    assert 0.24 <= figs["v1"].p95_latency_seconds <= 0.5
    assert all("[600s]" in q["query"] for q in seen)
    assert all('model="bot"' in q["query"] for q in seen)


async def test_prometheus_errors_are_metrics_errors():
    metrics = RouterMetrics("other")
    async with TestServer(prometheus_app(metrics, [])) as server:
        source = PrometheusSource(str(server.make_url("")))
        with pytest.raises(MetricsError, match="Prometheus query failed"):
            await source.figures("bot", ["v1"], T0, T0 + timedelta(minutes=1), None)


def test_queries_escape_the_model_name():
    q = prometheus_queries('we"ird', 60)
    assert 'model="we\\"ird"' in q["requests"] and "[60s]" in q["requests"]


async def test_one_of_two_routers_restarting_mid_step_keeps_the_window_exact():
    """Router A keeps running, router B restarts during the step: only B's baseline is dropped."""
    from loraplane.canary import RouterMetricsSource

    pods = {"a": RouterMetrics("bot"), "b": RouterMetrics("bot")}

    def app_of(pod: str) -> web.Application:
        async def metrics(_request):
            return web.Response(body=generate_latest(pods[pod].registry), content_type="text/plain")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        return app

    pods["a"].serve("canary", 5000, error_rate=0.01)  # 50 errors before the step
    pods["b"].serve("canary", 1000)
    async with TestServer(app_of("a")) as a, TestServer(app_of("b")) as b:
        source = RouterMetricsSource([str(a.make_url("/metrics")), str(b.make_url("/metrics"))])
        baseline = await source.baseline("bot")
        # The step's real traffic: A serves 200 (10 errors); B restarts, then serves 100 (20 errors).
        pods["a"].serve("canary", 200, error_rate=0.05, seed=1)
        pods["b"] = RouterMetrics("bot")
        pods["b"].serve("canary", 100, error_rate=0.2, seed=2)
        figs = await source.figures("bot", ["canary"], T0, T0 + timedelta(minutes=10), baseline)
    assert figs["canary"].requests == 300 and figs["canary"].errors == 30  # 10 %: fails a 2 % limit


def test_a_pooled_chatbot_reads_only_its_own_series():
    from loraplane.router_metrics import REQUESTS

    q = prometheus_queries("bot", 60, namespace="team-a", chatbot="bot")
    assert 'namespace="team-a",chatbot="bot"' in q["requests"] and "model=" not in q["requests"]
    text = (f'# TYPE {REQUESTS} counter\n'
            f'{REQUESTS}{{model="bot",namespace="team-a",chatbot="bot",variant="v1",code="200"}} 5\n'
            f'{REQUESTS}{{model="bot",namespace="team-b",chatbot="bot",variant="v1",code="200"}} 7\n')
    assert parse_router_metrics(text, "bot", ("team-a", "bot"))["v1"]["requests"] == 5
    assert parse_router_metrics(text, "bot", ("team-c", "bot")) == {}
