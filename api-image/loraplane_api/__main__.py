"""`loraplane-api` (`python -m loraplane_api`): serve the fine-tuning API.

In a cluster it talks to the API server with its service account (the token is re-read as the kubelet
rotates it); locally, with --api-server, or with the current kubeconfig.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time

import kopf
from aiohttp import web
from loraplane.kube import KubeClient

from .app import FineTuningApi, Settings, load_template_file

RELOGIN_SECONDS = 300


class RotatingKubeClient(KubeClient):
    """A KubeClient that logs in again every few minutes: bound service-account tokens expire."""

    def __init__(self, login) -> None:
        super().__init__(login())
        self._login, self._at = login, time.monotonic()

    def _get_session(self):
        if time.monotonic() - self._at > RELOGIN_SECONDS:
            self._at = time.monotonic()
            info = self._login()
            if info != self.info:
                old, self.info, self._session = self._session, info, None
                if old is not None:
                    asyncio.get_running_loop().create_task(old.close())
        return super()._get_session()


def _login(api_server: str | None):
    if api_server:
        return lambda: kopf.ConnectionInfo(server=api_server, token=os.environ.get("LORAPLANE_API_SERVER_TOKEN"))
    settings = kopf.OperatorSettings()

    def login() -> kopf.ConnectionInfo:
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
        if info is None:
            raise SystemExit("no Kubernetes credentials: not in a pod and no kubeconfig; pass --api-server")
        return info

    return login


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="loraplane-api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("LORAPLANE_API_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("LORAPLANE_API_PORT", "8000")))
    parser.add_argument("--files-uri", default=os.environ.get("LORAPLANE_API_FILES_URI"),
                        help="Object-storage prefix for uploaded files (s3://bucket/files/, file:///data/files).")
    parser.add_argument("--template", default=os.environ.get("LORAPLANE_API_TEMPLATE"),
                        help="FineTuneJob YAML used where a namespace has no loraplane-finetune-template ConfigMap.")
    parser.add_argument("--api-server", default=os.environ.get("LORAPLANE_API_SERVER"),
                        help="Kubernetes API server URL (default: in-cluster, then kubeconfig).")
    parser.add_argument("--max-upload-mb", type=int, default=int(os.environ.get("LORAPLANE_API_MAX_UPLOAD_MB", "512")))
    args = parser.parse_args(argv)
    if not args.files_uri:
        parser.error("--files-uri (or LORAPLANE_API_FILES_URI) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(files_uri=args.files_uri,
                        default_template=load_template_file(args.template) if args.template else None,
                        max_upload_bytes=args.max_upload_mb * 1024 * 1024)
    api = FineTuningApi(RotatingKubeClient(_login(args.api_server)), settings)
    web.run_app(api.app(), host=args.host, port=args.port, print=lambda msg: logging.info("%s", msg))


if __name__ == "__main__":
    main()
