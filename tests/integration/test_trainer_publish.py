"""Atomic publishing against a real S3-protocol server (moto): retries, verification, manifest last."""

from __future__ import annotations

import json

import pytest
from loraplane.storage import read_manifest, verify_files
from loraplane.storage.publish import PublishError, find_published, publish_adapter, published_versions
from loraplane.storage.uris import filesystem


class FlakyFS:
    """Wraps a real filesystem; the first `failures` uploads raise, as a dropped connection would."""

    def __init__(self, fs, failures: int, corrupt: bool = False):
        self.fs, self.failures, self.corrupt, self.puts = fs, failures, corrupt, []

    def put_file(self, lpath, rpath, **kw):
        self.puts.append(rpath)
        if self.failures > 0:
            self.failures -= 1
            if self.corrupt:  # the object lands, but with the wrong bytes: verification must catch it
                return self.fs.pipe_file(rpath, b"garbage")
            raise ConnectionError("injected: connection reset by peer")
        return self.fs.put_file(lpath, rpath, **kw)

    def __getattr__(self, name):
        return getattr(self.fs, name)


@pytest.fixture
def adapter_dir(tmp_path):
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (d / "adapter_model.safetensors").write_bytes(b"\x00" * 4096)
    (d / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    return d


def publish(adapter_dir, out, run_id, fs=None, retries=2):
    return publish_adapter(adapter_dir, out, "bot", run_id=run_id, verdict="accepted", base_model="m",
                           retries=retries, backoff=0.01, fs=fs, metrics={"evalLoss": 1.0})


def test_publish_retries_verifies_and_writes_the_manifest_last(s3_server, adapter_dir):
    out = s3_server.make_bucket("pub-retry")
    fs = FlakyFS(filesystem(out)[0], failures=2)
    adapter = publish(adapter_dir, out, "run-1", fs=fs)
    assert adapter.version == "v1"
    manifest = read_manifest(adapter.uri)
    assert [f.path for f in manifest.files] == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    verify_files(adapter.uri, manifest)
    assert len(fs.puts) == 3 + 2  # two injected failures retried
    assert manifest.digest == adapter.sha256 and manifest.run_id == "run-1"


def test_corrupted_upload_is_caught_by_read_back(s3_server, adapter_dir):
    out = s3_server.make_bucket("pub-corrupt")
    adapter = publish(adapter_dir, out, "run-1", fs=FlakyFS(filesystem(out)[0], failures=1, corrupt=True))
    verify_files(adapter.uri, read_manifest(adapter.uri))


def test_failed_publish_leaves_nothing_published_and_a_retry_completes(s3_server, adapter_dir):
    out = s3_server.make_bucket("pub-fail")
    with pytest.raises(PublishError, match="nothing was published: ConnectionError: injected"):
        publish(adapter_dir, out, "run-1", fs=FlakyFS(filesystem(out)[0], failures=100), retries=2)
    fs, base = filesystem(out)
    assert not fs.exists(f"{base}/bot/v1/manifest.json")
    assert not fs.exists(f"{base}/bot/v1/README.md")  # uploaded files are removed again
    assert published_versions(out, "bot") == []
    # a leftover directory without a manifest (a publisher killed mid-upload) is reused, not skipped
    fs.pipe_file(f"{base}/bot/v1/stale.bin", b"half")
    adapter = publish(adapter_dir, out, "run-1")
    assert adapter.version == "v1"
    assert not fs.exists(f"{base}/bot/v1/stale.bin")
    verify_files(adapter.uri, read_manifest(adapter.uri))


def test_publish_is_idempotent_per_run_and_versions_increase(s3_server, adapter_dir):
    out = s3_server.make_bucket("pub-idem")
    first = publish(adapter_dir, out, "run-1")
    again = publish(adapter_dir, out, "run-1")
    assert again.version == first.version == "v1"
    second = publish(adapter_dir, out, "run-2")
    assert second.version == "v2"
    assert find_published(out, "bot", "run-2").version == "v2"
    assert [a.version for a in published_versions(out, "bot")] == ["v1", "v2"]
