"""The aiohttp application: OpenAI's /v1/files and /v1/fine_tuning/jobs over FineTuneJobs and object storage.

Handlers only wire: authorise (auth), read or write (files, the Kubernetes API), shape (views, wire).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from aiohttp import web
from loraplane.api.finetunejob import DatasetChecks, TrainingSpec
from loraplane.kube import AlreadyExists, KubeClient, Unprocessable, resource_path
from loraplane.kube import ApiError as KubeApiError
from loraplane.kube import NotFound as KubeNotFound
from pydantic import ValidationError

from . import serving_hook, views
from .auth import NAMESPACE_HEADER, Authorizer, Caller, Verb
from .errors import ApiError, InvalidRequest, NotFound, ServerError
from .files import FileStore, check_file_id
from .requests import parse_create
from .template import (
    ANN_CANCELLED,
    ANN_CREATED_NS,
    CONFIGMAP,
    LABEL_SOURCE,
    SOURCE,
    Template,
    build_finetunejob,
    job_name,
)
from .uploads import check_upload
from .wire import FileDeleted, page

log = logging.getLogger("loraplane.api")
API = "loraplane.io/v1alpha1"
JOB_ID = re.compile(r"^ftjob-[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class Settings:
    files_uri: str
    default_template: Template | None = None
    max_upload_bytes: int = 512 * 1024 * 1024


def load_template_file(path: str) -> Template:
    with open(path) as f:
        text = f.read()
    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    job = next((d for d in docs if d.get("kind") == "FineTuneJob"), None)
    if job is None:
        raise SystemExit(f"{path}: no FineTuneJob in this file")
    return Template.parse(yaml.safe_dump(job), None, path)


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer", param=name) from None
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidRequest(f"{name} must be between 1 and {MAX_LIMIT}", param=name)
    return value


def _only_params(request: web.Request, allowed: tuple[str, ...]) -> None:
    for key in request.query:
        if key not in allowed:
            raise InvalidRequest(f"unsupported query parameter {key!r}", param=key, code="unsupported_parameter")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


Handler = Callable[[web.Request, Caller], Awaitable[web.StreamResponse]]


class FineTuningApi:
    """The routes, bound to one Kubernetes connection and one file store."""

    def __init__(self, kube: KubeClient, settings: Settings) -> None:
        self.kube, self.settings = kube, settings
        self.auth = Authorizer(kube)
        self.files = FileStore(settings.files_uri)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_upload_bytes, middlewares=[self._errors])
        routes = [
            ("POST", "/v1/files", self.create_file, Verb.CREATE),
            ("GET", "/v1/files", self.list_files, Verb.LIST),
            ("GET", "/v1/files/{file_id}", self.get_file, Verb.GET),
            ("GET", "/v1/files/{file_id}/content", self.file_content, Verb.GET),
            ("DELETE", "/v1/files/{file_id}", self.delete_file, Verb.DELETE),
            ("POST", "/v1/fine_tuning/jobs", self.create_job, Verb.CREATE),
            ("GET", "/v1/fine_tuning/jobs", self.list_jobs, Verb.LIST),
            ("GET", "/v1/fine_tuning/jobs/{job_id}", self.get_job, Verb.GET),
            ("GET", "/v1/fine_tuning/jobs/{job_id}/events", self.job_events, Verb.GET),
            ("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints", self.job_checkpoints, Verb.GET),
            ("POST", "/v1/fine_tuning/jobs/{job_id}/cancel", self.cancel_job, Verb.PATCH),
        ]
        for method, path, handler, verb in routes:
            app.router.add_route(method, path, self._authorised(handler, verb))
        app.router.add_get("/healthz", self.healthz)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as err:
            return err.response()
        except web.HTTPException as exc:
            if exc.status == 404:
                return NotFound(f"no route {request.method} {request.path}").response()
            if exc.status == 405:
                err = ApiError(f"method {request.method} is not allowed on {request.path}")
                err.status = 405
                return err.response()
            if exc.status == 413:
                err = InvalidRequest(f"the upload is larger than {self.settings.max_upload_bytes} bytes", param="file")
                err.status = 413
                return err.response()
            raise
        except KubeApiError as err:
            log.exception("Kubernetes API error")
            return ServerError(f"the Kubernetes API answered {err.status}: {err.message}").response()

    def _authorised(self, handler: Handler, verb: Verb):
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            caller = await self.auth.caller(request.headers.get("Authorization"), request.headers.get(NAMESPACE_HEADER))
            await self.auth.authorize(caller, verb)
            return await handler(request, caller)

        return run

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    # ---- templates --------------------------------------------------------------------------
    async def template(self, namespace: str) -> Template | None:
        cm = await self.kube.get_or_none("v1", "ConfigMap", namespace, CONFIGMAP)
        if cm is not None:
            return Template.from_configmap(cm)
        return self.settings.default_template

    async def required_template(self, namespace: str) -> Template:
        template = await self.template(namespace)
        if template is None:
            raise InvalidRequest(f"fine-tuning is not set up in namespace {namespace}: no ConfigMap {CONFIGMAP} "
                                 "and no server template", code="not_configured")
        return template

    # ---- files ------------------------------------------------------------------------------
    async def create_file(self, request: web.Request, caller: Caller) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise InvalidRequest("upload files as multipart/form-data with fields file and purpose")
        fields: dict[str, Any] = {}
        async for part in await request.multipart():
            if part.name == "file":
                fields["filename"] = part.filename or "upload.jsonl"
                fields["content"] = await self._read_limited(part)
            elif part.name == "purpose":
                fields["purpose"] = (await part.text()).strip()
            else:
                raise InvalidRequest(f"unsupported parameter {part.name!r}", param=part.name,
                                     code="unsupported_parameter")
        if "content" not in fields:
            raise InvalidRequest("missing file", param="file")
        if fields.get("purpose") != "fine-tune":
            raise InvalidRequest(f"purpose {fields.get('purpose')!r} is not supported here: only 'fine-tune' is",
                                 param="purpose")
        template = await self.template(caller.namespace)
        spec = (template.job.get("spec") or {}) if template else {}
        try:
            checks = DatasetChecks.model_validate((spec.get("dataset") or {}).get("checks") or {})
            max_tokens = TrainingSpec.model_validate(spec.get("training") or {}).max_tokens
        except ValidationError as err:
            first = err.errors()[0]
            raise ServerError(f"{template.source}: spec.{'.'.join(str(p) for p in first['loc'])}: "
                              f"{first['msg']}") from None
        summary = await asyncio.to_thread(check_upload, fields["filename"], fields["content"], checks, max_tokens)
        obj = await asyncio.to_thread(self.files.put, caller.namespace, fields["filename"], fields["content"], summary)
        log.info("%s uploaded %s (%d bytes) to %s", caller.user.username, obj.id, obj.bytes, caller.namespace)
        return web.json_response(obj.to_json())

    async def _read_limited(self, part) -> bytes:
        """The part's bytes; multipart bodies are streamed, so aiohttp's client_max_size does not bound them."""
        chunks, size = [], 0
        while chunk := await part.read_chunk():
            size += len(chunk)
            if size > self.settings.max_upload_bytes:
                err = InvalidRequest(f"the file is larger than {self.settings.max_upload_bytes} bytes", param="file",
                                     code="file_too_large")
                err.status = 413
                raise err
            chunks.append(chunk)
        return b"".join(chunks)

    async def list_files(self, request: web.Request, caller: Caller) -> web.Response:
        _only_params(request, ("purpose", "limit", "after", "order"))
        purpose = request.query.get("purpose")
        order = request.query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be asc or desc", param="order")
        files = await asyncio.to_thread(self.files.list, caller.namespace)
        if purpose and purpose != "fine-tune":
            files = []
        if order == "asc":
            files.reverse()
        result = page(files, after=request.query.get("after"), limit=_int_param(request, "limit", MAX_LIMIT))
        return web.json_response(result.to_json())

    async def get_file(self, request: web.Request, caller: Caller) -> web.Response:
        obj = await asyncio.to_thread(self.files.get, caller.namespace, request.match_info["file_id"])
        return web.json_response(obj.to_json())

    async def file_content(self, request: web.Request, caller: Caller) -> web.Response:
        data = await asyncio.to_thread(self.files.content, caller.namespace, request.match_info["file_id"])
        return web.Response(body=data, content_type="application/octet-stream")

    async def delete_file(self, request: web.Request, caller: Caller) -> web.Response:
        file_id = request.match_info["file_id"]
        await asyncio.to_thread(self.files.delete, caller.namespace, file_id)
        return web.json_response(FileDeleted(id=file_id, deleted=True).to_json())

    # ---- jobs -------------------------------------------------------------------------------
    async def create_job(self, request: web.Request, caller: Caller) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise InvalidRequest("the request body is not valid JSON") from None
        req = parse_create(body)
        check_file_id(req.training_file, "training_file")
        await asyncio.to_thread(self._known_file, caller.namespace, req.training_file, "training_file")
        validation_uri = None
        if req.validation_file:
            check_file_id(req.validation_file, "validation_file")
            await asyncio.to_thread(self._known_file, caller.namespace, req.validation_file, "validation_file")
            validation_uri = self.files.content_uri(caller.namespace, req.validation_file)
        template = await self.required_template(caller.namespace)
        chatbot = (req.metadata or {}).get(serving_hook.METADATA_KEY)
        cbd = None
        if chatbot:
            await self.auth.authorize(caller, Verb.PATCH, "chatbotdeployments")
            cbd = await self.kube.get_or_none(API, "ChatbotDeployment", caller.namespace, chatbot)
            serving_hook.check_chatbot(cbd, chatbot)
        manifest, _ = build_finetunejob(
            template, req, namespace=caller.namespace, name=job_name(req.suffix),
            training_uri=self.files.content_uri(caller.namespace, req.training_file),
            validation_uri=validation_uri, requested_by=caller.user.username)
        manifest["metadata"]["annotations"][ANN_CREATED_NS] = str(time.time_ns())
        try:
            created = await self.kube.create(manifest)
        except Unprocessable as err:
            raise InvalidRequest(f"the FineTuneJob was refused: {err.message}") from err
        except AlreadyExists as err:  # a name collision of 48 random bits: let the client retry
            raise ServerError("job id collision, retry") from err
        log.info("%s created FineTuneJob %s/%s", caller.user.username, caller.namespace, manifest["metadata"]["name"])
        if cbd is not None:
            try:
                await self.kube.patch_json(API, "ChatbotDeployment", caller.namespace, chatbot,
                                           serving_hook.add_adapter_patch(cbd, manifest["metadata"]["name"]))
            except KubeApiError as err:
                raise ServerError(f"job {manifest['metadata']['name']} was created, but ChatbotDeployment {chatbot} "
                                  f"could not take it: {err.message}") from err
        return web.json_response(views.to_job(created).to_json())

    def _known_file(self, namespace: str, file_id: str, param: str) -> None:
        try:
            self.files.get(namespace, file_id, param)
        except NotFound:
            raise InvalidRequest(f"invalid {param}: no file {file_id} in this namespace", param=param,
                                 code="invalid_file") from None

    async def _jobs(self, namespace: str) -> list[dict[str, Any]]:
        items = await self.kube.list(API, "FineTuneJob", namespace, f"{LABEL_SOURCE}={SOURCE}")
        def created(obj: dict[str, Any]) -> tuple[str, int, str]:
            meta = obj["metadata"]
            return (meta.get("creationTimestamp", ""), int((meta.get("annotations") or {}).get(ANN_CREATED_NS, 0)),
                    meta["name"])

        return sorted(items, key=created, reverse=True)

    async def _job(self, namespace: str, job_id: str) -> dict[str, Any]:
        if not JOB_ID.match(job_id) or len(job_id) > 63:
            raise NotFound(f"no fine-tuning job {job_id}", param="fine_tuning_job_id")
        try:
            obj = await self.kube.get(API, "FineTuneJob", namespace, job_id)
        except KubeNotFound:
            raise NotFound(f"no fine-tuning job {job_id}", param="fine_tuning_job_id") from None
        if (obj["metadata"].get("labels") or {}).get(LABEL_SOURCE) != SOURCE:
            raise NotFound(f"no fine-tuning job {job_id}", param="fine_tuning_job_id")
        return obj

    async def list_jobs(self, request: web.Request, caller: Caller) -> web.Response:
        _only_params(request, ("after", "limit"))
        jobs = [views.to_job(o) for o in await self._jobs(caller.namespace)]
        result = page(jobs, after=request.query.get("after"), limit=_int_param(request, "limit", 20))
        return web.json_response(result.to_json())

    async def get_job(self, request: web.Request, caller: Caller) -> web.Response:
        obj = await self._job(caller.namespace, request.match_info["job_id"])
        return web.json_response(views.to_job(obj).to_json())

    async def job_events(self, request: web.Request, caller: Caller) -> web.Response:
        _only_params(request, ("after", "limit"))
        obj = await self._job(caller.namespace, request.match_info["job_id"])
        uid = obj["metadata"]["uid"]
        # The field selector spares a real API server listing every Event of the namespace; the filter stays.
        listed = await self.kube.request("GET", resource_path("v1", "Event", caller.namespace),
                                         params={"fieldSelector": f"involvedObject.uid={uid}"})
        k8s = [ev for ev in listed.get("items", []) if (ev.get("involvedObject") or {}).get("uid") == uid]
        events = views.events(obj, k8s)
        result = page(events, after=request.query.get("after"), limit=_int_param(request, "limit", 20))
        return web.json_response(result.to_json())

    async def job_checkpoints(self, request: web.Request, caller: Caller) -> web.Response:
        _only_params(request, ("after", "limit"))
        obj = await self._job(caller.namespace, request.match_info["job_id"])
        result = page(views.checkpoints(obj), after=request.query.get("after"),
                      limit=_int_param(request, "limit", 10))
        return web.json_response(result.to_json())

    async def cancel_job(self, request: web.Request, caller: Caller) -> web.Response:
        obj = await self._job(caller.namespace, request.match_info["job_id"])
        state = views.job_status(obj)
        if state in views.TERMINAL:
            raise InvalidRequest(f"job {obj['metadata']['name']} is already {state}: it cannot be cancelled",
                                 param="fine_tuning_job_id", code="job_finished")
        # spec.suspend stops the training Job; the annotation tells a cancel from a platform team's pause.
        patched = await self.kube.patch_merge(API, "FineTuneJob", caller.namespace, obj["metadata"]["name"], {
            "metadata": {"annotations": {ANN_CANCELLED: _now()}}, "spec": {"suspend": True}})
        log.info("%s cancelled FineTuneJob %s/%s", caller.user.username, caller.namespace, obj["metadata"]["name"])
        return web.json_response(views.to_job(patched).to_json())
