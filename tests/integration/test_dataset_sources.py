"""Datasets read from object storage over the real S3 protocol (moto's server on localhost)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import boto3
import pytest
from loraplane.api import FineTuneJobSpec
from loraplane_trainer.dataset import SourceError, open_uri, prepare

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "examples" / "data" / "support.jsonl"


def test_s3_dataset_and_validation_file(s3_server, tmp_path):
    bucket = s3_server.make_bucket("datasets")
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1")
    lines = SUPPORT.read_bytes().splitlines(keepends=True)
    s3.put_object(Bucket="datasets", Key="support/train.jsonl", Body=b"".join(lines[40:]))
    s3.put_object(Bucket="datasets", Key="support/val.jsonl.gz", Body=gzip.compress(b"".join(lines[:40])))
    spec = FineTuneJobSpec.model_validate({
        "baseModel": {"name": "m"},
        "dataset": {"uri": f"{bucket}support/train.jsonl", "validationUri": f"{bucket}support/val.jsonl.gz"},
        "output": {"uri": f"{bucket}out/"},
    })
    prepared = prepare(spec, tmp_path)
    report = prepared.report
    assert report.examples == len(lines) - 40 and report.validation == 40
    assert report.hash == hashlib.sha256(b"".join(lines[40:])).hexdigest()
    assert report.finding("leakage") is None and not report.has_errors
    assert report.dataset == "s3://datasets/support/train.jsonl"


def test_a_missing_object_is_a_clear_error(s3_server):
    bucket = s3_server.make_bucket("empty")
    with pytest.raises(SourceError, match="file not found"):
        list(open_uri(f"{bucket}nothing.jsonl"))
