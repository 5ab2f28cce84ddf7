"""Operator-wide handlers: how to log in, kopf settings, the metrics endpoint."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import kopf

from .. import config, kube, metrics

log = logging.getLogger("loraplane.operator")


@kopf.on.login(retries=3)
def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """LORAPLANE_API_SERVER when set (local runs, tests), else in-cluster credentials, else kubeconfig."""
    cfg = config.current()
    if cfg.api_server:
        info = kopf.ConnectionInfo(server=cfg.api_server, insecure=True, default_namespace="default")
    else:
        info = kopf.login_with_service_account(settings=settings, **kwargs) or kopf.login_with_kubeconfig(
            settings=settings, **kwargs
        )
    if info is None:
        raise kopf.PermanentError("no Kubernetes credentials: neither in-cluster nor a kubeconfig was found")
    kube.configure(info)
    return info


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    cfg = config.current()
    # Children are recreated from the spec, so a crashed handler is retried soon, not in 60 s.
    settings.execution.max_workers = 20
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.persistence.finalizer = "loraplane.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="loraplane.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="loraplane.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port)
    log.info("LoRAPlane operator started: trainer image %s", cfg.trainer_image)


@kopf.on.cleanup()
async def close_client(**_: Any) -> None:
    with contextlib.suppress(RuntimeError):
        await kube.client().close()
