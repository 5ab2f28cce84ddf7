"""A pool's routing tables: one file per chatbot, each refused or kept on its own."""

from __future__ import annotations

import json

import pytest
from loraplane.pool_routing import load_pool_routing, pool_files, table_file
from loraplane.routing import RoutingTable
from loraplane_server.table_watch import TableWatcher

pytestmark = pytest.mark.unit


def table(model: str, namespace: str = "team-a", chatbot: str | None = None, weight_v1: int = 100) -> dict:
    return {"model": model, "namespace": namespace, **({"chatbot": chatbot} if chatbot else {}),
            "baseModel": "base", "variants": [
                {"name": "v1", "weight": weight_v1, "adapterUri": f"s3://a/{namespace}/{model}/v1"},
                *([{"name": "base", "weight": 100 - weight_v1}] if weight_v1 < 100 else [])]}


def write(directory, namespace, chatbot, data) -> None:
    (directory / table_file(namespace, chatbot)).write_text(json.dumps(data))


def test_lora_names_carry_namespace_and_chatbot_so_two_chatbots_never_collide():
    a = RoutingTable.model_validate(table("bot", "team-a"))
    b = RoutingTable.model_validate(table("bot", "team-b"))
    assert a.upstream_model(a.variants[0]) == "team-a/bot/v1"
    assert b.upstream_model(b.variants[0]) == "team-b/bot/v1"
    served = RoutingTable.model_validate(table("support", "team-a", chatbot="support-bot"))
    assert served.lora_name(served.variants[0]) == "team-a/support-bot/v1" and served.key == "team-a.support-bot"


def test_one_broken_table_keeps_its_last_good_version_and_the_others_load(tmp_path):
    write(tmp_path, "team-a", "alpha", table("alpha", "team-a"))
    write(tmp_path, "team-b", "beta", table("beta", "team-b"))
    (tmp_path / "..data").mkdir()  # the kubelet's ConfigMap bookkeeping is not a table
    first = load_pool_routing(tmp_path)
    assert sorted(t.model for t in first.served()) == ["alpha", "beta"] and not first.errors
    write(tmp_path, "team-b", "beta", {**table("beta", "team-b"), "variants": []})
    write(tmp_path, "team-a", "alpha", table("alpha", "team-a", weight_v1=50))
    second = load_pool_routing(tmp_path, previous=first)
    assert "team-b.beta.yaml" in second.errors and "variants" in second.errors["team-b.beta.yaml"]
    assert second.by_served_name("beta") == first.by_served_name("beta")  # the last good one stays
    assert {v.name: v.weight for v in second.by_served_name("alpha").variants} == {"v1": 50, "base": 50}


def test_a_served_name_claimed_twice_stays_with_the_table_that_held_it(tmp_path):
    write(tmp_path, "team-z", "bot", table("bot", "team-z"))
    first = load_pool_routing(tmp_path)
    write(tmp_path, "team-a", "bot", table("bot", "team-a"))  # sorts first, but arrives later
    second = load_pool_routing(tmp_path, previous=first)
    assert second.by_served_name("bot").namespace == "team-z"
    assert second.shadowed() == ["team-a.bot.yaml"]
    assert [a.lora_name for a in second.adapters()] == ["team-z/bot/v1"]  # a shadowed table loads nothing
    fresh = load_pool_routing(tmp_path)  # no history: the first by file name
    assert fresh.by_served_name("bot").namespace == "team-a"


def test_pool_files_round_trip(tmp_path):
    tables = [RoutingTable.model_validate(table("alpha", "team-a")), RoutingTable.model_validate(table("beta", "team-b"))]
    for name, text in pool_files(tables).items():
        (tmp_path / name).write_text(text)
    assert sorted(load_pool_routing(tmp_path).tables) == ["team-a.alpha.yaml", "team-b.beta.yaml"]


def test_the_watcher_reads_a_directory_and_a_single_file(tmp_path):
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    write(pool_dir, "team-a", "alpha", table("alpha", "team-a"))
    write(pool_dir, "team-b", "beta", table("beta", "team-b"))
    changes = []
    watcher = TableWatcher(pool_dir, on_change=changes.append)
    assert watcher.check() and watcher.table is None and len(watcher.pool.served()) == 2
    assert not watcher.check()  # same content: no reload
    write(pool_dir, "team-b", "beta", {"model": "beta"})
    assert not watcher.check() and "team-b.beta.yaml" in watcher.last_error and len(changes) == 1
    single = tmp_path / "routing.yaml"
    single.write_text(json.dumps(table("bot")))
    one = TableWatcher(single)
    assert one.check() and one.table is not None and one.table.model == "bot"
