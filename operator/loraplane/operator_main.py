"""`loraplane-operator`: run the LoRAPlane controllers (kopf) in a cluster or against a kubeconfig.

    loraplane-operator                          # cluster-wide
    loraplane-operator -n team-a -n team-b      # only these namespaces
    loraplane-operator --standalone             # no peering (a single replica, local runs)

Several replicas may run: kopf peering (a KopfPeering / ClusterKopfPeering object
named by --peering, created by the Helm chart) lets only the highest-priority one
act; the others wait and take over when it stops.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import click
import kopf

from . import config


@click.command(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "LORAPLANE"})
@click.option(
    "-n", "--namespace", "namespaces", multiple=True,
    help="Namespace to watch (repeatable; glob patterns allowed). None: the whole cluster.",
)
@click.option("--peering", "peering_name", default="loraplane", show_default=True, help="kopf peering object name.")
@click.option("--priority", type=int, default=None, help="Peering priority of this replica (default: random).")
@click.option("--standalone", is_flag=True, help="Do not use peering: act alone.")
@click.option(
    "--liveness", "liveness_endpoint", default="http://0.0.0.0:8081/healthz", show_default=True,
    help="Liveness endpoint (kopf probes); empty to disable.",
)
@click.option("--metrics-port", type=int, default=None, help="Prometheus /metrics port (default from config: 8080).")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(
    namespaces: tuple[str, ...],
    peering_name: str,
    priority: int | None,
    standalone: bool,
    liveness_endpoint: str,
    metrics_port: int | None,
    verbose: bool,
) -> None:
    """Run the LoRAPlane operator (FineTuneJob and ChatbotDeployment controllers)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cfg = config.OperatorConfig.from_env()
    if metrics_port is not None:
        cfg = dataclasses.replace(cfg, metrics_port=metrics_port)
    config.configure(cfg)

    from . import handlers  # noqa: F401  (registers the handlers with kopf's default registry)

    kopf.run(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        standalone=standalone,
        peering_name=None if standalone else peering_name,
        priority=priority if priority is not None else int.from_bytes(os.urandom(2), "big"),
        liveness_endpoint=liveness_endpoint or None,
    )


if __name__ == "__main__":
    main()
