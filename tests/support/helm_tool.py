"""Run real Helm (helm-sdkpy, in the .venv-helm tool environment: it needs Python >= 3.12) from tests.

    python tests/support/helm_tool.py lint helm/loraplane
    python tests/support/helm_tool.py install helm/loraplane '{"watchNamespaces": ["a"]}' \
        --kubeconfig kubeconfig.yaml --namespace loraplane-system --release lp

print Helm's result as JSON. helm-sdkpy has no `template` command: tests render the chart by
installing it into the API-server emulator (real Helm: values schema, templates, CRDs, ordering),
which then holds every rendered object. Tests call this as a subprocess of .venv-helm/bin/python.
"""

from __future__ import annotations

import argparse
import asyncio
import json


async def lint(chart: str, values: dict) -> dict:
    import helm_sdkpy

    config = helm_sdkpy.Configuration(namespace="loraplane-system")
    linter = helm_sdkpy.chart.Lint(config)
    try:
        result = await linter.run(chart, values=values) if values else await linter.run(chart)
    except TypeError:
        result = await linter.run(chart)
    return result if isinstance(result, dict) else {"result": result}


async def install(chart: str, values: dict, kubeconfig: str, namespace: str, release: str) -> dict:
    import helm_sdkpy

    config = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=kubeconfig, insecure_skip_tls_verify=True)
    result = await helm_sdkpy.Install(config).run(release, chart, values=values, create_namespace=True, wait=False,
                                                  disable_openapi_validation=True,
                                                  timeout=60)
    return result if isinstance(result, dict) else {"result": result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["lint", "install"])
    parser.add_argument("chart")
    parser.add_argument("values", nargs="?", default="{}")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--namespace", default="loraplane-system")
    parser.add_argument("--release", default="loraplane")
    args = parser.parse_args()
    values = json.loads(args.values)
    try:
        if args.command == "lint":
            out = asyncio.run(lint(args.chart, values))
        else:
            out = asyncio.run(install(args.chart, values, args.kubeconfig, args.namespace, args.release))
    except Exception as err:  # Helm's errors come back as exceptions: report them as data
        out = {"error": f"{type(err).__name__}: {err}"}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
