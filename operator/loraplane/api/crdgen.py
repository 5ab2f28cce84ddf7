"""Generate CustomResourceDefinitions from the pydantic API types.

pydantic's JSON schema is turned into a Kubernetes *structural* schema: `$ref`s
inlined, `Optional[X]` collapsed to `X` (absence means unset), titles and other
keywords the API server rejects dropped, CEL rules kept.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .. import GROUP, VERSION
from . import KINDS

# Keywords a structural schema may carry (besides x-kubernetes-*).
_ALLOWED = {
    "type", "format", "description", "properties", "items", "additionalProperties", "required",
    "enum", "default", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
    "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "nullable", "minProperties",
    "maxProperties", "multipleOf",
}


def _resolve(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, list):
        return [_resolve(s, defs) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema["$ref"].split("/")[-1]])
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"anyOf with several non-null types is not structural: {schema}")
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        merged = {**_resolve(options[0], defs), **rest}
        return _resolve(merged, defs)
    if "allOf" in schema and len(schema["allOf"]) == 1:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return _resolve({**schema["allOf"][0], **rest}, defs)
    return {k: _resolve(v, defs) for k, v in schema.items()}


def _clean(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_clean(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _clean(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _clean(value)
        elif key == "const":
            out["enum"] = [value]
            out.setdefault("type", "string")
        elif key == "default" and value is None:
            continue
        elif key in _ALLOWED or key.startswith("x-kubernetes-"):
            out[key] = value
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
        out.pop("additionalProperties", None)
    if out.get("type") == "object" and "additionalProperties" in out and out["additionalProperties"] is False:
        out.pop("additionalProperties")
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _defaults_that_need_no_parent(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop `default` on object-typed properties: the API server would then fill whole sub-objects
    into stored objects, which pydantic already does when the operator reads them."""
    for name, sub in schema.get("properties", {}).items():
        if isinstance(sub, dict):
            if sub.get("type") in ("object", "array"):
                sub.pop("default", None)
            _defaults_that_need_no_parent(sub)
            if isinstance(sub.get("items"), dict):
                _defaults_that_need_no_parent(sub["items"])
        schema["properties"][name] = sub
    return schema


def openapi_schema(kind: type) -> dict[str, Any]:
    """The structural openAPIV3Schema of one kind."""
    raw = kind.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    resolved = _clean(_resolve(raw, defs))
    props = resolved["properties"]
    props["metadata"] = {"type": "object"}
    props["apiVersion"] = {"type": "string", "description": "APIVersion of this object."}
    props["kind"] = {"type": "string", "description": "Kind of this object."}
    resolved["required"] = ["spec"]
    _defaults_that_need_no_parent(resolved)
    return resolved


def crd(kind: type) -> dict[str, Any]:
    """The whole CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "loraplane", "app.kubernetes.io/part-of": "loraplane"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind_name,
                "listKind": f"{kind.kind_name}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": ["loraplane"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.printer_columns),
                    "schema": {"openAPIV3Schema": openapi_schema(kind)},
                }
            ],
        },
    }


def render(kind: type) -> str:
    """The CRD of one kind as YAML text, with a header saying it is generated."""
    header = (
        "# GENERATED by `make crds` (loraplane crds) from operator/loraplane/api/.\n"
        "# Do not edit: change the pydantic types and regenerate.\n"
    )
    return header + yaml.safe_dump(crd(kind), sort_keys=False, width=120)


def crd_file_name(kind: type) -> str:
    return f"{kind.plural}.{GROUP}.yaml"


def write_crds(*directories: Path) -> list[Path]:
    """Write every CRD into each directory; returns the paths written."""
    written = []
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        for kind in KINDS:
            path = directory / crd_file_name(kind)
            path.write_text(render(kind))
            written.append(path)
    return written
