"""An EMULATOR of the Kubernetes API server, for testing the real kopf operator on localhost.

No kube-apiserver can run on the test machines, so this serves the Kubernetes REST
API from memory. It is built on `kmock` (KubernetesScaffold: HTTP server, API
discovery, Kubernetes-style error bodies) and adds the semantics our operator
relies on:

- metadata.uid, creationTimestamp, a global resourceVersion; 409 Conflict on an
  update or patch that carries a stale resourceVersion, 409 AlreadyExists on create;
- metadata.generation, bumped on changes outside metadata and status only;
- the status subresource: the main endpoint ignores status, /status changes only status;
- JSON merge patches (RFC 7386) and JSON patches (RFC 6902, with `test` preconditions);
  strategic merge patches are applied as merge patches (lists are replaced, not merged);
- server-side apply (`application/apply-patch+yaml`, `fieldManager`, `force`) with
  `managedFields` per manager, 409 conflicts unless forced, other managers' fields kept,
  lists merged by Kubernetes' list-map keys (`tests.support.server_side_apply`); every
  other write records its manager's fields too (operation Update);
- finalizers and deletionTimestamp; deletion once the last finalizer is removed;
- ownerReference cascade deletion (background propagation; `Orphan` is honoured);
- admission of our CRDs with their structural schema, defaults and CEL rules
  (`tests.support.admission`): a bad spec gets a 422 Invalid like a real API server;
- admission of built-in kinds (Jobs, ConfigMaps, Deployments, ...) against Kubernetes'
  own OpenAPI schemas with `kubernetes-validate`, for the oldest and newest Kubernetes
  versions we support (`KUBERNETES_VERSIONS`): an invalid child gets a 422 too;
- list and watch (with resourceVersion, timeoutSeconds, label selectors), namespaces
  (listable, unlike plain kmock), generateName, Events;
- TokenReview for tokens it issued (`issue_token`, `service_account_token`) and
  SubjectAccessReview decided by RBAC over the Roles, ClusterRoles and bindings it holds
  (`tests.support.rbac`), as the API server's token authenticator and RBAC authorizer answer them.

What it leaves out: authentication and authorisation of its own callers (every request is
served as an administrator's), field selectors,
strategic-merge list semantics, admission webhooks, defaulting of built-in kinds,
the controllers of kube-controller-manager (no Job controller or kubelet: tests set
a Job's status with `set_job_status`, as those would; the CRD controller is reduced to
"Established at once"), CRD transition rules (`oldSelf`), pagination, watch bookmarks,
protobuf request bodies (JSON only), and OpenAPI documents (an empty one is served,
so clients that validate against it skip to the emulator's own admission).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import secrets
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
import kubernetes_validate
import yaml

from . import server_side_apply as ssa
from .admission import admit, crd_schema
from .rbac import ResourceAttributes, allowed

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
# The oldest and the newest Kubernetes versions LoRAPlane supports: children must be valid in both.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
HISTORY = 200_000  # watch events kept for resuming watches by resourceVersion


@dataclass(frozen=True)
class ResourceType:
    """One served resource: where it lives in the REST API and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False
    crd: dict[str, Any] | None = None
    builtin_schema: bool = True  # validate with kubernetes-validate

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)


BUILTIN = [
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True),
    ResourceType("", "v1", "configmaps", "ConfigMap"),
    ResourceType("", "v1", "secrets", "Secret"),
    ResourceType("", "v1", "services", "Service", status_subresource=True),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount"),
    ResourceType("", "v1", "pods", "Pod", status_subresource=True),
    ResourceType("", "v1", "events", "Event", builtin_schema=False),
    ResourceType("events.k8s.io", "v1", "events", "Event", builtin_schema=False),
    ResourceType("batch", "v1", "jobs", "Job", status_subresource=True),
    ResourceType("apps", "v1", "deployments", "Deployment", status_subresource=True),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", status_subresource=True),
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", status_subresource=True),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
                 namespaced=False, status_subresource=True, builtin_schema=False),
    # Not part of Kubernetes: prometheus-operator and kopf CRDs, stored unvalidated.
    ResourceType("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", builtin_schema=False),
    ResourceType("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule", builtin_schema=False),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
]
# kopf's peering CRDs, as the Helm chart installs them.
PEERING_CRDS = ROOT / "helm" / "loraplane" / "crds" / "kopf-peerings.yaml"
KUBERNETES_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}


def _proto_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payloads here are < 128 bytes)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


# gnostic's openapi_v2.Document {swagger: "2.0", info: {title, version}} in protobuf wire format.
_EMPTY_OPENAPI_V2_PROTO = _proto_field(1, b"2.0") + _proto_field(
    2, _proto_field(1, b"Kubernetes") + _proto_field(2, b"v1.31.0"))


APPLY_PATCH = "application/apply-patch+yaml"


def _manager(raw: aiohttp.web.BaseRequest) -> str:
    """The field manager of a write: ?fieldManager=, else the client's name from its User-Agent (as Kubernetes)."""
    agent = raw.headers.get("User-Agent", "")
    return raw.query.get("fieldManager") or agent.split("/", 1)[0].split(" ", 1)[0] or "unknown"


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _defaults(schema: dict[str, Any], value: Any) -> Any:
    """Apply structural-schema defaults the way the API server does (to present parents only)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = _defaults(sub, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_defaults(schema["items"], v) for v in value]
    return value


_SELECTOR_RE = re.compile(r"^\s*(!?)([A-Za-z0-9./_-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def label_selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality-, set- and existence-based label selectors."""
    if not selector:
        return True
    for term in re.split(r",(?![^(]*\))", selector):
        m = _SELECTOR_RE.match(term)
        if not m:
            raise ValueError(f"unable to parse requirement: {term!r}")
        neg, key, op, value, setop, values = m.groups()
        if op in ("=", "=="):
            ok = labels.get(key) == value
        elif op == "!=":
            ok = labels.get(key) != value
        elif setop:
            options = {v.strip() for v in values.split(",")}
            ok = labels.get(key) in options if setop == "in" else labels.get(key) not in options
        else:
            ok = (key in labels) != bool(neg)
        if not ok:
            return False
    return True


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def response(self) -> aiohttp.web.Response:
        body = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "details": self.details, "code": self.code,
        }
        return aiohttp.web.json_response(body, status=self.code)


@dataclass
class _Fault:
    method: str
    plural: str
    subresource: str | None
    name: str | None
    code: int
    reason: str
    remaining: int


@dataclass
class _Watch:
    rtype: ResourceType
    namespace: str | None
    selector: str | None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)


class ApiServerEmulator(kmock.KubernetesScaffold):
    """The emulated API server: a kmock handler holding objects in memory (see the module docstring)."""

    def __init__(self, *, validate_builtin: bool = True, crd_dir: Path = CRD_DIR) -> None:
        super().__init__()
        self.validate_builtin = validate_builtin
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self.objects: dict[tuple[tuple[str, str, str], str | None, str], dict[str, Any]] = {}
        self._rv = itertools.count(1000)
        self._last_rv = 999
        self._history: dict[tuple[str, str, str], deque] = {}
        self._watches: list[_Watch] = []
        self._faults: list[_Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every resource request, for assertions
        self.tokens: dict[str, dict[str, Any]] = {}  # bearer token -> TokenReview status.user
        self.reviews: list[dict[str, Any]] = []  # every SubjectAccessReview asked, for assertions
        for rtype in BUILTIN:
            self.add_type(rtype)
        for path in sorted(crd_dir.glob("*.yaml")):
            self.add_crd(yaml.safe_load(path.read_text()))
        if PEERING_CRDS.exists():
            for crd in yaml.safe_load_all(PEERING_CRDS.read_text()):
                self.add_crd(crd)

    # ---- registry -------------------------------------------------------------------------
    def add_type(self, rtype: ResourceType) -> None:
        self.types[rtype.key] = rtype
        self._history.setdefault(rtype.key, deque(maxlen=HISTORY))
        self.resources[f"{rtype.api_version}/{rtype.plural}" if rtype.group else f"v1/{rtype.plural}"] = (
            kmock.ResourceInfo(
                kind=rtype.kind,
                singular=rtype.kind.lower(),
                namespaced=rtype.namespaced,
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
                subresources={"status"} if rtype.status_subresource else set(),
            )
        )

    def add_crd(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            self.add_type(ResourceType(
                spec["group"], version["name"], spec["names"]["plural"], spec["names"]["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                status_subresource="status" in version.get("subresources", {}),
                crd=crd, builtin_schema=False,
            ))
        # As the apiextensions controller: the CRD is served at once and reported Established.
        crd = {**crd, "status": {"acceptedNames": spec["names"], "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": _now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "lastTransitionTime": _now()},
        ]}}
        self._store_raw(self.types[("apiextensions.k8s.io", "v1", "customresourcedefinitions")], crd)

    def type_for(self, api_version: str, kind: str) -> ResourceType:
        for rtype in self.types.values():
            if rtype.api_version == api_version and rtype.kind == kind:
                return rtype
        raise KeyError(f"{api_version} {kind} is not served by the emulator")

    # ---- fault injection ------------------------------------------------------------------
    def fail_next(
        self, method: str, plural: str, *, code: int = 500, reason: str = "InternalError",
        subresource: str | None = None, name: str | None = None, times: int = 1,
    ) -> None:
        """Answer the next `times` matching requests with an error, as an overloaded or racing API server would."""
        self._faults.append(_Fault(method.upper(), plural, subresource, name, code, reason, times))

    def _take_fault(self, method: str, plural: str, subresource: str | None, name: str | None) -> _Fault | None:
        for fault in self._faults:
            if (fault.remaining > 0 and fault.method == method and fault.plural == plural
                    and fault.subresource == subresource and fault.name in (None, name)):
                fault.remaining -= 1
                return fault
        return None

    # ---- HTTP -----------------------------------------------------------------------------
    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw.path == "/version":  # kmock's scaffold reports 1.26, older than we support
            return aiohttp.web.json_response(KUBERNETES_VERSION)
        if raw.path == "/openapi/v2":
            # An empty OpenAPI document: clients that validate against it (Helm) find no schemas to apply;
            # the emulator validates built-in kinds itself on admission.
            if "protobuf" in raw.headers.get("Accept", ""):
                return aiohttp.web.Response(body=_EMPTY_OPENAPI_V2_PROTO, content_type="application/octet-stream")
            return aiohttp.web.json_response({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.31.0"},
                                              "paths": {}, "definitions": {}})
        if raw.path.startswith("/openapi/"):
            return ApiError(404, "NotFound", "the emulator serves no OpenAPI v3 documents").response()
        if raw.method == "POST" and raw.path.rstrip("/") in self._REVIEWS:
            return await self._REVIEWS[raw.path.rstrip("/")](self, raw)
        if raw.path.rstrip("/") == "/api/v1":  # kmock's scaffold names the core group version "/v1"
            return aiohttp.web.json_response(self._core_discovery())
        parsed = self._parse(raw.path)
        parts = raw.path.strip("/").split("/")
        if parsed is None and len(parts) > (4 if parts[0] == "apis" else 3):
            # A resource of a group/version nobody serves (e.g. no JobSet CRD): 404, as the API server answers.
            return ApiError(404, "NotFound", "the server could not find the requested resource").response()
        if parsed is None:
            return await super().__call__(raw)  # discovery: /api, /apis/<group>/<version>, /version
        rtype, namespace, name, subresource = parsed
        self.requests.append((raw.method, raw.path_qs))
        try:
            fault = self._take_fault(raw.method, rtype.plural, subresource, name)
            if fault:
                raise ApiError(fault.code, fault.reason, f"injected fault: {fault.reason}")
            body = await raw.read()
            params = dict(raw.query)
            if raw.method == "GET" and params.get("watch") in ("true", "1"):
                return await self._watch(raw, rtype, namespace, params)
            if raw.method == "GET":
                data = self.get(rtype, namespace, name) if name else self.list(rtype, namespace, params)
            elif raw.method == "POST" and not name:
                data = self.create(rtype, namespace, json.loads(body), manager=_manager(raw))
            elif raw.method == "PUT" and name:
                data = self.replace(rtype, namespace, name, json.loads(body), subresource, manager=_manager(raw))
            elif raw.method == "PATCH" and name and raw.content_type == APPLY_PATCH:
                if not params.get("fieldManager"):
                    raise ApiError(400, "BadRequest", "PATCH: fieldManager is required for apply requests")
                data = self.apply(rtype, namespace, name, yaml.safe_load(body), params["fieldManager"],
                                  force=params.get("force") in ("true", "1"), subresource=subresource)
            elif raw.method == "PATCH" and name:
                data = self.patch(rtype, namespace, name, json.loads(body), raw.content_type, subresource,
                                  manager=_manager(raw))
            elif raw.method == "DELETE" and name:
                options = json.loads(body) if body else {}
                data = self.delete(rtype, namespace, name, options.get("propagationPolicy") or params.get(
                    "propagationPolicy", "Background"))
            else:
                raise ApiError(405, "MethodNotAllowed", f"{raw.method} is not supported on {raw.path}")
        except ApiError as err:
            return err.response()
        except (ValueError, jsonpatch.JsonPatchException) as err:
            return ApiError(400, "BadRequest", str(err)).response()
        return aiohttp.web.json_response(data)

    # ---- authentication and authorisation reviews ------------------------------------------
    def issue_token(self, username: str, groups: list[str] | None = None, uid: str | None = None) -> str:
        """A bearer token TokenReview will accept for this user (system:authenticated is added)."""
        token = secrets.token_urlsafe(32)
        self.tokens[token] = {"username": username, "uid": uid or str(uuid.uuid4()),
                              "groups": [*(groups or []), "system:authenticated"]}
        return token

    def service_account_token(self, namespace: str, name: str) -> str:
        """A token of service account namespace/name, with the groups Kubernetes gives one."""
        return self.issue_token(f"system:serviceaccount:{namespace}:{name}",
                                ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"])

    def revoke_token(self, token: str) -> None:
        self.tokens.pop(token, None)

    async def _token_review(self, raw) -> aiohttp.web.Response:
        review = json.loads(await raw.read())
        token = (review.get("spec") or {}).get("token", "")
        user = self.tokens.get(token)
        status: dict[str, Any] = {"authenticated": user is not None}
        if user is not None:
            status["user"] = copy.deepcopy(user)
            status["audiences"] = (review.get("spec") or {}).get("audiences") or ["https://kubernetes.default.svc"]
        else:
            status["error"] = "invalid bearer token"
        return aiohttp.web.json_response({**review, "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                          "metadata": {"creationTimestamp": None}, "status": status}, status=201)

    async def _access_review(self, raw) -> aiohttp.web.Response:
        review = json.loads(await raw.read())
        spec = review.get("spec") or {}
        if "resourceAttributes" not in spec or not spec.get("user") and not spec.get("groups"):
            return ApiError(400, "BadRequest", "spec.resourceAttributes and spec.user or spec.groups are required").response()
        rbac = [o for (key, _, _), o in self.objects.items() if key[0] == "rbac.authorization.k8s.io"]
        ok, reason = allowed(rbac, spec.get("user", ""), spec.get("groups") or [],
                             ResourceAttributes.from_review(spec["resourceAttributes"]))
        self.reviews.append({"spec": copy.deepcopy(spec), "allowed": ok})
        status = {"allowed": ok, **({"reason": reason} if reason else {})}
        return aiohttp.web.json_response({**review, "apiVersion": "authorization.k8s.io/v1",
                                          "kind": "SubjectAccessReview", "metadata": {"creationTimestamp": None},
                                          "status": status}, status=201)

    _REVIEWS = {
        "/apis/authentication.k8s.io/v1/tokenreviews": _token_review,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews": _access_review,
    }

    def _core_discovery(self) -> dict[str, Any]:
        resources = []
        for rtype in self.types.values():
            if rtype.group:
                continue
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            resources.append({"name": rtype.plural, "singularName": rtype.kind.lower(), "namespaced": rtype.namespaced,
                              "kind": rtype.kind, "verbs": verbs})
            if rtype.status_subresource:
                resources.append({"name": f"{rtype.plural}/status", "singularName": "", "namespaced": rtype.namespaced,
                                  "kind": rtype.kind, "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": resources}

    def _parse(self, path: str) -> tuple[ResourceType, str | None, str | None, str | None] | None:
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        rtype = self.types.get((group, version, rest[0]))
        if rtype is None:
            return None
        name = rest[1] if len(rest) > 1 else None
        subresource = "/".join(rest[2:]) or None
        return rtype, namespace, name, subresource

    # ---- storage primitives ---------------------------------------------------------------
    def _key(self, rtype: ResourceType, namespace: str | None, name: str):
        return (rtype.key, namespace if rtype.namespaced else None, name)

    def _next_rv(self) -> str:
        self._last_rv = next(self._rv)
        return str(self._last_rv)

    def _emit(self, rtype: ResourceType, kind: str, obj: dict[str, Any]) -> None:
        event = {"type": kind, "object": copy.deepcopy(obj)}
        self._history[rtype.key].append((int(obj["metadata"]["resourceVersion"]), event))
        ns = obj["metadata"].get("namespace")
        labels = obj["metadata"].get("labels") or {}
        for w in self._watches:
            if w.rtype.key == rtype.key and w.namespace in (None, ns) and label_selector_matches(w.selector, labels):
                w.queue.put_nowait(event)

    def _store_raw(self, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = self._next_rv()
        self.objects[self._key(rtype, meta.get("namespace"), meta["name"])] = obj
        self._emit(rtype, "ADDED", obj)
        return obj

    def _existing(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.objects.get(self._key(rtype, namespace, name))
        if obj is None:
            group = f".{rtype.group}" if rtype.group else ""
            raise ApiError(404, "NotFound", f'{rtype.plural}{group} "{name}" not found',
                           {"name": name, "group": rtype.group, "kind": rtype.plural})
        return obj

    # ---- admission ------------------------------------------------------------------------
    def _admit(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        name = obj.get("metadata", {}).get("name", "")
        group = f".{rtype.group}" if rtype.group else ""
        if obj.get("apiVersion") != rtype.api_version or obj.get("kind") != rtype.kind:
            raise ApiError(400, "BadRequest", f"the object is {obj.get('apiVersion')} {obj.get('kind')}, "
                                              f"the endpoint serves {rtype.api_version} {rtype.kind}")
        causes: list[str] = []
        if rtype.crd is not None:
            schema = crd_schema(rtype.crd, rtype.version)
            _defaults(schema, obj)
            # metadata is the API server's: only the object's own fields are judged by the CRD schema.
            judged = {k: v for k, v in obj.items() if k != "metadata"}
            causes = [str(v) for v in admit(rtype.crd, {**judged, "metadata": {}})]
        elif rtype.builtin_schema and self.validate_builtin:
            clean = {k: v for k, v in obj.items() if k != "status"}
            clean["metadata"] = {k: v for k, v in obj["metadata"].items()
                                 if k not in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")}
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(clean, version, strict=True)
                except kubernetes_validate.ValidationError as err:
                    path = ".".join(str(p) for p in err.path)
                    causes.append(f"{path}: {err.message} (Kubernetes {version})")
                except kubernetes_validate.utils.SchemaNotFoundError as err:
                    causes.append(f"no schema in Kubernetes {version}: {err}")
        if causes:
            raise ApiError(422, "Invalid", f'{rtype.kind}{group} "{name}" is invalid: ' + "; ".join(causes),
                           {"name": name, "group": rtype.group, "kind": rtype.kind,
                            "causes": [{"message": c} for c in causes]})

    def schema_of(self, rtype: ResourceType) -> dict[str, Any]:
        """The schema server-side apply merges by: the CRD's, or Kubernetes' own for built-in kinds."""
        if rtype.crd is not None:
            return crd_schema(rtype.crd, rtype.version)
        return dict(ssa.builtin_schema(rtype.api_version, rtype.kind))

    @staticmethod
    def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}

    # ---- verbs ----------------------------------------------------------------------------
    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._existing(rtype, namespace, name))

    def list(self, rtype: ResourceType, namespace: str | None, params: dict[str, str] | None = None):
        selector = (params or {}).get("labelSelector")
        items = [
            copy.deepcopy(obj) for (key, ns, _), obj in self.objects.items()
            if key == rtype.key and (namespace is None or ns == namespace)
            and label_selector_matches(selector, obj["metadata"].get("labels") or {})
        ]
        return {"apiVersion": rtype.api_version, "kind": f"{rtype.kind}List",
                "metadata": {"resourceVersion": str(self._last_rv)}, "items": items}

    def create(self, rtype: ResourceType, namespace: str | None, obj: dict[str, Any], *,
               manager: str = "unknown", applied: bool = False) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        # The endpoint implies them, as for the real API server.
        obj.setdefault("apiVersion", rtype.api_version)
        obj.setdefault("kind", rtype.kind)
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise ApiError(400, "BadRequest", "the namespace of the object does not match the request")
            meta["namespace"] = namespace
            if (("", "v1", "namespaces"), None, namespace) not in self.objects:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", f"{rtype.kind}: metadata.name: Required value")
        key = self._key(rtype, namespace, meta["name"])
        if key in self.objects:
            group = f".{rtype.group}" if rtype.group else ""
            raise ApiError(409, "AlreadyExists", f'{rtype.plural}{group} "{meta["name"]}" already exists',
                           {"name": meta["name"], "group": rtype.group, "kind": rtype.plural})
        for k in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
            meta.pop(k, None)
        if rtype.status_subresource and rtype.crd is not None:
            obj.pop("status", None)  # a CRD with the status subresource ignores status on create
        meta["generation"] = 1
        if not applied:
            meta.pop("managedFields", None)
            ssa.record_update(None, obj, manager, self.schema_of(rtype))
        self._admit(rtype, obj)
        if rtype.kind == "CustomResourceDefinition":
            self.add_crd(obj)
            return copy.deepcopy(self.objects[self._key(rtype, None, meta["name"])])
        return copy.deepcopy(self._store_raw(rtype, obj))

    def _update(self, rtype: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None,
                expected_rv: str | None, manager: str | None = None) -> dict[str, Any]:
        """Store `new` in place of `old`; `manager` None: `new` carries its managedFields (an apply)."""
        meta_old = old["metadata"]
        if expected_rv and expected_rv != meta_old["resourceVersion"]:
            group = f".{rtype.group}" if rtype.group else ""
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {rtype.plural}{group} "{meta_old["name"]}": '
                           "the object has been modified; please apply your changes to the latest version and try again",
                           {"name": meta_old["name"], "group": rtype.group, "kind": rtype.plural})
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
        elif subresource:
            raise ApiError(404, "NotFound", f"subresource {subresource} is not served")
        else:
            merged = copy.deepcopy(new)
            if rtype.status_subresource:
                if "status" in old:
                    merged["status"] = copy.deepcopy(old["status"])
                else:
                    merged.pop("status", None)
            meta = merged.setdefault("metadata", {})
            # Fields the API server owns cannot be changed by a client.
            for k in ("uid", "creationTimestamp", "namespace", "name", "generation"):
                if k in meta_old:
                    meta[k] = meta_old[k]
                else:
                    meta.pop(k, None)
            if meta_old.get("deletionTimestamp"):
                meta["deletionTimestamp"] = meta_old["deletionTimestamp"]
            else:
                meta.pop("deletionTimestamp", None)
            if meta_old.get("deletionTimestamp") and len(meta.get("finalizers") or []) > len(
                    meta_old.get("finalizers") or []):
                raise ApiError(422, "Forbidden", "no new finalizers can be added if the object is being deleted")
            if self._spec_part(merged) != self._spec_part(old):
                meta["generation"] = meta_old.get("generation", 1) + 1
            if manager is not None:  # clients cannot rewrite the record of who owns what
                if "managedFields" in meta_old:
                    meta["managedFields"] = copy.deepcopy(meta_old["managedFields"])
                else:
                    meta.pop("managedFields", None)
        if merged == old:
            return copy.deepcopy(old)  # a no-op write does not bump resourceVersion, as in Kubernetes
        if manager is not None and subresource is None:
            ssa.record_update(old, merged, manager, self.schema_of(rtype))
        self._admit(rtype, merged)
        merged["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[self._key(rtype, meta_old.get("namespace"), meta_old["name"])] = merged
        if merged["metadata"].get("deletionTimestamp") and not merged["metadata"].get("finalizers"):
            self._remove(rtype, merged)
        else:
            self._emit(rtype, "MODIFIED", merged)
        return copy.deepcopy(merged)

    def replace(self, rtype: ResourceType, namespace: str | None, name: str, obj: dict[str, Any],
                subresource: str | None = None, *, manager: str = "unknown") -> dict[str, Any]:
        old = self._existing(rtype, namespace, name)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if not rv:
            raise ApiError(422, "Invalid", "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")
        return self._update(rtype, old, obj, subresource, rv, manager)

    def patch(self, rtype: ResourceType, namespace: str | None, name: str, body: Any, content_type: str,
              subresource: str | None = None, *, manager: str = "unknown") -> dict[str, Any]:
        old = self._existing(rtype, namespace, name)
        if content_type == "application/json-patch+json":
            try:
                new = jsonpatch.apply_patch(old, body)
            except jsonpatch.JsonPatchTestFailed as err:
                raise ApiError(422, "Invalid", f"the JSON patch test failed: {err}") from err
            except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPointerException) as err:
                raise ApiError(422, "Invalid", f"the JSON patch cannot be applied: {err}") from err
            expected = None
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            new = merge_patch(old, body)
            expected = (body.get("metadata") or {}).get("resourceVersion")
        else:
            raise ApiError(415, "UnsupportedMediaType", f"the emulator does not support {content_type} patches")
        return self._update(rtype, old, new, subresource, expected, manager)

    def apply(self, rtype: ResourceType, namespace: str | None, name: str, config: Any, manager: str, *,
              force: bool = False, subresource: str | None = None) -> dict[str, Any]:
        """Server-side apply: create the object, or make it hold `manager`'s configuration (see server_side_apply)."""
        if subresource:
            raise ApiError(415, "UnsupportedMediaType", "the emulator applies the main resource only")
        if not isinstance(config, dict):
            raise ApiError(400, "BadRequest", "an apply configuration must be an object")
        meta = config.get("metadata") or {}
        if meta.get("name") not in (None, name) or (rtype.namespaced and meta.get("namespace") not in (None, namespace)):
            raise ApiError(400, "BadRequest", "the name or namespace of the object does not match the request")
        if meta.get("managedFields"):
            raise ApiError(400, "BadRequest", "metadata.managedFields must be nil in an apply configuration")
        config = {**config, "metadata": {**meta, "name": name}}
        if rtype.status_subresource:
            config.pop("status", None)
        live = self.objects.get(self._key(rtype, namespace, name))
        try:
            applied = ssa.apply(copy.deepcopy(live) if live else None, config, manager, self.schema_of(rtype),
                                force=force)
        except ssa.ApplyConflict as err:
            raise ApiError(409, "Conflict", str(err), {"name": name, "group": rtype.group, "kind": rtype.plural,
                                                       "causes": [{"reason": "FieldManagerConflict", "field": f,
                                                                   "message": f'conflict with "{m}"'}
                                                                  for m, f in err.conflicts]}) from err
        if live is None:
            return self.create(rtype, namespace, applied, applied=True)
        return self._update(rtype, live, applied, None, None, manager=None)

    def delete(self, rtype: ResourceType, namespace: str | None, name: str,
               propagation: str = "Background") -> dict[str, Any]:
        obj = self._existing(rtype, namespace, name)
        meta = obj["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                obj = copy.deepcopy(obj)
                obj["metadata"]["deletionTimestamp"] = _now()
                obj["metadata"]["deletionGracePeriodSeconds"] = 0
                obj["metadata"]["resourceVersion"] = self._next_rv()
                self.objects[self._key(rtype, namespace, name)] = obj
                self._emit(rtype, "MODIFIED", obj)
            return copy.deepcopy(obj)
        self._remove(rtype, obj, orphan=propagation == "Orphan")
        return {"kind": "Status", "apiVersion": "v1", "status": "Success",
                "details": {"name": name, "kind": rtype.plural, "uid": meta["uid"]}}

    def _remove(self, rtype: ResourceType, obj: dict[str, Any], orphan: bool = False) -> None:
        meta = obj["metadata"]
        self.objects.pop(self._key(rtype, meta.get("namespace"), meta["name"]), None)
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        self._emit(rtype, "DELETED", gone)
        if not orphan:
            self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Delete dependents whose owners are all gone (the garbage collector's background propagation)."""
        live = {obj["metadata"]["uid"] for obj in self.objects.values()}
        for (rkey, ns, name), obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            orphaned = refs and not any(ref.get("uid") in live for ref in refs)
            if orphaned and (rkey, ns, name) in self.objects:  # an earlier cascade may have taken it
                self.delete(self.types[rkey], ns, name)

    # ---- watch ----------------------------------------------------------------------------
    async def _watch(self, raw, rtype: ResourceType, namespace: str | None, params: dict[str, str]):
        since = params.get("resourceVersion")
        timeout = float(params.get("timeoutSeconds") or 1800)
        selector = params.get("labelSelector")
        watch = _Watch(rtype, namespace, selector)
        backlog: list[dict] = []
        if since and since != "0":
            history = self._history[rtype.key]
            if history and int(since) < history[0][0] - 1 and len(history) == history.maxlen:
                return ApiError(410, "Expired", f"too old resource version: {since}").response()
            for rv, event in history:
                obj = event["object"]
                if (rv > int(since) and namespace in (None, obj["metadata"].get("namespace"))
                        and label_selector_matches(selector, obj["metadata"].get("labels") or {})):
                    backlog.append(event)
        else:
            listing = self.list(rtype, namespace, {"labelSelector": selector} if selector else None)
            backlog = [{"type": "ADDED", "object": o} for o in listing["items"]]
        self._watches.append(watch)
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(raw)
        try:
            for event in backlog:
                await resp.write(json.dumps(event).encode() + b"\n")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(watch.queue.get(), timeout=left)
                except TimeoutError:
                    break
                await resp.write(json.dumps(event).encode() + b"\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watches.remove(watch)
        return resp

    # ---- helpers for tests ----------------------------------------------------------------
    def find(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.list(self.type_for(api_version, kind), namespace, {"labelSelector": label_selector or ""})["items"]

    def events_for(self, namespace: str, name: str) -> Iterable[dict[str, Any]]:
        for ev in self.find("v1", "Event", namespace):
            if (ev.get("involvedObject") or {}).get("name") == name:
                yield ev
