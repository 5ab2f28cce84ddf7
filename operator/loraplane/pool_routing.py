"""A pool's routing: one routing table per chatbot served by one vLLM pool.

The operator writes one ConfigMap per pool with one key per attached, accepted
chatbot (`<namespace>.<chatbot>.yaml`, each a `RoutingTable`). The router and
adapter sync mount it as a directory and reload it live. A ChatbotDeployment
without `poolRef` is served by a private pool with one table: one code path.

Each file is validated on its own: one chatbot's broken table is refused (its
last good version stays) without touching the others. Served names must be
unique on a pool; the operator settles conflicts (the older claim wins), and a
reader that still meets two tables claiming one name keeps the one it already
serves, or the first by file name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .routing import ROUTING_FILE, RoutingTable, Variant, load_routing_table

TABLE_SUFFIX = ".yaml"


def table_file(namespace: str, chatbot: str) -> str:
    """The ConfigMap key (and file name) of one chatbot's table: `<namespace>.<chatbot>.yaml`."""
    return f"{namespace}.{chatbot}{TABLE_SUFFIX}"


@dataclass(frozen=True)
class PoolAdapter:
    """One adapter the pool must be able to serve, with the chatbot it belongs to."""

    table: RoutingTable
    variant: Variant

    @property
    def lora_name(self) -> str:
        return self.table.lora_name(self.variant)


@dataclass(frozen=True)
class PoolRouting:
    """Every chatbot table in force on a pool, by file, plus the files refused and why."""

    tables: Mapping[str, RoutingTable] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    # Files that served their name before this load: they keep it against a newcomer.
    incumbents: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        by_name: dict[str, RoutingTable] = {}
        for _file, table in sorted(self.tables.items(), key=lambda kv: (kv[0] not in self.incumbents, kv[0])):
            by_name.setdefault(table.model, table)
        object.__setattr__(self, "_by_served_name", by_name)

    @property
    def empty(self) -> bool:
        return not self.tables

    def by_served_name(self, name: str) -> RoutingTable | None:
        """The chatbot table serving public model `name`, if any (exact match only)."""
        return self._by_served_name.get(name)  # type: ignore[attr-defined]

    def served(self) -> list[RoutingTable]:
        """The tables that win their served name (one per name)."""
        return list(self._by_served_name.values())  # type: ignore[attr-defined]

    def shadowed(self) -> list[str]:
        """Files whose served name another table already holds."""
        winners = {id(t) for t in self.served()}
        return sorted(f for f, t in self.tables.items() if id(t) not in winners)

    def adapters(self) -> list[PoolAdapter]:
        """Every adapter some served chatbot routes to or retains."""
        return [PoolAdapter(t, v) for t in self.served() for v in t.adapters()]

    @property
    def only(self) -> RoutingTable | None:
        """The single table of a private pool (None when there are zero or several)."""
        served = self.served()
        return served[0] if len(served) == 1 else None


def table_files(path: Path) -> list[Path]:
    """The table files a pool path holds: the file itself, or every `*.yaml` in the directory.

    A mounted ConfigMap directory also holds `..data` and `..<timestamp>` entries: hidden, skipped.
    """
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix == TABLE_SUFFIX and not p.name.startswith("."))


def load_pool_routing(path: str | Path, previous: PoolRouting | None = None) -> PoolRouting:
    """Read a pool's tables from a directory (or one routing.yaml); a bad file keeps its last good table."""
    root = Path(path)
    tables: dict[str, RoutingTable] = {}
    errors: dict[str, str] = {}
    for file in table_files(root):
        try:
            tables[file.name] = load_routing_table(file)
        except Exception as exc:  # pydantic ValidationError, YAML, OSError: all mean "refuse this file"
            errors[file.name] = _one_line(exc)
            if previous is not None and file.name in previous.tables:
                tables[file.name] = previous.tables[file.name]
    incumbents = frozenset(f for f, t in previous.tables.items() if t in previous.served()) if previous else frozenset()
    return PoolRouting(tables, errors, incumbents)


def pool_files(tables: Iterable[RoutingTable]) -> dict[str, str]:
    """ConfigMap data for a pool: one YAML file per chatbot table."""
    return {table_file(t.namespace, t.chatbot_name): t.to_yaml() for t in tables}


def _one_line(exc: Exception) -> str:
    return " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())


__all__ = [
    "ROUTING_FILE", "PoolAdapter", "PoolRouting", "load_pool_routing", "pool_files", "table_file", "table_files",
]
