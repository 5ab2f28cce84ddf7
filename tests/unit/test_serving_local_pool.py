"""`loraplane serve` with a ModelPool and several ChatbotDeployments: the pool's tables, and bad input named."""

from __future__ import annotations

import base64
import hashlib

import pytest
import yaml
from click.testing import CliRunner
from loraplane.cli import cli
from loraplane.local.pool import PoolInputError, load_pool_inputs, pool_tables, write_pool_tables
from loraplane.pool_routing import load_pool_routing

from tests.unit.test_serving_local import adapter

pytestmark = pytest.mark.unit

POOL = {"apiVersion": "loraplane.io/v1alpha1", "kind": "ModelPool",
        "metadata": {"name": "shared", "namespace": "serving"},
        "spec": {"baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"}, "allowedNamespaces": {"from": "All"},
                 "vllm": {"maxLoras": 2, "maxCpuLoras": 8}, "adapterStorage": {"size": "1Gi"}}}


def chatbot(name: str, namespace: str, versions: list[str], **spec) -> dict:
    return {"apiVersion": "loraplane.io/v1alpha1", "kind": "ChatbotDeployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"poolRef": {"name": "shared", "namespace": "serving"},
                     "adapters": [{"name": v, "fineTuneJobRef": {"name": name, "version": v}} for v in versions],
                     "traffic": [{"adapter": versions[0], "weight": 100}], **spec}}


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "out"
    for name, versions in (("support-bot", ["v1", "v2"]), ("sales-bot", ["v3"])):
        for v in versions:
            adapter(root / name / v, hash(v) % 100)
    pool = tmp_path / "pool.yaml"
    pool.write_text(yaml.safe_dump(POOL))
    bots = tmp_path / "bots.yaml"
    key = base64.b64encode(b"sk-support").decode()
    bots.write_text(yaml.safe_dump_all([
        chatbot("support-bot", "team-support", ["v1", "v2"], priority=3,
                auth={"apiKeySecretRef": {"name": "support-keys"}}),
        chatbot("sales-bot", "team-sales", ["v3"], servedName="sales"),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "support-keys", "namespace": "team-support"},
         "data": {"a": key}},
    ]))
    return root, pool, bots


def test_each_chatbot_gets_its_own_table_in_the_pool_directory(files, tmp_path):
    root, pool, bots = files
    tables = pool_tables(load_pool_inputs([pool, bots]), str(root))
    write_pool_tables(tmp_path / "routing", tables)
    routing = load_pool_routing(tmp_path / "routing")
    assert not routing.errors and sorted(routing.tables) == ["team-sales.sales-bot.yaml",
                                                             "team-support.support-bot.yaml"]
    support, sales = routing.by_served_name("support-bot"), routing.by_served_name("sales")
    assert support.share == 3 and support.namespace == "team-support" and support.base_model == POOL["spec"][
        "baseModel"]["name"]
    assert support.api_key_sha256 == [hashlib.sha256(b"sk-support").hexdigest()]  # the digest only
    assert sales.chatbot_name == "sales-bot" and sales.api_key_sha256 == []
    assert sorted(a.lora_name for a in routing.adapters()) == [
        "team-sales/sales-bot/v3", "team-support/support-bot/v1", "team-support/support-bot/v2"]


def test_bad_pools_are_refused_naming_the_file_and_the_object(files, tmp_path):
    root, pool, bots = files
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(chatbot("rogue", "team-x", ["v1"]) | {"spec": {
        **chatbot("rogue", "team-x", ["v1"])["spec"], "poolRef": {"name": "elsewhere"}}}))
    with pytest.raises(PoolInputError, match=r"other.yaml: ChatbotDeployment rogue: spec.poolRef must name"):
        pool_tables(load_pool_inputs([pool, other]), str(root))
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump({**POOL, "spec": {**POOL["spec"], "allowedNamespaces": {"from": "Same"}}}))
    with pytest.raises(PoolInputError, match="namespace team-support is not allowed"):
        pool_tables(load_pool_inputs([same, bots]), str(root))
    clash = tmp_path / "clash.yaml"
    clash.write_text(yaml.safe_dump(chatbot("sales-bot-2", "team-x", ["v3"], servedName="sales")))
    with pytest.raises(PoolInputError, match="served name 'sales' is taken"):
        pool_tables(load_pool_inputs([pool, bots, clash]), str(root))
    nokeys = tmp_path / "nokeys.yaml"
    nokeys.write_text(yaml.safe_dump(chatbot("support-bot", "team-support", ["v1"],
                                             auth={"apiKeySecretRef": {"name": "support-keys"}})))
    with pytest.raises(PoolInputError, match="apiKeySecretRef names Secret support-keys"):
        pool_tables(load_pool_inputs([pool, nokeys]), str(root))


def test_serve_reports_a_chatbot_on_a_pool_it_was_not_given(files):
    root, _pool, bots = files
    result = CliRunner().invoke(cli, ["serve", str(bots), "--adapters-root", str(root)])
    assert result.exit_code != 0 and "spec.poolRef names ModelPool shared: give its file too" in result.output
