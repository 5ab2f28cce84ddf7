"""The asyncio Kubernetes client: create, get, list, apply, patch, delete of namespaced objects over aiohttp."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import tempfile
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

# The field manager of everything the operator applies (managedFields, `kubectl get -o yaml --show-managed-fields`).
FIELD_MANAGER = "loraplane-operator"
APPLY_PATCH = "application/apply-patch+yaml"

# kind -> plural for every kind the controllers touch; unknown kinds fall back to lowercase + "s".
PLURALS = {
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "Pod": "pods",
    "Event": "events",
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "Job": "jobs",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "ServiceMonitor": "servicemonitors",
    "PrometheusRule": "prometheusrules",
    "NetworkPolicy": "networkpolicies",
    "FineTuneJob": "finetunejobs",
    "ChatbotDeployment": "chatbotdeployments",
}


class ApiError(Exception):
    """A failed API call, with the HTTP status and the API server's Status message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409 on a stale resourceVersion (the object changed since it was read), or an apply conflict."""


class AlreadyExists(Conflict):
    """409 on create: an object of that name exists."""


class Unprocessable(ApiError):
    """422: the API server refused the object (schema or validation rule)."""


def resource_path(api_version: str, kind: str, namespace: str | None = None, name: str | None = None) -> str:
    """The REST path of a collection or an object."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    plural = PLURALS.get(kind, kind.lower() + "s")
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    return f"{path}/{name}" if name else path


def _error(status: int, body: str, verb: str) -> ApiError:
    try:
        data = json.loads(body)
        reason, message = data.get("reason", ""), data.get("message", body)
    except ValueError:
        reason, message = "", body
    if status == 404:
        return NotFound(status, reason, message)
    if status == 409:
        return (AlreadyExists if verb == "POST" or reason == "AlreadyExists" else Conflict)(status, reason, message)
    if status == 422:
        return Unprocessable(status, reason, message)
    return ApiError(status, reason, message)


class KubeClient:
    """One connection to an API server; safe to share between handlers of one event loop."""

    def __init__(self, info: kopf.ConnectionInfo) -> None:
        self.info = info
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        info = self.info
        if not info.server.startswith("https"):
            return False
        if info.insecure:
            return False
        ctx = ssl.create_default_context(cafile=info.ca_path)
        if info.ca_data:
            data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
            ctx.load_verify_locations(cadata=data if "BEGIN" in data else base64.b64decode(data).decode())
        if info.certificate_path and info.private_key_path:
            ctx.load_cert_chain(info.certificate_path, info.private_key_path)
        elif info.certificate_data and info.private_key_data:
            # ssl only loads client certificates from files.
            with tempfile.NamedTemporaryFile("wb") as cert, tempfile.NamedTemporaryFile("wb") as key:
                for f, value in ((cert, info.certificate_data), (key, info.private_key_data)):
                    raw = value if isinstance(value, bytes) else value.encode()
                    f.write(raw if b"BEGIN" in raw else base64.b64decode(raw))
                    f.flush()
                ctx.load_cert_chain(cert.name, key.name)
        return ctx

    def _headers(self) -> dict[str, str]:
        if self.info.token:
            return {"Authorization": f"Bearer {self.info.token}"}
        if self.info.username and self.info.password:
            raw = f"{self.info.username}:{self.info.password}".encode()
            return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
        return {}

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                base_url=self.info.server.rstrip("/") + "/",
                headers=self._headers(),
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=64),
                timeout=aiohttp.ClientTimeout(total=60),
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        session = self._get_session()
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with session.request(method, path.lstrip("/"), data=data, params=params, headers=headers) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise _error(resp.status, text, method)
            return json.loads(text) if text else {}

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        return await self.request("GET", resource_path(api_version, kind, namespace, name))

    async def get_or_none(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        try:
            return await self.get(api_version, kind, namespace, name)
        except NotFound:
            return None

    async def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        data = await self.request("GET", resource_path(api_version, kind, namespace), params=params)
        return data.get("items", [])

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return await self.request("POST", resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace")), obj)

    async def apply(self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER,
                    force: bool = True) -> dict[str, Any]:
        """Server-side apply: the object holds what `obj` says for the fields this manager sets.

        Fields others set (an HPA's replicas, a mesh's sidecar, the API server's clusterIP)
        are kept; fields this manager set before and leaves out now are removed. `force`
        takes over a field another manager owns instead of failing with 409 Conflict: the
        operator's manifest is the desired state of its children.
        """
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        params = {"fieldManager": field_manager, **({"force": "true"} if force else {})}
        # JSON is YAML: the body needs no YAML serializer.
        return await self.request("PATCH", path, obj, params=params, content_type=APPLY_PATCH)

    async def patch_merge(
        self, api_version: str, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any],
        *, subresource: str | None = None,
    ) -> dict[str, Any]:
        path = resource_path(api_version, kind, namespace, name) + (f"/{subresource}" if subresource else "")
        return await self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    async def patch_json(
        self, api_version: str, kind: str, namespace: str | None, name: str, ops: list[dict[str, Any]],
        *, subresource: str | None = None,
    ) -> dict[str, Any]:
        path = resource_path(api_version, kind, namespace, name) + (f"/{subresource}" if subresource else "")
        return await self.request("PATCH", path, ops, content_type="application/json-patch+json")

    async def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str, *, propagation: str = "Background"
    ) -> bool:
        """Delete an object; False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self.request("DELETE", resource_path(api_version, kind, namespace, name), body)
        except NotFound:
            return False
        return True


_client: KubeClient | None = None


def configure(info: kopf.ConnectionInfo) -> KubeClient:
    """Point the shared client at the API server kopf logged in to (called from the login handler)."""
    global _client
    if _client is None or _client.info != info:
        _client = KubeClient(info)
    return _client


def client() -> KubeClient:
    """The shared client; the operator must have logged in first."""
    if _client is None:
        raise RuntimeError("the Kubernetes client is not configured: no login has happened yet")
    return _client
