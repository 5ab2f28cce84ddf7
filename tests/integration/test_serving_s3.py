"""Adapter sync's download path against a real S3 protocol server (moto) with credentials from AWS_*."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loraplane.api.chatbotdeployment import ChatbotDeployment
from loraplane.local.resolve import local_routing_table
from loraplane.storage import filesystem, read_manifest
from loraplane_server.adapter_sync.fetch import AdapterRefused, fetch_adapter

from tests.support.adapters import publish_dir
from tests.support.operator_fixtures import s3_server  # noqa: F401  (module fixture)


def upload(local: Path, uri: str, files: list[str]) -> None:
    fs, base = filesystem(uri)
    for name in files:  # manifest.json last, as a publisher must
        fs.put(str(local / name), f"{base}/{name}")


@pytest.fixture
def published(tmp_path, s3_server) -> str:  # noqa: F811
    bucket = s3_server.make_bucket(f"adapters-{tmp_path.name.lower().replace('_', '-')[:40]}")
    src = tmp_path / "src"
    src.mkdir()
    (src / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (src / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
    publish_dir(src, job="support-bot", version="v1", base_model="m")
    uri = f"{bucket}support-bot/v1"
    upload(src, uri, ["adapter_config.json", "adapter_model.safetensors", "manifest.json"])
    return uri


def test_s3_adapter_is_downloaded_and_verified(published, tmp_path):
    fetched = fetch_adapter("v1", published, tmp_path / "local", read_manifest(published).digest)
    assert (fetched.path / "adapter_model.safetensors").read_bytes() == bytes(range(256)) * 64
    assert fetched.path.name.startswith("v1-")


def test_tampered_s3_object_is_refused(published, tmp_path):
    fs, base = filesystem(published)
    fs.pipe(f"{base}/adapter_model.safetensors", b"not the weights")
    with pytest.raises(AdapterRefused, match="adapter_model.safetensors.*the manifest"):
        fetch_adapter("v1", published, tmp_path / "local")
    assert not [p for p in (tmp_path / "local").iterdir()]  # nothing left that vLLM could load


def test_unpublished_s3_prefix_is_refused(published, tmp_path):
    fs, base = filesystem(published)
    fs.rm(f"{base}/manifest.json")
    with pytest.raises(AdapterRefused, match="not published"):
        fetch_adapter("v1", published, tmp_path / "local")


def test_serve_resolves_s3_uris(published):
    cbd = ChatbotDeployment.model_validate({
        "apiVersion": "loraplane.io/v1alpha1", "kind": "ChatbotDeployment", "metadata": {"name": "bot"},
        "spec": {"baseModel": {"name": "m"}, "adapters": [{"name": "v1", "uri": published}],
                 "traffic": [{"adapter": "v1", "weight": 100}]},
    })
    table = local_routing_table(cbd)
    assert table.variants[0].adapter_uri == published and table.variants[0].sha256 == read_manifest(published).digest
