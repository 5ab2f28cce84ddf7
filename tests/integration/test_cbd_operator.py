"""The REAL operator (kopf) runs ChatbotDeployments against the API-server emulator.

Router figures come from a real HTTP /metrics endpoint (a prometheus_client registry
with the router's metric names) standing in for the router; FineTuneJob versions are
published the way the trainer publishes them (manifest + progress.json, then the Job
completes), and the FineTuneJob controller turns them into status.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from loraplane.cli import cli
from loraplane.storage import AdapterManifest, FileEntry, RunLayout, RunProgress, VersionLayout
from prometheus_client import REGISTRY

from tests.support.canary_metrics import RouterMetrics

NS = "cbd"
API = "loraplane.io/v1alpha1"
CBD = "ChatbotDeployment"
ROOT = Path(__file__).resolve().parents[2]


def write_adapter(prefix: Path, version: str, job: str = "manual", verdict: str = "accepted",
                  reason: str | None = None) -> str:
    """A published adapter directory: files first, manifest.json last (as the trainer publishes)."""
    prefix.mkdir(parents=True, exist_ok=True)
    config = json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 32, "target_modules": ["q_proj"]}).encode()
    (prefix / "adapter_config.json").write_bytes(config)
    manifest = AdapterManifest(
        job=job, version=version, verdict=verdict, reason=reason, base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        lora_rank=8, created_at=datetime.now(UTC),
        files=[FileEntry(path="adapter_config.json", sha256=hashlib.sha256(config).hexdigest(), size=len(config))],
    )
    (prefix / "manifest.json").write_text(manifest.to_json())
    return f"file://{prefix}/"


def chatbot(name: str, **spec) -> dict:
    return {
        "apiVersion": API, "kind": CBD, "metadata": {"name": name, "namespace": NS},
        "spec": {"baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"}, **spec},
    }


def status(cluster, name: str) -> dict:
    return cluster.get(API, CBD, NS, name).get("status") or {}


def routing(cluster, name: str) -> dict:
    cm = cluster.get("v1", "ConfigMap", NS, f"{name}-routing")
    return yaml.safe_load(cm["data"][f"{NS}.{name}.yaml"])


def table_weights(cluster, name: str) -> dict[str, int]:
    return {v["name"]: v["weight"] for v in routing(cluster, name)["variants"]}


def set_ready(cluster, name: str, ready: int = 1) -> None:
    cluster.patch("apps/v1", "Deployment", NS, f"{name}-vllm", {"status": {"readyReplicas": ready,
                                                                          "replicas": ready}},
                  subresource="status")


class Traffic:
    """Feeds the stand-in router's metrics in the background, as live traffic would."""

    def __init__(self, metrics: RouterMetrics):
        self.metrics = metrics
        self.plan: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seed = 0
        while not self._stop.is_set():
            for variant, how in list(self.plan.items()):
                seed += 1
                self.metrics.serve(variant, how.get("n", 10), latency=how.get("latency", 0.2),
                                   error_rate=how.get("error_rate", 0.0), feedback=how.get("feedback"), seed=seed)
            time.sleep(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def metrics():
    m = RouterMetrics("placeholder", namespace=NS)
    m.start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def operator(cluster, metrics):
    cluster.ensure_namespace(NS)
    with cluster.operator(NS, canary_tick_seconds=0.3, progress_interval_seconds=0.3) as runner:
        yield runner


# ---------------------------------------------------------------- FineTuneJob publishing


def make_ftj(cluster, name: str, output: Path) -> dict:
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())
    obj["metadata"] = {"name": name, "namespace": NS}
    obj["spec"]["output"] = {"uri": f"file://{output}/"}
    obj["spec"].pop("schedule", None)
    return cluster.create(obj)


def publish_version(cluster, name: str, output: Path, version: str, generation: int) -> None:
    """Do what a training run does: publish the adapter, write progress.json, finish the Job."""
    ftj = cluster.get(API, "FineTuneJob", NS, name)
    if ftj["metadata"]["generation"] != generation:
        spec = {"training": {"epochs": ftj["spec"]["training"]["epochs"] + 1}}
        ftj = cluster.patch(API, "FineTuneJob", NS, name, {"spec": spec})
    assert ftj["metadata"]["generation"] == generation
    job = f"{name}-train-{generation}"
    cluster.wait_for(lambda: cluster.get_or_none("batch/v1", "Job", NS, job), message=f"Job {job}")
    out = f"file://{output}/"
    layout = VersionLayout(out, name, version)
    uri = write_adapter(Path(layout.prefix.removeprefix("file://")), version, job=name)
    run = f"{ftj['metadata']['uid']}-{generation}"
    progress = Path(RunLayout(out, name, run).progress.removeprefix("file://"))
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.write_text(RunProgress(phase="Succeeded", run_id=run, adapter={
        "version": version, "uri": uri, "verdict": "accepted"}).to_json())
    cluster.set_job_status(NS, job, succeeded=1, condition="Complete")
    cluster.wait_for(
        lambda: (cluster.get(API, "FineTuneJob", NS, name).get("status") or {}).get("adapter", {}).get("version")
        == version, timeout=90, message=f"FineTuneJob {name} reporting {version}")


# ---------------------------------------------------------------- tests


def test_apply_creates_children_and_routes_static_weights(cluster, operator, tmp_path):
    v2 = write_adapter(tmp_path / "v2", "v2")
    v3 = write_adapter(tmp_path / "v3", "v3")
    bad = write_adapter(tmp_path / "v9", "v9", verdict="rejected", reason="perplexity 31 > 20")
    cluster.create(chatbot(
        "static",
        adapters=[{"name": "v2", "uri": v2}, {"name": "v3", "uri": v3}, {"name": "v9", "uri": bad}],
        traffic=[{"adapter": "v2", "weight": 80}, {"adapter": "v3", "weight": 10}, {"adapter": "v9", "weight": 10}],
    ))
    for api_version, kind, name in [("apps/v1", "Deployment", "static-vllm"), ("apps/v1", "Deployment", "static-router"),
                                    ("v1", "Service", "static-vllm"), ("v1", "Service", "static-router"),
                                    ("v1", "ConfigMap", "static-routing"), ("v1", "Secret", "static-keys"),
                                    ("networking.k8s.io/v1", "NetworkPolicy", "static-vllm"),
                                    ("networking.k8s.io/v1", "NetworkPolicy", "static-router"),
                                    ("policy/v1", "PodDisruptionBudget", "static-vllm")]:
        child = cluster.wait_for(lambda a=api_version, k=kind, n=name: cluster.get_or_none(a, k, NS, n),
                                 message=f"{kind} {name}")
        assert child["metadata"]["ownerReferences"][0]["kind"] == CBD
    # The keys are generated once: later passes never rotate them.
    keys = cluster.get("v1", "Secret", NS, "static-keys")["data"]
    # Counters an alert reads exist at 0 from the first reconcile, so the first rollback alerts.
    assert REGISTRY.get_sample_value("loraplane_chatbotdeployment_rollouts_total",
                                     {"namespace": NS, "name": "static", "result": "rolledBack"}) == 0.0
    # One vLLM pool for every adapter: two Deployments in all (vLLM and router).
    assert len(cluster.list("apps/v1", "Deployment", NS, "loraplane.io/chatbotdeployment=static")) == 2
    # The rejected adapter is never routed to: its share goes to the largest servable variant.
    assert table_weights(cluster, "static") == {"v2": 90, "v3": 10}
    st = cluster.wait_for(lambda: status(cluster, "static").get("phase") == "Degraded" and status(cluster, "static"))
    assert "rejected: perplexity 31 > 20" in st["message"]
    cluster.wait_for(lambda: any(e.get("reason") == "Degraded" and e.get("type") == "Warning"
                                 for e in cluster.events(NS, "static")), message="Degraded event")
    assert st["endpoint"] == "http://static-router.cbd.svc:8000/v1"

    # Drop the rejected adapter; the pool becomes ready: Healthy.
    cluster.patch(API, CBD, NS, "static", {"spec": {
        "adapters": [{"name": "v2", "uri": v2}, {"name": "v3", "uri": v3}],
        "traffic": [{"adapter": "v2", "weight": 70}, {"adapter": "v3", "weight": 30}]}})
    set_ready(cluster, "static")
    st = cluster.wait_for(lambda: status(cluster, "static").get("phase") == "Healthy" and status(cluster, "static"))
    assert st["weights"] == {"v2": 70, "v3": 30} and st["readyReplicas"] == 1
    assert table_weights(cluster, "static") == {"v2": 70, "v3": 30}
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert cluster.get("v1", "Secret", NS, "static-keys")["data"] == keys


def test_new_finetunejob_version_is_canaried_and_promoted_on_good_figures(cluster, operator, metrics, tmp_path):
    publish_version_output = tmp_path / "out"
    make_ftj(cluster, "promo-ftj", publish_version_output)
    publish_version(cluster, "promo-ftj", publish_version_output, "v1", 1)
    metrics.model = "promo"
    cluster.create({**chatbot(
        "promo",
        adapters=[{"name": "support", "fineTuneJobRef": {"name": "promo-ftj"}}],
        rollout={"autoCanary": True, "steps": [20, 50, 100], "interval": "1s", "minRequests": 20,
                 "promotionGracePeriod": "1h",
                 "analysis": {"maxErrorRate": 0.05, "maxLatencyIncrease": 0.5}},
    ), "metadata": {"name": "promo", "namespace": NS, "annotations": {"loraplane.io/metrics-url": metrics.url}}})
    cluster.wait_for(lambda: status(cluster, "promo").get("stable") == "support-v1", message="stable support-v1")
    set_ready(cluster, "promo")
    cluster.wait_for(lambda: status(cluster, "promo").get("phase") == "Healthy", message="Healthy")
    assert table_weights(cluster, "promo") == {"support-v1": 100}

    publish_version(cluster, "promo-ftj", publish_version_output, "v2", 2)
    st = cluster.wait_for(lambda: status(cluster, "promo").get("canary") == "support-v2" and status(cluster, "promo"),
                          message="canary support-v2")
    assert st["phase"] == "Canary" and st["canaryWeight"] == 20 and st["step"] == 0
    assert table_weights(cluster, "promo") == {"support-v1": 80, "support-v2": 20}

    with Traffic(metrics) as traffic:
        traffic.plan = {"support-v1": {"n": 20}, "support-v2": {"n": 10}}
        st = cluster.wait_for(lambda: status(cluster, "promo").get("stable") == "support-v2" and status(cluster, "promo"),
                              timeout=60, message="promotion")
    assert st.get("canary") is None and st["phase"] == "Healthy"
    assert st["weights"] == {"support-v2": 100}
    assert [r["name"] for r in st["retiring"]] == ["support-v1"]
    table = routing(cluster, "promo")
    assert {v["name"]: v["weight"] for v in table["variants"]} == {"support-v2": 100}
    assert [v["name"] for v in table["retained"]] == ["support-v1"]  # old stable kept loaded for its grace period
    assert any(c["type"] == "CanaryAnalysis" and c["status"] == "True" for c in st["conditions"])
    reasons = [e.get("reason") for e in cluster.events(NS, "promo")]
    assert "CanaryStarted" in reasons and "CanaryAdvanced" in reasons and "CanaryPromoted" in reasons


def test_errors_on_the_canary_roll_it_back_within_one_interval(cluster, operator, metrics, tmp_path):
    out = tmp_path / "out"
    make_ftj(cluster, "bad-ftj", out)
    publish_version(cluster, "bad-ftj", out, "v1", 1)
    metrics.model = "bad"
    cluster.create({**chatbot(
        "bad",
        adapters=[{"name": "support", "fineTuneJobRef": {"name": "bad-ftj"}}],
        rollout={"autoCanary": True, "steps": [10, 50], "interval": "10m", "minRequests": 20,
                 "analysis": {"maxErrorRate": 0.05}},
    ), "metadata": {"name": "bad", "namespace": NS, "annotations": {"loraplane.io/metrics-url": metrics.url}}})
    cluster.wait_for(lambda: status(cluster, "bad").get("stable") == "support-v1", message="stable")
    publish_version(cluster, "bad-ftj", out, "v2", 2)
    cluster.wait_for(lambda: status(cluster, "bad").get("canary") == "support-v2", message="canary")
    with Traffic(metrics) as traffic:
        traffic.plan = {"support-v1": {"n": 20}, "support-v2": {"n": 10, "error_rate": 0.5}}
        # The interval is 10 minutes: a rollback within seconds shows it does not wait for the step's end.
        st = cluster.wait_for(lambda: status(cluster, "bad").get("phase") == "RolledBack" and status(cluster, "bad"),
                              timeout=30, message="rollback")
    assert st["canary"] == "support-v2" and st["canaryWeight"] == 0 and st["step"] == 0
    assert st["weights"] == {"support-v1": 100, "support-v2": 0}
    assert table_weights(cluster, "bad") == {"support-v1": 100, "support-v2": 0}
    cond = next(c for c in st["conditions"] if c["type"] == "CanaryAnalysis")
    assert cond["status"] == "False" and cond["reason"] == "RolledBack"
    assert "errorRate 0.5 above by 0.45" in cond["message"]
    failed = [a for a in st["analysis"] if a.get("passed") is False]
    assert failed[0]["metric"] == "errorRate" and failed[0]["limit"] == 0.05
    warnings = [e for e in cluster.events(NS, "bad") if e.get("reason") == "CanaryRolledBack"]
    assert warnings and warnings[0]["type"] == "Warning"
    # A rolled-back version is not canaried again; the next one is.
    time.sleep(1)
    assert status(cluster, "bad")["phase"] == "RolledBack"


def kubeconfig(cluster, path: Path) -> str:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": cluster.url}}],
        "users": [{"name": "tester", "user": {"token": "unused"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester", "namespace": NS}}],
    }))
    return str(path)


def test_pause_promote_and_abort_from_the_command_line(cluster, operator, metrics, tmp_path):
    uris = {v: write_adapter(tmp_path / v, v) for v in ("v1", "v2", "v3")}
    config = kubeconfig(cluster, tmp_path / "kubeconfig")
    run = CliRunner()
    metrics.model = "manual"
    cluster.create({**chatbot(
        "manual", adapters=[{"name": "v1", "uri": uris["v1"]}],
        rollout={"steps": [10, 50], "interval": "1s", "minRequests": 20, "analysis": {"maxErrorRate": 0.05}},
    ), "metadata": {"name": "manual", "namespace": NS, "annotations": {"loraplane.io/metrics-url": metrics.url}}})
    cluster.wait_for(lambda: status(cluster, "manual").get("stable") == "v1", message="stable v1")

    # Without spec.traffic the last adapter listed is the target: adding v2 canaries it.
    result = run.invoke(cli, ["pause", "manual", "--kubeconfig", config])
    assert result.exit_code == 0, result.output
    cluster.patch(API, CBD, NS, "manual", {"spec": {"adapters": [{"name": "v1", "uri": uris["v1"]},
                                                                 {"name": "v2", "uri": uris["v2"]}]}})
    cluster.wait_for(lambda: status(cluster, "manual").get("canary") == "v2", message="canary v2")
    with Traffic(metrics) as traffic:
        traffic.plan = {"v1": {"n": 20}, "v2": {"n": 10, "error_rate": 0.5}}
        cluster.wait_for(lambda: "paused" in status(cluster, "manual").get("message", ""), message="paused")
        time.sleep(1.5)  # several more ticks, every one of them with failing figures: paused means held
        st = status(cluster, "manual")
        assert st["phase"] == "Canary" and st["canaryWeight"] == 10 and "paused" in st["message"]
        result = run.invoke(cli, ["promote", "manual", "--kubeconfig", config])
        assert result.exit_code == 0 and "promotion requested" in result.output
        st = cluster.wait_for(lambda: status(cluster, "manual").get("stable") == "v2" and status(cluster, "manual"),
                              message="manual promotion")
    assert st.get("canary") is None and st["weights"] == {"v2": 100}
    annotations = cluster.get(API, CBD, NS, "manual")["metadata"].get("annotations") or {}
    assert "loraplane.io/promote" not in annotations  # consumed
    assert run.invoke(cli, ["resume", "manual", "--kubeconfig", config]).exit_code == 0

    cluster.patch(API, CBD, NS, "manual", {"spec": {"adapters": [{"name": "v2", "uri": uris["v2"]},
                                                                 {"name": "v3", "uri": uris["v3"]}]}})
    cluster.wait_for(lambda: status(cluster, "manual").get("canary") == "v3", message="canary v3")
    result = run.invoke(cli, ["abort", "manual", "--kubeconfig", config])
    assert result.exit_code == 0, result.output
    st = cluster.wait_for(lambda: status(cluster, "manual").get("phase") == "RolledBack" and status(cluster, "manual"),
                          message="abort")
    assert st["canaryWeight"] == 0 and "aborted" in st["message"]
    assert table_weights(cluster, "manual") == {"v2": 100, "v3": 0}

    missing = run.invoke(cli, ["promote", "nope", "--kubeconfig", config])
    assert missing.exit_code != 0 and "cbd/nope not found" in missing.output


def test_deleting_the_chatbot_deletes_its_children(cluster, operator, tmp_path):
    v1 = write_adapter(tmp_path / "v1", "v1")
    cluster.create(chatbot("doomed", adapters=[{"name": "v1", "uri": v1}]))
    cluster.wait_for(lambda: cluster.get_or_none("v1", "ConfigMap", NS, "doomed-routing"), message="children")
    cluster.delete(API, CBD, NS, "doomed")
    cluster.wait_for(lambda: cluster.get_or_none(API, CBD, NS, "doomed") is None, message="object gone")
    cluster.wait_for(lambda: not cluster.list("apps/v1", "Deployment", NS, "loraplane.io/chatbotdeployment=doomed")
                     and cluster.get_or_none("v1", "ConfigMap", NS, "doomed-routing") is None, message="children gone")


def test_a_failing_reconcile_step_lands_in_status(cluster, operator, tmp_path):
    v1 = write_adapter(tmp_path / "v1", "v1")
    cluster.create(chatbot("badimage", adapters=[{"name": "v1", "uri": v1}],
                           vllm={"image": "registry.example/not-allowed/vllm:1"}))
    st = cluster.wait_for(lambda: any(c["type"] == "Ready" and c.get("reason") == "ReconcileFailed"
                                      for c in status(cluster, "badimage").get("conditions", []))
                          and status(cluster, "badimage"), message="ReconcileFailed in status")
    assert "spec.vllm.image 'registry.example/not-allowed/vllm:1' is not allowed" in st["message"]
    stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    # Fixing the spec clears it on the next pass.
    cluster.patch(API, CBD, NS, "badimage", {"spec": {"vllm": {"image": None}}})
    cluster.wait_for(lambda: next(c for c in status(cluster, "badimage")["conditions"]
                                  if c["type"] == "Ready").get("reason") != "ReconcileFailed",
                     message="ReconcileFailed cleared")
