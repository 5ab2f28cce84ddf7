"""Operator scale in the API-server emulator: FineTuneJobs, then ModelPools shared by ChatbotDeployments.

1. N FineTuneJobs: time until every one has its Job and status.
2. P ModelPools with C ChatbotDeployments spread over them: time until every chatbot is
   Accepted with its table in its pool's routing ConfigMap and every pool's status counts them.

The operator runs as its own process (`loraplane-operator --standalone`) per scenario, so its
peak RSS is measured alone. Baselines in the same run: the time the emulator needs to create
the same objects with no operator, and the FineTuneJob scenario for the pool one (time and RSS
as ratios). Targets: 1,000 jobs in < 60 s, < 250 MB peak RSS; 10 pools with 500 chatbots converge.

    .venv/bin/python bench/operator_scale.py [--jobs 1000] [--pools 10] [--chatbots 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.operator_fixtures import Cluster  # noqa: E402

NS = "bench"
POOL_NS = "bench-pools"
API = "loraplane.io/v1alpha1"


def ftj(i: int) -> dict:
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())
    obj["metadata"] = {"name": f"job-{i:05d}", "namespace": NS}
    obj["spec"].pop("schedule")
    obj["spec"]["output"] = {"uri": "memory://adapters/"}
    return obj


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pool(i: int) -> dict:
    return {"apiVersion": API, "kind": "ModelPool", "metadata": {"name": f"pool-{i:02d}", "namespace": POOL_NS},
            "spec": {"baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"}, "vllm": {"maxLoras": 8}}}


def pooled_chatbot(i: int, pools: int) -> dict:
    return {"apiVersion": API, "kind": "ChatbotDeployment",
            "metadata": {"name": f"bot-{i:04d}", "namespace": POOL_NS},
            "spec": {"poolRef": {"name": f"pool-{i % pools:02d}"},
                     "adapters": [{"name": "v1", "uri": f"memory://adapters/bot-{i:04d}/v1/"}]}}


def stop(proc: subprocess.Popen) -> None:
    """Stop the operator; one with hundreds of daemons to cancel may take long on a busy machine."""
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


def start_operator(cluster: Cluster, namespace: str) -> subprocess.Popen:
    env = {**os.environ, "LORAPLANE_API_SERVER": cluster.url, "LORAPLANE_PROGRESS_INTERVAL_SECONDS": "30"}
    return subprocess.Popen([str(ROOT / ".venv" / "bin" / "loraplane-operator"), "--standalone", "-n", namespace,
                             "--metrics-port", "0", "--liveness", ""],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pools_scenario(cluster: Cluster, pools: int, chatbots: int) -> tuple[float, float, float]:
    """(emulator-alone creation s, operator convergence s, operator peak RSS MB) for pools shared by chatbots."""
    cluster.ensure_namespace(POOL_NS)
    t0 = time.perf_counter()
    for i in range(pools):
        cluster.create(pool(i))
    for i in range(chatbots):
        cluster.create(pooled_chatbot(i, pools))
    baseline = time.perf_counter() - t0
    start = time.perf_counter()
    proc = start_operator(cluster, POOL_NS)
    try:
        while True:
            try:
                keys = sum(len(cm.get("data") or {}) for cm in cluster.list("v1", "ConfigMap", POOL_NS)
                           if cm["metadata"]["name"].endswith("-routing"))
                counted = sum((p.get("status") or {}).get("attachedChatbots") or 0
                              for p in cluster.list(API, "ModelPool", POOL_NS))
            except TimeoutError:  # the emulator busy answering the operator: ask again
                continue
            if keys >= chatbots and counted >= chatbots:
                break
            if time.perf_counter() - start > 900:
                print(f"gave up after 900 s: {keys} tables, {counted} chatbots counted by their pools")
                break
            time.sleep(1)
        elapsed = time.perf_counter() - start
        rss = peak_rss_mb(proc.pid)
    finally:
        stop(proc)
    return baseline, elapsed, rss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--pools", type=int, default=10)
    parser.add_argument("--chatbots", type=int, default=500)
    args = parser.parse_args()
    cluster = Cluster(validate_builtin=False)  # schema checks are the tests' job; here they would dominate
    cluster.ensure_namespace(NS)
    t0 = time.perf_counter()
    for i in range(args.jobs):
        cluster.create(ftj(i))
    baseline = time.perf_counter() - t0
    start = time.perf_counter()
    proc = start_operator(cluster, NS)
    try:
        while True:
            jobs = len(cluster.list("batch/v1", "Job", NS))
            items = cluster.list("loraplane.io/v1alpha1", "FineTuneJob", NS)
            with_status = sum(1 for o in items if (o.get("status") or {}).get("jobName"))
            if jobs >= args.jobs and with_status >= args.jobs:
                break
            if time.perf_counter() - start > 600:
                print(f"gave up after 600 s: {jobs} Jobs, {with_status} statuses")
                break
            time.sleep(1)
        elapsed = time.perf_counter() - start
        rss = peak_rss_mb(proc.pid)
    finally:
        stop(proc)
    print(f"FineTuneJobs:                          {args.jobs}")
    print(f"baseline (emulator creates them alone): {baseline:.1f} s")
    print(f"operator: all Jobs and statuses in      {elapsed:.1f} s  (target < 60 s)")
    print(f"operator: {args.jobs / elapsed:.0f} FineTuneJobs/s")
    print(f"operator peak RSS:                      {rss:.0f} MB  (target < 250 MB)", flush=True)
    try:
        pool_baseline, pool_elapsed, pool_rss = pools_scenario(cluster, args.pools, args.chatbots)
    finally:
        cluster.close()
    print()
    print(f"ModelPools / ChatbotDeployments:       {args.pools} / {args.chatbots}")
    print(f"baseline (emulator creates them alone): {pool_baseline:.1f} s")
    print(f"operator: every chatbot accepted, in its pool's routing and counted, in {pool_elapsed:.1f} s "
          f"({pool_elapsed / max(pool_baseline, 1e-9):.1f}x its creation baseline; "
          f"{pool_elapsed / max(elapsed, 1e-9):.2f}x the FineTuneJob run)")
    print(f"operator: {args.chatbots / pool_elapsed:.0f} chatbots/s")
    print(f"operator peak RSS:                      {pool_rss:.0f} MB  ({pool_rss / rss:.2f}x the FineTuneJob run)")


if __name__ == "__main__":
    main()
