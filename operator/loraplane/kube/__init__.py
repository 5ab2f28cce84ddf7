"""A small asyncio Kubernetes client for the objects the controllers create and read.

kopf watches and patches the custom resources itself; the handlers use this client
for children (Jobs, ConfigMaps, Deployments, ...). It uses the connection kopf logged
in with (see `loraplane.handlers.operator`), so both speak to the same API server:

    from loraplane import kube
    job = await kube.client().get("batch/v1", "Job", "chatbots", "support-bot-train-1")
    await kube.client().create(manifest)             # raises kube.AlreadyExists on 409
    await kube.client().apply(manifest)              # server-side apply, field manager loraplane-operator
    await kube.client().patch_merge("v1", "ConfigMap", ns, name, {"data": {...}})
"""

from .client import (
    FIELD_MANAGER,
    AlreadyExists,
    ApiError,
    Conflict,
    KubeClient,
    NotFound,
    Unprocessable,
    client,
    configure,
    resource_path,
)

__all__ = [
    "FIELD_MANAGER",
    "AlreadyExists",
    "ApiError",
    "Conflict",
    "KubeClient",
    "NotFound",
    "Unprocessable",
    "client",
    "configure",
    "resource_path",
]
