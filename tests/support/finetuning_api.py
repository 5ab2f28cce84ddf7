"""The REAL fine-tuning API server (loraplane_api) on localhost, in front of the API-server emulator.

    def test_x(finetuning_api):                       # needs the `cluster` and `s3_server` fixtures
        token = finetuning_api.grant("team-a", "alice", "finetune-editor")
        client = finetuning_api.client(token, "team-a")   # the official openai SDK, strict parsing
        client.files.create(file=..., purpose="fine-tune")

The server runs in its own thread and event loop, with its files in moto's S3. `grant` makes a
service account token and a RoleBinding to one of the ClusterRoles below, as a platform team would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import yaml

from .operator_fixtures import free_port

ROLES = {
    "finetune-editor": {"finetunejobs": ["get", "list", "create", "patch", "delete"]},
    "finetune-viewer": {"finetunejobs": ["get", "list"]},
    # may also hand a job's adapter to a ChatbotDeployment's rollout (metadata.chatbot_deployment)
    "finetune-deployer": {"finetunejobs": ["get", "list", "create", "patch"], "chatbotdeployments": ["get", "patch"]},
}
TEMPLATE_CONFIGMAP = "loraplane-finetune-template"


class FineTuningApiServer:
    def __init__(self, cluster, files_uri: str) -> None:
        import kopf
        from loraplane.kube import KubeClient
        from loraplane_api.app import FineTuningApi, Settings

        self.cluster = cluster
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._loop = asyncio.new_event_loop()
        self._api = FineTuningApi(KubeClient(kopf.ConnectionInfo(server=cluster.url)), Settings(files_uri=files_uri))
        self._runner = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="finetuning-api", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the fine-tuning API server did not start")
        for name, grants in ROLES.items():
            if cluster.get_or_none("rbac.authorization.k8s.io/v1", "ClusterRole", None, name) is None:
                cluster.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                "metadata": {"name": name},
                                "rules": [{"apiGroups": ["loraplane.io"], "resources": [resource], "verbs": verbs}
                                          for resource, verbs in grants.items()]})

    def _run(self, ready: threading.Event) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._runner = web.AppRunner(self._api.app())
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            await self._api.kube.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def token(self, namespace: str, service_account: str) -> str:
        self.cluster.ensure_namespace(namespace)
        return self.cluster.call(self.cluster.emulator.service_account_token, namespace, service_account)

    def grant(self, namespace: str, service_account: str, role: str | None = "finetune-editor") -> str:
        """A token of service account namespace/service_account, bound to ClusterRole `role` in its namespace."""
        token = self.token(namespace, service_account)
        if role:
            self.cluster.create({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": f"{service_account}-{role}", "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]})
        return token

    def set_template(self, namespace: str, finetunejob: dict) -> None:
        """The namespace's template ConfigMap, holding a FineTuneJob without a dataset source."""
        self.cluster.ensure_namespace(namespace)
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": TEMPLATE_CONFIGMAP, "namespace": namespace},
              "data": {"finetunejob.yaml": yaml.safe_dump(finetunejob)}}
        if self.cluster.get_or_none("v1", "ConfigMap", namespace, TEMPLATE_CONFIGMAP) is None:
            self.cluster.create(cm)
        else:
            self.cluster.patch("v1", "ConfigMap", namespace, TEMPLATE_CONFIGMAP, {"data": cm["data"]})

    def client(self, token: str, namespace: str | None = None):
        """The official openai SDK client, validating every answer against its own types."""
        from openai import OpenAI

        return OpenAI(base_url=self.url, api_key=token, project=namespace, max_retries=0,
                      _strict_response_validation=True)


@pytest.fixture(scope="module")
def finetuning_api(cluster, s3_server) -> Iterator[FineTuningApiServer]:
    server = FineTuningApiServer(cluster, s3_server.make_bucket("finetuning-files") + "files/")
    yield server
    server.close()
