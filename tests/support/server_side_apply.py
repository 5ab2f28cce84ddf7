"""Server-side apply for the API-server EMULATOR: field ownership as the real API server tracks it.

Kubernetes records in `metadata.managedFields` which manager set which field
(`fieldsV1`, e.g. `{"f:spec": {"f:replicas": {}}}`). This module does the same:

- an apply (`application/apply-patch+yaml`) by manager M makes the object hold M's
  configuration: fields M set before and left out now are removed, unless another
  manager owns them too; fields of other managers are kept;
- a field that another manager owns and M sets to a different value is a conflict:
  409 unless the request forces, which moves the field to M;
- any other write (create, update, merge or JSON patch) moves the fields it changed
  to its manager (operation Update), without conflicts;
- lists are merged by the keys Kubernetes' own schemas declare
  (`x-kubernetes-list-type: map` + `x-kubernetes-list-map-keys`: containers and env
  by name, container ports by containerPort+protocol, ...) and `set` lists by value;
  every other list is atomic, replaced whole.

Schemas come from kubernetes-validate's copy of Kubernetes' OpenAPI definitions; a
custom resource uses its CRD's structural schema. What is left out: defaulting before
key comparison (a port without `protocol` keys differently from one with TCP), apply of
the status subresource, managedFields time-based squashing, and `x-kubernetes-map-type:
atomic` maps.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate

SCHEMA_VERSION = "1.37.0"
Path_ = tuple[str, ...]
# Parts of metadata the API server owns: never tracked as a manager's fields.
_SERVER_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink", "generateName"}


class ApplyConflict(Exception):
    """Fields another manager owns would change: [(manager, ".spec.replicas"), ...]."""

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        self.conflicts = conflicts
        listed = "\n".join(f'- conflict with "{m}": {f}' for m, f in conflicts)
        super().__init__(f"Apply failed with {len(conflicts)} conflict{'s' * (len(conflicts) != 1)}:\n{listed}")


# ---------------------------------------------------------------- schemas


@functools.cache
def _definitions() -> dict[str, Any]:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{SCHEMA_VERSION}-local"
    return json.loads((root / "_definitions.json").read_text())["$defs"]


@functools.cache
def _kind_index() -> dict[tuple[str, str], str]:
    out = {}
    for name, schema in _definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            out[(api_version, gvk["kind"])] = name
    return out


def _resolve(schema: Mapping[str, Any] | None) -> Mapping[str, Any]:
    while schema and "$ref" in schema:
        schema = _definitions()[schema["$ref"].rsplit("/", 1)[-1]]
    if schema and "allOf" in schema and len(schema["allOf"]) == 1:
        return _resolve({**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}})
    return schema or {}


def builtin_schema(api_version: str, kind: str) -> Mapping[str, Any]:
    """The OpenAPI schema of a built-in kind ({} when unknown: every list atomic, every map a map)."""
    name = _kind_index().get((api_version, kind))
    return _definitions()[name] if name else {}


def _child(schema: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    schema = _resolve(schema)
    props = schema.get("properties") or {}
    if key in props:
        return _resolve(props[key])
    extra = schema.get("additionalProperties")
    return _resolve(extra) if isinstance(extra, Mapping) else {}


def _items(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    return _resolve(_resolve(schema).get("items"))


def _list_keys(schema: Mapping[str, Any]) -> list[str] | str | None:
    """The map keys of a list (list-type map), "set" for a set, None for an atomic list."""
    schema = _resolve(schema)
    kind = schema.get("x-kubernetes-list-type")
    if kind == "map":
        return list(schema.get("x-kubernetes-list-map-keys") or [])
    return "set" if kind == "set" else None


def _with_metadata(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """A CRD's schema says little of metadata: use ObjectMeta's (ownerReferences by uid, finalizers a set)."""
    schema = _resolve(schema)
    props = dict(schema.get("properties") or {})
    props["metadata"] = _definitions()["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
    return {**schema, "properties": props}


# ---------------------------------------------------------------- field sets


def _item_key(item: Any, keys: list[str]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys if isinstance(item, Mapping) and k in item},
                             separators=(",", ":"), sort_keys=True)


def _value_key(value: Any) -> str:
    return "v:" + json.dumps(value, separators=(",", ":"), sort_keys=True)


def field_paths(value: Any, schema: Mapping[str, Any], prefix: Path_ = ()) -> set[Path_]:
    """Every field `value` sets, as paths of fieldsV1 keys (leaves, and "." for each list-map item)."""
    out: set[Path_] = set()
    if isinstance(value, Mapping) and value:
        for key, sub in value.items():
            if not prefix and key in ("apiVersion", "kind", "status"):
                continue
            if prefix == ("f:metadata",) and key in _SERVER_META:
                continue
            out |= field_paths(sub, _child(schema, key), (*prefix, f"f:{key}"))
        return out
    keys = _list_keys(schema) if isinstance(value, list) else None
    if isinstance(keys, list) and keys:
        for item in value:
            path = (*prefix, _item_key(item, keys))
            out.add((*path, "."))
            out |= field_paths(item, _items(schema), path)
        return out
    if keys == "set":
        return {(*prefix, _value_key(v)) for v in value}
    return {prefix} if prefix else set()


def to_fields_v1(paths: Iterable[Path_]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
    return tree


def from_fields_v1(tree: Mapping[str, Any], prefix: Path_ = ()) -> set[Path_]:
    out: set[Path_] = set()
    for part, sub in tree.items():
        path = (*prefix, part)
        if sub:
            out |= from_fields_v1(sub, path)
        else:
            out.add(path)
    return out


def _format(path: Path_) -> str:
    """.spec.template.spec.containers[name="vllm"].image, as the API server names a conflict."""
    text = ""
    for part in path:
        if part.startswith("f:"):
            text += "." + part[2:]
        elif part.startswith("k:"):
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(part[2:]).items()) + "]"
        elif part.startswith("v:"):
            text += f"[{part[2:]}]"
    return text


# ---------------------------------------------------------------- reading and changing objects by path


def _find(container: Any, part: str) -> tuple[Any, Any]:
    """(key or index, value) of one path part in `container`; (None, None) when absent."""
    if part.startswith("f:"):
        key = part[2:]
        if isinstance(container, Mapping) and key in container:
            return key, container[key]
    elif part.startswith(("k:", "v:")) and isinstance(container, list):
        wanted = json.loads(part[2:])
        for i, item in enumerate(container):
            if part.startswith("v:") and item == wanted:
                return i, item
            if part.startswith("k:") and isinstance(item, Mapping) and all(item.get(k) == v for k, v in wanted.items()):
                return i, item
    return None, None


_MISSING = object()


def value_at(obj: Any, path: Path_) -> Any:
    node = obj
    for part in path:
        if part == ".":
            return node
        key, node = _find(node, part)
        if key is None:
            return _MISSING
    return node


def _remove(obj: Any, path: Path_) -> None:
    if path and path[-1] == ".":
        path = path[:-1]
    node = obj
    for part in path[:-1]:
        key, node = _find(node, part)
        if key is None:
            return
    key, _ = _find(node, path[-1])
    if key is not None:
        del node[key]


def merge_config(live: Any, config: Any, schema: Mapping[str, Any]) -> Any:
    """`live` with `config` applied: maps by key, list-maps by their keys, sets by value, anything else replaced."""
    if isinstance(config, Mapping) and isinstance(live, Mapping):
        out = copy.deepcopy(dict(live))
        for key, value in config.items():
            out[key] = merge_config(live.get(key), value, _child(schema, key)) if key in live else copy.deepcopy(value)
        return out
    keys = _list_keys(schema) if isinstance(config, list) and isinstance(live, list) else None
    if isinstance(keys, list) and keys:
        out = [copy.deepcopy(i) for i in live]
        for item in config:
            index, found = _find(out, _item_key(item, keys))
            if index is None:
                out.append(copy.deepcopy(item))
            else:
                out[index] = merge_config(found, item, _items(schema))
        return out
    if keys == "set":
        return [*copy.deepcopy(live), *(copy.deepcopy(v) for v in config if v not in live)]
    return copy.deepcopy(config)


# ---------------------------------------------------------------- managed fields


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _entries(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(e) for e in (obj.get("metadata") or {}).get("managedFields") or []]


def _owned(entry: Mapping[str, Any]) -> set[Path_]:
    return from_fields_v1(entry.get("fieldsV1") or {})


def _set_entry(entries: list[dict[str, Any]], manager: str, operation: str, api_version: str,
               paths: set[Path_]) -> list[dict[str, Any]]:
    """Replace (or drop, when it owns nothing) the entry of (manager, operation)."""
    out, previous = [], None
    for e in entries:
        if e.get("manager") == manager and e.get("operation") == operation:
            previous = e
        else:
            out.append(e)
    if paths:
        same = previous is not None and _owned(previous) == paths
        out.append({"manager": manager, "operation": operation, "apiVersion": api_version,
                    "time": previous["time"] if same else _now(), "fieldsType": "FieldsV1",
                    "fieldsV1": to_fields_v1(paths)})
    return out


def _strip(entries: list[dict[str, Any]], paths: set[Path_], keep: tuple[str, str]) -> list[dict[str, Any]]:
    """Take `paths` (and everything under them) away from every entry but `keep`."""
    out = []
    for e in entries:
        if (e.get("manager"), e.get("operation")) == keep:
            out.append(e)
            continue
        owned = {p for p in _owned(e) if not any(p[: len(q)] == q for q in paths)}
        if owned:
            out.append({**e, "fieldsV1": to_fields_v1(owned)})
    return out


def record_update(old: Mapping[str, Any] | None, new: dict[str, Any], manager: str,
                  schema: Mapping[str, Any]) -> None:
    """A non-apply write: the fields it changed now belong to `manager` (operation Update)."""
    schema = _with_metadata(schema)
    entries = _entries(old) if old else []
    before = field_paths(old, schema) if old else set()
    after = field_paths(new, schema)
    changed = {p for p in after if p not in before or value_at(old, p) != value_at(new, p)}
    entries = _strip(entries, changed, (manager, "Update"))
    mine = next((_owned(e) for e in entries if (e.get("manager"), e.get("operation")) == (manager, "Update")), set())
    entries = _set_entry(entries, manager, "Update", new.get("apiVersion", ""), (mine | changed) & after)
    # Fields the write removed are owned by nobody any more.
    entries = [{**e, "fieldsV1": to_fields_v1(_owned(e) & after)} for e in entries if _owned(e) & after]
    new.setdefault("metadata", {})["managedFields"] = entries


def apply(live: dict[str, Any] | None, config: Mapping[str, Any], manager: str, schema: Mapping[str, Any],
          *, force: bool) -> dict[str, Any]:
    """The object after `manager` applies `config` (raises ApplyConflict unless forced)."""
    schema = _with_metadata(schema)
    config = copy.deepcopy(dict(config))
    config.get("metadata", {}).pop("managedFields", None)
    wanted = field_paths(config, schema)
    if live is None:
        obj = config
        obj.setdefault("metadata", {})["managedFields"] = _set_entry([], manager, "Apply", config.get("apiVersion", ""),
                                                                     wanted)
        return obj
    entries = _entries(live)
    me = (manager, "Apply")
    conflicts = []
    for e in entries:
        if (e.get("manager"), e.get("operation")) == me:
            continue
        for path in sorted(_owned(e) & wanted):
            if path[-1] != "." and value_at(live, path) != value_at(config, path):
                conflicts.append((e.get("manager", ""), path))
    if conflicts and not force:
        raise ApplyConflict([(m, _format(p)) for m, p in conflicts])
    entries = _strip(entries, {p for _, p in conflicts}, me)
    before = next((_owned(e) for e in entries if (e.get("manager"), e.get("operation")) == me), set())
    others = set().union(*(_owned(e) for e in entries if (e.get("manager"), e.get("operation")) != me))
    obj = merge_config(live, config, schema)
    # What this manager set before and leaves out now goes, unless someone else owns it (or something in it).
    # Whole list items first (their key fields find them), then single fields.
    for path in sorted(before - wanted, key=lambda p: (p[-1] != ".", len(p))):
        item = path[:-1] if path[-1] == "." else path
        if not any(o[: len(item)] == item for o in others):
            _remove(obj, path)
    obj.setdefault("metadata", {})["managedFields"] = _set_entry(entries, manager, "Apply",
                                                                 config.get("apiVersion", ""), wanted)
    return obj
