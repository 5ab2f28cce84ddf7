"""Judge an object against one of our CRDs the way a Kubernetes API server would.

Two layers, as in kube-apiserver: the structural OpenAPI schema (types, bounds,
enums, patterns, required, unknown fields pruned/refused) checked with
`jsonschema`, then every `x-kubernetes-validations` CEL rule evaluated with a
real CEL implementation (`cel-python`). Kubernetes registers CEL libraries of
its own (lists: sum, isSorted, indexOf, min, max; ...); the ones our rules use
are registered here so a rule is judged as the API server would judge it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy
import jsonschema
from celpy import celtypes


@dataclass(frozen=True)
class Violation:
    path: str
    message: str
    rule: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.path}: " if self.path else ""
        return f"{prefix}{self.message}" + (f" (rule: {self.rule})" if self.rule else "")


def _sum(values):
    if len(values) == 0:
        return celtypes.IntType(0)
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


def _is_sorted(values):
    return celtypes.BoolType(all(values[i] <= values[i + 1] for i in range(len(values) - 1)))


def _index_of(values, item):
    for i, v in enumerate(values):
        if v == item:
            return celtypes.IntType(i)
    return celtypes.IntType(-1)


def _last_index_of(values, item):
    for i in range(len(values) - 1, -1, -1):
        if values[i] == item:
            return celtypes.IntType(i)
    return celtypes.IntType(-1)


K8S_CEL_FUNCTIONS = {
    "sum": _sum,
    "isSorted": _is_sorted,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "min": lambda values: min(values),
    "max": lambda values: max(values),
}

_ENV = celpy.Environment()


@lru_cache(maxsize=512)
def _program(rule: str):
    return _ENV.program(_ENV.compile(rule), functions=K8S_CEL_FUNCTIONS)


def evaluate_rule(rule: str, value: Any, old_value: Any = None) -> bool:
    """Evaluate one CEL rule with `self` (and `oldSelf` on updates) bound; errors count as failures."""
    activation = {"self": celpy.json_to_cel(value)}
    if old_value is not None:
        activation["oldSelf"] = celpy.json_to_cel(old_value)
    result = _program(rule).evaluate(activation)
    if isinstance(result, celpy.CELEvalError):
        raise ValueError(f"CEL rule {rule!r} failed to evaluate: {result}")
    return bool(result)


def cel_violations(schema: dict[str, Any], value: Any, path: str = "") -> list[Violation]:
    """Every CEL rule in the schema that the value breaks, innermost first."""
    out: list[Violation] = []
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                out += cel_violations(sub, value[name], f"{path}.{name}" if path else name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out += cel_violations(schema["items"], item, f"{path}[{i}]")
    for v in schema.get("x-kubernetes-validations", []):
        try:
            ok = evaluate_rule(v["rule"], value)
        except ValueError as err:
            ok, message = False, str(err)
        else:
            message = v.get("message", f"failed rule: {v['rule']}")
        if not ok:
            out.append(Violation(path, message, v["rule"]))
    return out


def _to_jsonschema(schema: Any) -> Any:
    """OpenAPI v3 structural schema -> JSON Schema: unknown fields are refused unless preserved."""
    if isinstance(schema, list):
        return [_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _to_jsonschema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("nullable"):
        out["type"] = [schema["type"], "null"]
        out.pop("nullable")
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schema(crd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    for v in crd["spec"]["versions"]:
        if version is None or v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(version)


def schema_violations(schema: dict[str, Any], obj: dict[str, Any]) -> list[Violation]:
    validator = jsonschema.Draft7Validator(_to_jsonschema(schema))
    out = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in err.absolute_path).replace(".[", "[")
        out.append(Violation(path, err.message))
    return out


def admit(crd: dict[str, Any], obj: dict[str, Any]) -> list[Violation]:
    """Everything the API server would refuse in obj; empty when it would be admitted."""
    schema = crd_schema(crd)
    problems = schema_violations(schema, obj)
    if problems:
        return problems
    return cel_violations(schema, obj)
