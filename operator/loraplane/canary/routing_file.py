"""A `Router` for runs outside a cluster: rewrite routing.yaml, which the router reloads live."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..routing import RoutingTable, Variant, load_routing_table


class RoutingFileRouter:
    """Applies weights by rewriting a routing table file atomically (write, then rename)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    async def apply(self, weights: Mapping[str, int], retained: Sequence[str]) -> None:
        table = load_routing_table(self.path)
        write_routing_file(self.path, reweight(table, weights, retained))


def reweight(table: RoutingTable, weights: Mapping[str, int], retained: Sequence[str]) -> RoutingTable:
    """The table with new weights; variants not in `weights` get 0, `retained` ones move to `retained`."""
    known = {v.name: v for v in [*table.variants, *table.retained]}
    missing = sorted(set(weights) - set(known))
    if missing:
        raise ValueError(f"routing table has no variant {', '.join(missing)}")
    variants = [
        Variant(name=v.name, weight=weights.get(v.name, 0), adapter_uri=v.adapter_uri, sha256=v.sha256)
        for v in known.values()
        if v.name not in retained or v.name in weights
    ]
    kept = [known[name] for name in retained if name in known and name not in weights]
    return table.model_copy(update={"variants": variants, "retained": kept})


def write_routing_file(path: str | Path, table: RoutingTable) -> None:
    """Write atomically so a reader never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".routing-", suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        fh.write(RoutingTable.model_validate(table.model_dump()).to_yaml())
    os.replace(tmp, path)
