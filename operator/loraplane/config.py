"""Operator settings: images, ports and intervals, from the environment (the Helm chart sets them).

Every setting is an env var `LORAPLANE_<NAME>`; `loraplane-operator` flags override
the few that are per-deployment (namespaces, ports). Read once at startup with
`OperatorConfig.from_env()`; the handlers get it through `current()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from . import __version__

IMAGE_REPO = "ghcr.io/loraplane"


def _default_image(name: str) -> str:
    return f"{IMAGE_REPO}/{name}:{__version__}"


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator needs to build children and run itself."""

    trainer_image: str = field(default_factory=lambda: _default_image("trainer"))
    vllm_image: str = field(default_factory=lambda: _default_image("vllm"))
    router_image: str = field(default_factory=lambda: _default_image("router"))
    adapter_sync_image: str = field(default_factory=lambda: _default_image("adapter-sync"))
    image_pull_policy: str = "IfNotPresent"
    # Comma-separated prefixes a ChatbotDeployment's vllm.image / router.image must start with.
    allowed_image_prefixes: tuple[str, ...] = (f"{IMAGE_REPO}/", "docker.io/vllm/vllm-openai:", "vllm/vllm-openai:")
    # Comma-separated Secret names added to every pod the operator creates.
    image_pull_secrets: tuple[str, ...] = ()
    metrics_port: int = 8080
    health_port: int = 8081
    # How often a running FineTuneJob's progress.json is copied into its status.
    progress_interval_seconds: float = 30.0
    # How often FineTuneJobs with spec.schedule are checked for a due retrain.
    schedule_interval_seconds: float = 60.0
    # How long finished training Jobs stay (logs stay readable), then Kubernetes deletes them.
    job_ttl_seconds_after_finished: int = 7 * 24 * 3600
    # Size limit of the training pod's /dev/shm (dataloader workers, NCCL).
    shm_size: str = "8Gi"
    # Size limit of the model-cache emptyDir.
    cache_size: str = "100Gi"
    # An API server URL to use instead of in-cluster or kubeconfig credentials (local runs, tests).
    api_server: str | None = None
    # How often each ChatbotDeployment's rollout is looked at: canary analysis, new adapter versions.
    canary_tick_seconds: float = 15.0
    # Comma-separated namespaces whose pods may reach a router's admin port (/metrics, /pool/residency):
    # the operator's and Prometheus'. Empty: any pod (the users' port never serves these either way).
    admin_namespaces: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorConfig:
        """Settings from `LORAPLANE_*` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"LORAPLANE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.name in ("image_pull_secrets", "allowed_image_prefixes", "admin_namespaces"):
                values[f.name] = tuple(s.strip() for s in raw.split(",") if s.strip())
            elif f.type in ("int",):
                values[f.name] = int(raw)
            elif f.type in ("float",):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        return cls(**values)


_current: OperatorConfig | None = None


def current() -> OperatorConfig:
    """The configuration of the running operator (read from the environment on first use)."""
    global _current
    if _current is None:
        _current = OperatorConfig.from_env()
    return _current


def configure(config: OperatorConfig | None) -> None:
    """Replace the running configuration (startup, tests); None re-reads the environment on next use."""
    global _current
    _current = config
