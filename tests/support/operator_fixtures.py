"""Fixtures that run the REAL kopf operator against the API-server emulator, plus an S3 server.

    def test_something(cluster, s3_server):
        cluster.ensure_namespace("chatbots")
        with cluster.operator("chatbots"):                 # kopf run -m loraplane.handlers, in-process
            cluster.create(ftj_dict)                         # 422 -> cluster.ApiError, like kubectl apply
            job = cluster.wait_for(lambda: cluster.get_or_none("batch/v1", "Job", "chatbots", "x-train-1"))
            cluster.set_job_status("chatbots", "x-train-1", active=1)   # as the Job controller would
            cluster.wait_for(lambda: cluster.get(...)["status"].get("phase") == "Training")

`cluster` (ApiServerEmulator served on localhost in a thread of its own) gives a
synchronous API for tests: create / get / get_or_none / list / patch / delete /
wait_for / set_job_status / ensure_namespace, and `emulator` for fault injection
(`cluster.emulator.fail_next(...)`, called through `cluster.call`). `s3_server` is
moto's S3 server with AWS_* set in the environment, so `loraplane.storage` reads and
writes s3:// URIs against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import kmock
import pytest

from .apiserver_emulator import ApiError, ApiServerEmulator

T = TypeVar("T")


class ClusterApiError(Exception):
    """An error answered by the emulated API server to a test's call."""

    def __init__(self, err: ApiError) -> None:
        super().__init__(f"{err.code} {err.reason}: {err.message}")
        self.code, self.reason, self.message = err.code, err.reason, err.message


class Cluster:
    """The emulated API server running in a background thread, with a synchronous API for tests."""

    ApiError = ClusterApiError

    def __init__(self, *, validate_builtin: bool = True) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.emulator = ApiServerEmulator(validate_builtin=validate_builtin)
        self.url = ""
        self._thread = threading.Thread(target=self._run, name="apiserver-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the API-server emulator did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # Every access to the emulator's state runs in its own loop, so tests never race the server.
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def run() -> T:
            return fn(*args, **kwargs)

        try:
            return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)
        except ApiError as err:
            raise ClusterApiError(err) from err

    def _type(self, api_version: str, kind: str):
        return self.emulator.type_for(api_version, kind)

    def ensure_namespace(self, name: str) -> None:
        if self.get_or_none("v1", "Namespace", None, name) is None:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        rtype = self._type(obj["apiVersion"], obj["kind"])
        return self.call(self.emulator.create, rtype, obj.get("metadata", {}).get("namespace"), obj)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        return self.call(self.emulator.get, self._type(api_version, kind), namespace, name)

    def get_or_none(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        try:
            return self.get(api_version, kind, namespace, name)
        except ClusterApiError as err:
            if err.code == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.call(self.emulator.find, api_version, kind, namespace, label_selector)

    def patch(self, api_version: str, kind: str, namespace: str | None, name: str, patch: Any, *,
              subresource: str | None = None, json_patch: bool = False) -> dict[str, Any]:
        ctype = "application/json-patch+json" if json_patch else "application/merge-patch+json"
        return self.call(self.emulator.patch, self._type(api_version, kind), namespace, name, patch, ctype,
                         subresource)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        self.call(self.emulator.delete, self._type(api_version, kind), namespace, name)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self.call(lambda: list(self.emulator.events_for(namespace, name)))

    def set_job_status(
        self, namespace: str, name: str, *, active: int = 0, succeeded: int = 0, failed: int = 0,
        condition: str | None = None, reason: str = "", message: str = "", suspended: bool | None = None,
        ready: int | None = None,
    ) -> dict[str, Any]:
        """Write a Job's status as the Job controller would: counts, startTime, and a terminal condition.

        condition: None, "Complete", "Failed" (reason e.g. BackoffLimitExceeded, PodFailurePolicy,
        DeadlineExceeded) or "Suspended".
        """
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        job = self.get("batch/v1", "Job", namespace, name)
        status: dict[str, Any] = dict(job.get("status") or {})
        status.update({"active": active, "succeeded": succeeded, "failed": failed})
        if ready is not None:
            status["ready"] = ready
        if active or succeeded or failed:
            status.setdefault("startTime", now)
        conds = [c for c in status.get("conditions", []) if c["type"] not in ("Complete", "Failed", "Suspended")]
        if condition:
            conds.append({"type": condition, "status": "True", "reason": reason, "message": message,
                          "lastProbeTime": now, "lastTransitionTime": now})
            if condition in ("Complete", "Failed"):
                status["completionTime"] = now
        if suspended is not None and not condition:
            conds.append({"type": "Suspended", "status": str(suspended), "reason": "JobSuspended",
                          "message": "Job suspended", "lastProbeTime": now, "lastTransitionTime": now})
        status["conditions"] = conds
        return self.patch("batch/v1", "Job", namespace, name, {"status": status}, subresource="status")

    def wait_for(self, predicate: Callable[[], T], timeout: float = 30, message: str = "", interval: float = 0.1) -> T:
        """Poll until predicate() returns something truthy; return it, or fail the test after timeout."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = predicate()
            except (ClusterApiError, KeyError, TypeError, IndexError) as err:
                last_error, value = err, None
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}"
                             + (f" (last error: {last_error})" if last_error else ""))

    @contextlib.contextmanager
    def operator(self, *namespaces: str, **config: Any) -> Iterator[Any]:
        """Run the real operator (`kopf run -m loraplane.handlers`) in-process against this cluster.

        config overrides OperatorConfig fields (e.g. progress_interval_seconds=0.5).
        """
        from kopf.testing import KopfRunner
        from loraplane import config as operator_config

        # The handlers read their intervals from this configuration on every tick.
        settings = {"api_server": self.url, "metrics_port": 0, "progress_interval_seconds": 0.5,
                    "schedule_interval_seconds": 0.5, **config}
        operator_config.configure(operator_config.OperatorConfig(**settings))
        args = ["run", "--standalone", "-m", "loraplane.handlers"]
        if namespaces:
            for ns in namespaces:
                args += ["--namespace", ns]
        else:
            args.append("--all-namespaces")
        try:
            with KopfRunner(args, timeout=60) as runner:
                yield runner
        finally:
            operator_config.configure(None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3 server on localhost, with AWS_* in the environment while it runs."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self._saved = {k: os.environ.get(k) for k in self.env()}
        os.environ.update(self.env())

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint}

    def make_bucket(self, name: str) -> str:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(Bucket=name)
        return f"s3://{name}/"

    def stop(self) -> None:
        self._server.stop()
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """The API-server emulator on localhost (one per test module)."""
    c = Cluster()
    yield c
    c.close()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server, AWS_* set in the environment (one per test module)."""
    server = S3Server()
    yield server
    server.stop()
