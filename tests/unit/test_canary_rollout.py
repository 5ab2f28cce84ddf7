"""The canary state machine driven step by step against a real /metrics endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from loraplane.api.base import parse_duration
from loraplane.api.chatbotdeployment import RolloutSpec
from loraplane.canary import (
    Action,
    MetricsError,
    RolloutState,
    RouterMetricsSource,
    RoutingFileRouter,
    expire_retiring,
    parse_router_metrics,
    rollback,
    run_canary_step,
    start_canary,
    window_figures,
)
from loraplane.routing import RoutingTable, load_routing_table
from prometheus_client import generate_latest

from tests.support.canary_metrics import router_metrics_server

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROLLOUT = RolloutSpec.model_validate({
    "steps": [10, 50, 100], "interval": "1m", "minRequests": 50, "promotionGracePeriod": "2m",
    "analysis": {"maxErrorRate": 0.05, "maxLatencyIncrease": 0.5, "minFeedbackDelta": -0.1, "minFeedbackCount": 5},
})


def test_parse_router_metrics_sums_codes_and_keeps_buckets():
    with router_metrics_server("bot") as m:
        m.serve("v1", 90, error_rate=0.1, feedback=0.75)
        m.serve("v2", 10)
        text = generate_latest(m.registry).decode()
    counts = parse_router_metrics(text, "bot")
    assert counts["v1"]["requests"] == 90 and counts["v1"]["errors"] == 9
    assert counts["v1"]["feedbackCount"] == 90 and counts["v1"]["feedbackSum"] == pytest.approx(67.5)
    assert counts["v1"]["latency"]["+Inf"] == 90
    assert parse_router_metrics(text, "other-bot") == {}
    figs = window_figures(counts, {"v1": {**counts["v1"], "requests": 40, "errors": 9}})
    assert figs["v1"].requests == 50 and figs["v1"].errors == 0
    # A counter below its baseline means the router restarted: the window restarts with it.
    assert window_figures(counts, {"v2": {"requests": 1000}})["v2"].requests == 10


async def test_unreachable_metrics_is_no_decision():
    state = start_canary(RolloutState(stable="v1"), "v1", "v2", ROLLOUT, T0, baseline={}).state
    source = RouterMetricsSource("http://127.0.0.1:9/metrics", timeout=1)
    with pytest.raises(MetricsError):
        await source.baseline("bot")
    out = await run_canary_step(ROLLOUT, state, source, T0 + timedelta(minutes=5), model="bot")
    assert out.action is Action.WAIT and state.running and "cannot scrape" in out.state.message


async def test_good_figures_walk_the_steps_to_promotion():
    with router_metrics_server("bot") as m:
        source = RouterMetricsSource(m.url)
        state = RolloutState(stable="v1")
        out = start_canary(state, "v1", "v2", ROLLOUT, T0, baseline=await source.baseline("bot"))
        assert out.state.canary_weight == 10 and out.state.weights({"v1": 100}) == {"v1": 90, "v2": 10}

        # Too few canary requests: no decision even after the interval.
        m.serve("v1", 300, feedback=0.8)
        m.serve("v2", 20, feedback=0.8)
        out = await run_canary_step(ROLLOUT, out.state, source, T0 + timedelta(minutes=2), model="bot")
        assert out.action is Action.WAIT and "requests" in out.reason

        # Enough, good, but the interval has not elapsed: wait.
        m.serve("v2", 40, feedback=0.8)
        out = await run_canary_step(ROLLOUT, out.state, source, T0 + timedelta(seconds=30), model="bot")
        assert out.action is Action.WAIT and "s left" in out.reason

        out = await run_canary_step(ROLLOUT, out.state, source, T0 + timedelta(minutes=1), model="bot")
        assert out.action is Action.ADVANCE and out.state.step == 1 and out.state.canary_weight == 50
        assert all(r.passed for r in out.state.analysis)

        # The next window starts from the new baseline: the 60 earlier requests do not count.
        out = await run_canary_step(ROLLOUT, out.state, source, T0 + timedelta(minutes=3), model="bot")
        assert out.action is Action.WAIT
        m.serve("v1", 100, feedback=0.8)
        m.serve("v2", 100, feedback=0.78)
        out = await run_canary_step(ROLLOUT, out.state, source, T0 + timedelta(minutes=3), model="bot")
        assert out.action is Action.PROMOTE
        promoted = out.state
        assert promoted.stable == "v2" and promoted.canary is None and not promoted.running
        assert [(r.name, r.until) for r in promoted.retiring] == [("v1", T0 + timedelta(minutes=5))]
        assert expire_retiring(promoted, T0 + timedelta(minutes=6)).retiring == []


async def test_errors_on_the_canary_roll_back_within_the_interval():
    with router_metrics_server("bot") as m:
        source = RouterMetricsSource(m.url)
        state = start_canary(RolloutState(stable="v1"), "v1", "v2", ROLLOUT, T0,
                             baseline=await source.baseline("bot")).state
        m.serve("v1", 500, feedback=0.8)
        m.serve("v2", 60, error_rate=0.5, feedback=0.8)
        out = await run_canary_step(ROLLOUT, state, source, T0 + timedelta(seconds=10), model="bot")
        assert out.action is Action.ROLLBACK
        assert out.state.canary_weight == 0 and out.state.rolled_back and out.state.canary == "v2"
        assert out.state.weights({"v1": 100}) == {"v1": 100, "v2": 0}
        assert "errorRate 0.5 above by 0.45" in out.reason
        status = out.state.to_status()
        assert RolloutState.from_status({**status, "phase": "RolledBack"}).rolled_back
        # A rolled-back canary is not judged again.
        again = await run_canary_step(ROLLOUT, RolloutState.from_status({**status, "phase": "RolledBack"}),
                                      source, T0 + timedelta(minutes=5), model="bot")
        assert again.action is Action.NONE


async def test_paused_holds_the_step():
    with router_metrics_server("bot") as m:
        source = RouterMetricsSource(m.url)
        state = start_canary(RolloutState(stable="v1"), "v1", "v2", ROLLOUT, T0, baseline={}).state
        m.serve("v2", 100, error_rate=1.0)
        out = await run_canary_step(ROLLOUT, state, source, T0 + timedelta(minutes=5), model="bot", paused=True)
        assert out.action is Action.PAUSED and out.state.canary_weight == 10


def test_status_round_trip_and_manual_rollback():
    state = start_canary(RolloutState(stable="v1"), "v1", "v2", ROLLOUT, T0, baseline={"v1": {"requests": 3}}).state
    back = RolloutState.from_status(state.to_status())
    assert back == state
    out = rollback(back, "aborted by loraplane abort")
    assert out.action is Action.ROLLBACK and out.state.canary_weight == 0


def test_first_step_of_100_promotes_at_once():
    out = start_canary(RolloutState(stable="v1"), "v1", "v2", RolloutSpec(steps=[100]), T0)
    assert out.action is Action.PROMOTE and out.state.stable == "v2"


async def test_routing_file_router_rewrites_weights(tmp_path):
    path = tmp_path / "routing.yaml"
    table = RoutingTable.model_validate({
        "model": "bot", "baseModel": "smol",
        "variants": [{"name": "v1", "weight": 100, "adapterUri": "file:///a/v1"},
                     {"name": "v2", "weight": 0, "adapterUri": "file:///a/v2"}],
    })
    path.write_text(table.to_yaml())
    await RoutingFileRouter(path).apply({"v1": 75, "v2": 25}, [])
    assert {v.name: v.weight for v in load_routing_table(path).variants} == {"v1": 75, "v2": 25}
    await RoutingFileRouter(path).apply({"v2": 100}, ["v1"])
    after = load_routing_table(path)
    assert [(v.name, v.weight) for v in after.variants] == [("v2", 100)]
    assert [v.name for v in after.retained] == ["v1"]
    with pytest.raises(ValueError, match="no variant v9"):
        await RoutingFileRouter(path).apply({"v9": 100}, [])


def _local_canary(tmp_path, source: RouterMetricsSource, now: list[datetime]):
    """A LocalCanary of v2 against v1 on a routing file, on the clock `now[0]`; returns it and the file."""
    from loraplane.canary import LocalCanary

    path = tmp_path / "routing.yaml"
    path.write_text(RoutingTable.model_validate({
        "model": "bot", "baseModel": "smol",
        "variants": [{"name": "v1", "weight": 100, "adapterUri": "file:///a/v1"},
                     {"name": "v2", "weight": 0, "adapterUri": "file:///a/v2"}],
    }).to_yaml())
    return LocalCanary(ROLLOUT, stable="v1", canary="v2", model="bot", source=source,
                       router=RoutingFileRouter(path), clock=lambda: now[0]), path


async def test_local_canary_drives_a_routing_file_to_promotion(tmp_path):
    now = [T0]
    with router_metrics_server("bot") as m:
        canary, path = _local_canary(tmp_path, RouterMetricsSource(m.url), now)
        await canary.start()
        assert {v.name: v.weight for v in load_routing_table(path).variants} == {"v1": 90, "v2": 10}
        actions = []
        for _ in range(4):
            m.serve("v1", 100, feedback=0.8)
            m.serve("v2", 100, feedback=0.8)
            now[0] += timedelta(minutes=1)
            actions.append((await canary.tick()).action)
            if actions[-1] is Action.PROMOTE:
                break
    assert actions == [Action.ADVANCE, Action.PROMOTE]
    table = load_routing_table(path)
    assert {v.name: v.weight for v in table.variants} == {"v2": 100}
    assert [v.name for v in table.retained] == ["v1"]


async def test_local_canary_says_how_long_the_step_has_left(tmp_path):
    now = [T0]
    with router_metrics_server("bot") as m:
        canary, path = _local_canary(tmp_path, RouterMetricsSource(m.url), now)
        assert canary.interval_left() == 0.0  # no step yet
        await canary.start()
        interval = parse_duration(ROLLOUT.interval).total_seconds()
        assert canary.interval_left() == interval
        now[0] += timedelta(seconds=interval / 4)
        assert canary.interval_left() == interval * 3 / 4
        now[0] += timedelta(seconds=interval)
        assert canary.interval_left() == 0.0
