"""A ModelPool and the ChatbotDeployments on it, read from files and turned into the pool's routing tables.

What the operator does in a cluster, without one: each chatbot on the pool gets
its own routing table (its served name, namespace, fair share, the digests of
its API keys) in one tables directory, which the router and adapter sync read
as they do a mounted pool ConfigMap. Files may also hold the Secrets a chatbot's
`auth.apiKeySecretRef` names. A ChatbotDeployment without `poolRef` is served by
a private pool of its own, as in a cluster.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from ..api.chatbotdeployment import ChatbotDeployment
from ..api.modelpool import ModelPool
from ..api.states import NamespacesFrom
from ..pool_routing import table_file
from ..routing import RoutingTable
from .resolve import local_routing_table

DEFAULT_NAMESPACE = "default"


class PoolInputError(ValueError):
    """Files that do not describe a servable pool; the message names the file and the object."""


@dataclass
class Sourced:
    """An object read from a file, with where it came from (for errors)."""

    obj: BaseModel | dict
    file: Path

    @property
    def where(self) -> str:
        meta = self.obj.metadata if isinstance(self.obj, BaseModel) else None
        name = meta.name if meta else self.obj.get("metadata", {}).get("name", "?")
        return f"{self.file}: {type(self.obj).__name__ if meta else 'Secret'} {name}"


@dataclass
class PoolInputs:
    """What `loraplane serve` was given: at most one ModelPool, the chatbots, and Secrets for their keys."""

    pool: Sourced | None = None
    chatbots: list[Sourced] = field(default_factory=list)
    secrets: dict[tuple[str, str], dict] = field(default_factory=dict)  # (namespace, name) -> Secret


def _validated(kind: type[BaseModel], doc: dict, file: Path) -> BaseModel:
    try:
        return kind.model_validate(doc)
    except ValidationError as exc:
        name = doc.get("metadata", {}).get("name", "?")
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise PoolInputError(f"{file}: invalid {kind.__name__} {name}:\n" + "\n".join(lines)) from exc


def load_pool_inputs(files: Sequence[Path]) -> PoolInputs:
    """Every ModelPool, ChatbotDeployment and Secret document of the files; errors name file and field."""
    inputs = PoolInputs()
    for file in files:
        try:
            docs = [d for d in yaml.safe_load_all(Path(file).read_text()) if d]
        except yaml.YAMLError as exc:
            raise PoolInputError(f"{file}: not valid YAML: {exc}") from exc
        for doc in docs:
            kind = doc.get("kind") if isinstance(doc, dict) else None
            if kind == "ModelPool":
                if inputs.pool is not None:
                    raise PoolInputError(f"{file}: a second ModelPool; `loraplane serve` serves one pool "
                                         f"(the first is in {inputs.pool.file})")
                inputs.pool = Sourced(_validated(ModelPool, doc, file), file)
            elif kind == "ChatbotDeployment":
                inputs.chatbots.append(Sourced(_validated(ChatbotDeployment, doc, file), file))
            elif kind == "Secret":
                meta = doc.get("metadata", {})
                inputs.secrets[(meta.get("namespace") or DEFAULT_NAMESPACE, meta.get("name", ""))] = doc
    if not inputs.chatbots:
        raise PoolInputError(f"no ChatbotDeployment in {', '.join(map(str, files))}")
    return inputs


def _namespace(obj: ModelPool | ChatbotDeployment) -> str:
    return obj.metadata.namespace or DEFAULT_NAMESPACE


def secret_values(secret: dict, key: str | None) -> list[str]:
    """The values of a Secret document (`data` base64, `stringData` plain); one key's when `key` is set."""
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    values |= dict(secret.get("stringData") or {})
    if key is not None:
        if key not in values:
            raise PoolInputError(f"Secret {secret.get('metadata', {}).get('name')} has no key {key!r}")
        return [values[key].strip()]
    return [v.strip() for v in values.values() if v.strip()]


def _key_digests(cbd: ChatbotDeployment, inputs: PoolInputs, where: str) -> list[str]:
    ref = cbd.spec.auth.api_key_secret_ref
    if ref is None:
        return []
    secret = inputs.secrets.get((_namespace(cbd), ref.name))
    if secret is None:
        raise PoolInputError(f"{where}: spec.auth.apiKeySecretRef names Secret {ref.name} in namespace "
                             f"{_namespace(cbd)}; give a file holding it")
    try:
        return sorted(hashlib.sha256(v.encode()).hexdigest() for v in secret_values(secret, ref.key))
    except PoolInputError as exc:
        raise PoolInputError(f"{where}: {exc}") from exc


def _admitted(pool: ModelPool, namespace: str) -> bool:
    allowed = pool.spec.allowed_namespaces
    if allowed.from_ == NamespacesFrom.ALL:
        return True
    if allowed.from_ == NamespacesFrom.SAME:
        return namespace == _namespace(pool)
    # Selector: a local run has no Namespace objects to match; every namespace is taken as labelled.
    return True


def pool_tables(inputs: PoolInputs, adapters_root: str) -> list[RoutingTable]:
    """One routing table per chatbot of the pool; raises PoolInputError (or ResolveError) saying which and why.

    Without a ModelPool there must be one ChatbotDeployment, without poolRef: its private pool.
    Served names must be unique: the first chatbot in file order keeps a contested name.
    """
    pool = inputs.pool.obj if inputs.pool else None
    tables: list[RoutingTable] = []
    claimed: dict[str, str] = {}
    for src in inputs.chatbots:
        cbd: ChatbotDeployment = src.obj  # type: ignore[assignment]
        ref, ns = cbd.spec.pool_ref, _namespace(cbd)
        if pool is None:
            if ref is not None or len(inputs.chatbots) > 1:
                raise PoolInputError(f"{src.where}: spec.poolRef names ModelPool {ref.name}: give its file too"
                                     if ref else "several ChatbotDeployments need the ModelPool they share")
            spec = cbd.spec
            base = None
        else:
            if ref is None or ref.name != pool.metadata.name or (ref.namespace or ns) != _namespace(pool):
                raise PoolInputError(f"{src.where}: spec.poolRef must name ModelPool {_namespace(pool)}/"
                                     f"{pool.metadata.name} (the pool being served)")
            if not _admitted(pool, ns):
                raise PoolInputError(f"{src.where}: namespace {ns} is not allowed by the pool's "
                                     f"spec.allowedNamespaces (from: {pool.spec.allowed_namespaces.from_})")
            spec = cbd.spec.model_copy(update={"base_model": pool.spec.base_model, "pool_ref": None,
                                               "resources": pool.spec.resources})
            base = pool.spec.base_model.name or f"{pool.metadata.name}-base"
        served = cbd.spec.served_name or cbd.metadata.name
        if served in claimed:
            raise PoolInputError(f"{src.where}: served name {served!r} is taken by {claimed[served]} "
                                 f"(NameConflict: the older claim keeps it)")
        claimed[served] = src.where
        table = local_routing_table(cbd.model_copy(update={"spec": spec}), adapters_root)
        update = {"model": served, "namespace": ns, "chatbot": cbd.metadata.name, "share": cbd.spec.priority,
                  "api_key_sha256": _key_digests(cbd, inputs, src.where)}
        if base:
            update["base_model"] = base
        tables.append(RoutingTable.model_validate({**table.model_dump(), **update}))
    return tables


def write_pool_tables(directory: Path, tables: Sequence[RoutingTable]) -> None:
    """The tables directory the router and adapter sync read (one file per chatbot), written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    for table in tables:
        target = directory / table_file(table.namespace, table.chatbot_name)
        tmp = directory / f".{target.name}.tmp"
        tmp.write_text(table.to_yaml())
        tmp.replace(target)
