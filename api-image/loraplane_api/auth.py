"""Who may do what: Kubernetes tokens checked with TokenReview, every call authorised with SubjectAccessReview.

The caller's namespace is the `OpenAI-Project` header (the SDK's `project=`), else the namespace of a
service-account token. Each call is one SubjectAccessReview on `finetunejobs.loraplane.io` in that
namespace: reading files and jobs needs get/list, uploading a file or creating a job needs create,
cancelling needs patch, deleting a file needs delete. So whoever may `kubectl create` FineTuneJobs in a
namespace may use the API there, and nobody else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from loraplane.kube import ApiError as KubeApiError
from loraplane.kube import KubeClient

from .errors import Forbidden, InvalidRequest, ServerError, Unauthenticated

NAMESPACE_HEADER = "OpenAI-Project"
GROUP = "loraplane.io"
RESOURCE = "finetunejobs"
_SA_USER = re.compile(r"^system:serviceaccount:([a-z0-9-]+):[a-z0-9.-]+$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Verb(StrEnum):
    GET = "get"
    LIST = "list"
    CREATE = "create"
    PATCH = "patch"
    DELETE = "delete"


@dataclass(frozen=True)
class User:
    username: str
    uid: str
    groups: tuple[str, ...]
    extra: dict

    @property
    def service_account_namespace(self) -> str | None:
        m = _SA_USER.match(self.username)
        return m.group(1) if m else None


@dataclass(frozen=True)
class Caller:
    user: User
    namespace: str


def bearer_token(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthenticated("missing bearer token: pass a Kubernetes token as the API key")
    token = authorization[7:].strip()
    if not token:
        raise Unauthenticated("empty bearer token")
    return token


class Authorizer:
    """TokenReview and SubjectAccessReview against the Kubernetes API server."""

    def __init__(self, kube: KubeClient, audiences: tuple[str, ...] = ()) -> None:
        self.kube, self.audiences = kube, audiences

    async def authenticate(self, token: str) -> User:
        spec: dict = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        try:
            review = await self.kube.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body)
        except KubeApiError as err:
            raise ServerError(f"TokenReview failed: {err}") from err
        status = review.get("status") or {}
        if not status.get("authenticated"):
            raise Unauthenticated(f"invalid token{': ' + status['error'] if status.get('error') else ''}")
        user = status.get("user") or {}
        return User(user.get("username", ""), user.get("uid", ""), tuple(user.get("groups") or ()),
                    dict(user.get("extra") or {}))

    async def caller(self, authorization: str | None, namespace_header: str | None) -> Caller:
        user = await self.authenticate(bearer_token(authorization))
        namespace = (namespace_header or "").strip() or user.service_account_namespace
        if not namespace:
            raise InvalidRequest(f"no namespace: set the {NAMESPACE_HEADER} header (project= in the SDK)")
        if not _NAMESPACE.match(namespace) or len(namespace) > 63:
            raise InvalidRequest(f"invalid namespace {namespace!r} in {NAMESPACE_HEADER}")
        return Caller(user, namespace)

    async def authorize(self, caller: Caller, verb: Verb, resource: str = RESOURCE) -> None:
        user = caller.user
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": user.username, "uid": user.uid, "groups": list(user.groups), "extra": user.extra,
            "resourceAttributes": {"namespace": caller.namespace, "verb": str(verb), "group": GROUP,
                                   "resource": resource},
        }}
        try:
            review = await self.kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
        except KubeApiError as err:
            raise ServerError(f"SubjectAccessReview failed: {err}") from err
        if not (review.get("status") or {}).get("allowed"):
            raise Forbidden(f"{user.username} may not {verb} {resource}.{GROUP} in namespace {caller.namespace}",
                            code="forbidden")
