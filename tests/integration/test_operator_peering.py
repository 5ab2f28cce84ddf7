"""Two `loraplane-operator` replicas: kopf peering lets only the higher-priority one act; the other takes over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NS = "peers"
API = "loraplane.io/v1alpha1"


def ftj(name: str) -> dict:
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())
    obj["metadata"] = {"name": name, "namespace": NS}
    obj["spec"].pop("schedule")
    obj["spec"]["output"] = {"uri": "memory://adapters/"}
    obj["spec"]["resources"] = {"gpus": 1}
    return obj


def paused(log: str) -> bool:
    return log.rfind("Resuming operations") < log.rfind("Pausing operations") or "Resuming operations" not in log


def start_operator(cluster, priority: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "LORAPLANE_API_SERVER": cluster.url}
    return subprocess.Popen(
        [sys.executable, "-m", "loraplane.operator_main", "-n", NS, "--peering", "loraplane",
         "--priority", str(priority), "--metrics-port", "0", "--liveness", ""],
        env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )


def test_only_one_replica_acts_and_the_other_takes_over(cluster, tmp_path):
    cluster.ensure_namespace(NS)
    cluster.create({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "loraplane", "namespace": NS}})
    leader_log, standby_log = tmp_path / "leader.log", tmp_path / "standby.log"
    leader = start_operator(cluster, 100, leader_log)
    standby = start_operator(cluster, 10, standby_log)
    try:
        cluster.wait_for(lambda: len(cluster.get("kopf.dev/v1", "KopfPeering", NS, "loraplane").get("status") or {}) == 2,
                         60, "both replicas to register in the KopfPeering")
        # A replica starts paused; the standby may resume for a moment before it sees the leader.
        cluster.wait_for(lambda: paused(standby_log.read_text()), 30, "the standby to stand by")
        cluster.create(ftj("peer-1"))
        cluster.wait_for(lambda: (cluster.get(API, "FineTuneJob", NS, "peer-1").get("status") or {}).get("jobName"),
                         30, "the leader to reconcile")
        assert "created Job peer-1-train-1" in leader_log.read_text()
        assert "created Job" not in standby_log.read_text()

        leader.terminate()
        leader.wait(30)
        cluster.wait_for(lambda: not paused(standby_log.read_text()), 60, "the standby to take over")
        cluster.create(ftj("peer-2"))
        cluster.wait_for(lambda: (cluster.get(API, "FineTuneJob", NS, "peer-2").get("status") or {}).get("jobName"),
                         30, "the new leader to reconcile")
        assert len(cluster.list("batch/v1", "Job", NS)) == 2
    finally:
        for proc in (leader, standby):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
