"""`loraplane promote|abort|pause|resume <name>`: steer a ChatbotDeployment's canary, like kubectl argo rollouts.

The commands only set annotations on the object; the operator acts on its next pass
and clears promote/abort once done. Credentials come from the kubeconfig
(KUBECONFIG or ~/.kube/config, current context; token, basic or client-certificate auth).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import click
import kopf

from .. import API_VERSION, kube
from ..canary.rollout import ANN_ABORT, ANN_PAUSED, ANN_PROMOTE

KIND = "ChatbotDeployment"


def _connection(kubeconfig: str | None) -> kopf.ConnectionInfo:
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
    try:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    except (OSError, KeyError, kopf.LoginError) as err:
        raise click.ClickException(f"cannot read the kubeconfig: {err}") from err
    if info is None:
        raise click.ClickException("no kubeconfig found: set KUBECONFIG or pass --kubeconfig")
    return info


async def _annotate(info: kopf.ConnectionInfo, namespace: str, name: str, annotations: dict[str, Any]) -> dict:
    client = kube.KubeClient(info)
    try:
        return await client.patch_merge(API_VERSION, KIND, namespace, name, {"metadata": {"annotations": annotations}})
    finally:
        await client.close()


def _run(name: str, namespace: str | None, kubeconfig: str | None, annotations: dict[str, Any], done: str) -> None:
    info = _connection(kubeconfig)
    ns = namespace or info.default_namespace or "default"
    try:
        obj = asyncio.run(_annotate(info, ns, name, annotations))
    except kube.NotFound:
        raise click.ClickException(f"chatbotdeployment {ns}/{name} not found") from None
    except kube.ApiError as err:
        raise click.ClickException(f"the API server refused: {err}") from err
    except OSError as err:
        raise click.ClickException(f"cannot reach the API server {info.server}: {err}") from err
    status = obj.get("status") or {}
    canary = status.get("canary")
    where = f" (canary {canary} at {status.get('canaryWeight', 0)}%)" if canary else ""
    click.echo(f"chatbotdeployment {ns}/{name}: {done}{where}")


_options = [
    click.argument("name"),
    click.option("-n", "--namespace", default=None, help="Namespace (default: the kubeconfig context's)."),
    click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False), help="kubeconfig file."),
]


def _with_options(fn):
    for option in reversed(_options):
        fn = option(fn)
    return fn


@click.command()
@_with_options
def promote(name: str, namespace: str | None, kubeconfig: str | None) -> None:
    """Promote the running canary of a ChatbotDeployment now, skipping the remaining steps."""
    _run(name, namespace, kubeconfig, {ANN_PROMOTE: "true", ANN_ABORT: None}, "promotion requested")


@click.command()
@_with_options
def abort(name: str, namespace: str | None, kubeconfig: str | None) -> None:
    """Roll the running canary back now (its weight goes to 0)."""
    _run(name, namespace, kubeconfig, {ANN_ABORT: "true", ANN_PROMOTE: None}, "abort requested")


@click.command()
@_with_options
def pause(name: str, namespace: str | None, kubeconfig: str | None) -> None:
    """Hold the canary at its current step until `loraplane resume`."""
    _run(name, namespace, kubeconfig, {ANN_PAUSED: "true"}, "paused")


@click.command()
@_with_options
def resume(name: str, namespace: str | None, kubeconfig: str | None) -> None:
    """Let a paused canary carry on."""
    _run(name, namespace, kubeconfig, {ANN_PAUSED: None}, "resumed")


commands = [promote, abort, pause, resume]
