"""The whole FineTuneJob path: real operator, emulated API server and kubelet, the real trainer on SmolLM2, S3.

`kubectl apply` (the emulator) -> the operator's training Job -> the trainer runs its command (as a local
process, `tests.support.kubelet`) against moto's S3 -> the operator copies progress and the published
adapter into status.
"""

from __future__ import annotations

import base64
import os
import threading

from loraplane.storage import read_manifest

from tests.support.trainer_facts import facts_job, write_facts

NS = "e2e"
API = "loraplane.io/v1alpha1"


def test_finetunejob_trains_and_publishes_through_the_operator(cluster, s3_server, smollm2_dir, tmp_path, repo_root):
    from tests.support.kubelet import run_job

    cluster.ensure_namespace(NS)
    output = s3_server.make_bucket("e2e-adapters")
    data = s3_server.make_bucket("e2e-data")
    facts = write_facts(tmp_path / "facts.jsonl")
    from loraplane.storage import filesystem

    fs, path = filesystem(f"{data}facts.jsonl")
    fs.put(str(facts), path)
    cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": NS},
                    "data": {k: base64.b64encode(v.encode()).decode() for k, v in s3_server.env().items()}})
    obj = facts_job(facts, output, name="facts-bot", training={"maxSteps": 4})
    obj["metadata"] = {"name": "facts-bot", "namespace": NS}
    obj["spec"]["dataset"]["uri"] = f"{data}facts.jsonl"
    obj["spec"]["output"]["credentialsSecretRef"] = {"name": "s3"}
    obj["spec"]["evaluation"].update(maxExamples=2, maxNewTokens=8)

    phases: list[str] = []
    with cluster.operator(NS):
        cluster.create(obj)
        cluster.wait_for(lambda: cluster.get_or_none("batch/v1", "Job", NS, "facts-bot-train-1"), 30, "the Job")
        result = {}
        kubelet = threading.Thread(target=lambda: result.update(proc=run_job(
            cluster, NS, "facts-bot-train-1", tmp_path / "pod",
            # The pod's model cache, kept warm across runs like a node's image and PVC cache.
            volume_dirs={"cache": repo_root / ".cache"},
            extra_env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                       "PATH": os.environ.get("PATH", "/usr/bin:/bin")})))
        kubelet.start()
        while kubelet.is_alive():
            phase = (cluster.get(API, "FineTuneJob", NS, "facts-bot").get("status") or {}).get("phase")
            if phase and (not phases or phases[-1] != phase):
                phases.append(phase)
            kubelet.join(0.2)
        proc = result["proc"]
        (tmp_path / "trainer.log").write_text(proc.stderr)
        assert proc.returncode == 0, proc.stderr[-4000:]
        status = cluster.wait_for(
            lambda: (s := cluster.get(API, "FineTuneJob", NS, "facts-bot")["status"]).get("phase") == "Succeeded" and s,
            30, "Succeeded")
    assert "Training" in phases or "Evaluating" in phases, phases
    adapter = status["adapter"]
    assert adapter["version"] == "v1" and adapter["verdict"] == "accepted"
    manifest = read_manifest(adapter["uri"])
    assert adapter["sha256"] == manifest.digest
    assert status["dataset"]["train"] == 24 and status["dataset"]["validation"] == 6
    assert status["metrics"]["evalLoss"] > 0 and "perplexityAfter" in status["metrics"]
    assert status["attempts"] == 1 and status["startTime"] and status["completionTime"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
