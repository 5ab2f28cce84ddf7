"""Run real Helm (helm-sdkpy, in the .venv-helm tool environment: it needs Python >= 3.12) from tests.

    python tests/support/helm_tool.py lint helm/loraplane '{"watchNamespaces": ["a"]}'

prints Helm's lint result as JSON. Tests call it as a subprocess of .venv-helm/bin/python.
"""

from __future__ import annotations

import asyncio
import json
import sys


async def lint(chart: str, values: dict) -> dict:
    import helm_sdkpy

    config = helm_sdkpy.Configuration(namespace="loraplane-system")
    linter = helm_sdkpy.chart.Lint(config)
    try:
        result = await linter.run(chart, values=values) if values else await linter.run(chart)
    except TypeError:
        result = await linter.run(chart)
    return result if isinstance(result, dict) else {"result": result}


def main() -> None:
    command, chart = sys.argv[1], sys.argv[2]
    values = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    if command != "lint":
        raise SystemExit(f"unknown command {command}")
    try:
        out = asyncio.run(lint(chart, values))
    except Exception as err:  # Helm's errors come back as exceptions: report them as data
        out = {"error": f"{type(err).__name__}: {err}"}
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
