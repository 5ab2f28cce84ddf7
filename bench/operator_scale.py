"""Operator scale: create N FineTuneJobs in the API-server emulator; time until every one has its Job and status.

The operator runs as its own process (`loraplane-operator --standalone`), so its peak RSS
is measured alone. Baseline in the same run: the time the emulator needs to create the
same objects with no operator. Targets: 1,000 jobs in < 60 s, < 250 MB peak RSS.

    .venv/bin/python bench/operator_scale.py [--jobs 1000]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    cluster = Cluster(validate_builtin=False)  # schema checks are the tests' job; here they would dominate
    cluster.ensure_namespace(NS)
    t0 = time.perf_counter()
    for i in range(args.jobs):
        cluster.create(ftj(i))
    baseline = time.perf_counter() - t0
    env = {**os.environ, "LORAPLANE_API_SERVER": cluster.url, "LORAPLANE_PROGRESS_INTERVAL_SECONDS": "30"}
    start = time.perf_counter()
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "loraplane-operator"), "--standalone", "-n", NS,
                             "--metrics-port", "0", "--liveness", ""],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        proc.terminate()
        proc.wait(30)
        cluster.close()
    print(f"FineTuneJobs:                          {args.jobs}")
    print(f"baseline (emulator creates them alone): {baseline:.1f} s")
    print(f"operator: all Jobs and statuses in      {elapsed:.1f} s  (target < 60 s)")
    print(f"operator: {args.jobs / elapsed:.0f} FineTuneJobs/s")
    print(f"operator peak RSS:                      {rss:.0f} MB  (target < 250 MB)")


if __name__ == "__main__":
    main()
