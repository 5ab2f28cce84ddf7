"""Just enough of Helm to read the chart's rule and dashboard templates in unit tests (no Helm binary needed)."""

from __future__ import annotations

import re
from pathlib import Path

CHART = Path(__file__).resolve().parents[2] / "helm" / "loraplane"


def render(template: str) -> str:
    """Just enough of Helm for these two templates: control lines dropped, raw strings kept, values stubbed."""
    out = []
    for line in template.splitlines():
        if re.fullmatch(r"\s*\{\{-?\s*(/\*.*\*/|\$\w+ :=.*|if .*|end|with .*)\s*-?\}\}\s*", line):
            continue
        files = re.fullmatch(r'\{\{ \.Files\.Get "([^"]+)" \| indent (\d+) \}\}', line.strip())
        if files:
            out += [" " * int(files.group(2)) + f for f in (CHART / files.group(1)).read_text().splitlines()]
            continue
        line = re.sub(r"\{\{`(.*?)`\}\}|\{\{-? ?toYaml.*?\}\}|\{\{.*?\}\}",
                      lambda m: m.group(1) if m.group(1) is not None else ("" if "toYaml" in m.group(0) else "stub"),
                      line)
        out.append(line)
    return "\n".join(out)
