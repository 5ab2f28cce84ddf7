"""Local serving: resolving a ChatbotDeployment's adapters without a cluster, and `loraplane serve` errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from loraplane.api.chatbotdeployment import ChatbotDeployment
from loraplane.cli import cli
from loraplane.local.resolve import ResolveError, local_routing_table

from tests.support.adapters import publish_dir


def adapter(directory: Path, seed: int, verdict: str = "accepted") -> Path:
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps({"r": 8, "seed": seed}))
    manifest = publish_dir(directory, job="support-bot", version=directory.name, base_model="m")
    if verdict != "accepted":
        data = json.loads((directory / "manifest.json").read_text())
        data["verdict"] = verdict
        (directory / "manifest.json").write_text(json.dumps(data))
    return manifest


def chatbot(adapters: list[dict], traffic: list[dict]) -> ChatbotDeployment:
    return ChatbotDeployment.model_validate({
        "apiVersion": "loraplane.io/v1alpha1", "kind": "ChatbotDeployment",
        "metadata": {"name": "support-bot"},
        "spec": {"baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"}, "adapters": adapters,
                 "traffic": traffic, "stickiness": {"header": "x-user-id"}},
    })


def test_refs_resolve_from_the_adapters_root(tmp_path):
    root = tmp_path / "out"
    m1 = adapter(root / "support-bot" / "v1", 1)
    m3 = adapter(root / "support-bot" / "v3", 3)
    adapter(root / "support-bot" / "v4", 4, verdict="rejected")  # latest, but refused by its gate
    cbd = chatbot(
        [{"name": "v1", "fineTuneJobRef": {"name": "support-bot", "version": "v1"}},
         {"name": "latest", "fineTuneJobRef": {"name": "support-bot"}}],
        [{"adapter": "v1", "weight": 80}, {"adapter": "latest", "weight": 20}],
    )
    table = local_routing_table(cbd, str(root))
    by_name = {v.name: v for v in table.variants}
    assert by_name["v1"].weight == 80 and by_name["v1"].sha256 == m1.digest
    assert by_name["latest"].adapter_uri.endswith("support-bot/v3") and by_name["latest"].sha256 == m3.digest
    assert table.model == "support-bot" and table.stickiness_header == "x-user-id"


def test_unresolvable_adapters_are_named_with_the_reason(tmp_path):
    unpublished = tmp_path / "raw"
    unpublished.mkdir()
    cbd = chatbot(
        [{"name": "gone", "fineTuneJobRef": {"name": "nojob", "version": "v9"}},
         {"name": "raw", "uri": str(unpublished)}],
        [{"adapter": "gone", "weight": 50}, {"adapter": "raw", "weight": 50}],
    )
    with pytest.raises(ResolveError) as err:
        local_routing_table(cbd, str(tmp_path / "out"))
    text = str(err.value)
    assert "adapter gone: fineTuneJobRef nojob/v9" in text and "not published" in text
    assert f"adapter raw: uri {unpublished}" in text


def test_serve_command_reports_bad_specs_and_unresolvable_adapters(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "loraplane.io/v1alpha1", "kind": "ChatbotDeployment",
                                   "metadata": {"name": "x"}, "spec": {"baseModel": {}, "replicas": -1}}))
    result = CliRunner().invoke(cli, ["serve", str(bad)])
    assert result.exit_code != 0 and "spec.replicas" in result.output

    good = tmp_path / "cbd.yaml"
    good.write_text(yaml.safe_dump({
        "apiVersion": "loraplane.io/v1alpha1", "kind": "ChatbotDeployment", "metadata": {"name": "bot"},
        "spec": {"baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"},
                 "adapters": [{"name": "v1", "fineTuneJobRef": {"name": "bot", "version": "v1"}}],
                 "traffic": [{"adapter": "v1", "weight": 100}]},
    }))
    result = CliRunner().invoke(cli, ["serve", str(good), "--adapters-root", str(tmp_path / "none")])
    assert result.exit_code != 0
    assert "cannot resolve the adapters" in result.output and "adapter v1" in result.output
