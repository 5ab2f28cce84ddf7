"""Start and stop the serving stack locally: vLLM, adapter sync and the router, as the pods run them.

Each piece is a child process in its own session (so a Ctrl-C in the terminal
reaches only this process, which then stops the children in order) with its
output in a log file under the work directory. vLLM runs from its own virtual
environment (LORAPLANE_VLLM_PYTHON, default .venv-vllm/bin/python of the
checkout); adapter sync and the router run from this interpreter's
environment, by module name, exactly as their images run them.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[3]
# Runtime LoRA loading is off in vLLM unless this is set; the KV cache size is for the CPU build (GiB).
VLLM_ENV = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_CPU_KVCACHE_SPACE": "1"}


class StackError(RuntimeError):
    """A piece of the stack failed to start; the message carries the end of its log."""


def vllm_python() -> str:
    """The interpreter of the vLLM environment."""
    if os.environ.get("LORAPLANE_VLLM_PYTHON"):
        return os.environ["LORAPLANE_VLLM_PYTHON"]
    for root in (REPO_ROOT, Path.cwd()):
        candidate = root / ".venv-vllm" / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    raise StackError("no vLLM environment: run `make install-vllm` or set LORAPLANE_VLLM_PYTHON")


def vllm_command(
    model_dir: str | Path,
    served_name: str,
    port: int,
    *,
    host: str = "127.0.0.1",
    max_loras: int = 2,
    max_cpu_loras: int | None = None,
    max_lora_rank: int = 16,
    max_model_len: int = 1024,
    dtype: str = "bfloat16",
    extra_args: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """The vLLM OpenAI server command line, with runtime multi-LoRA enabled."""
    return [
        python or vllm_python(), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", served_name,
        "--host", host, "--port", str(port),
        "--enable-lora", "--max-loras", str(max_loras), "--max-lora-rank", str(max_lora_rank),
        *(["--max-cpu-loras", str(max_cpu_loras)] if max_cpu_loras else []),
        "--max-model-len", str(max_model_len), "--dtype", dtype,
        *extra_args,
    ]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """In the child (a `preexec_fn`): get SIGTERM when the parent dies, even by SIGKILL (Linux).

    So no vLLM or trainer outlives whoever started it (a killed demo left its trainer training on).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """A child process in its own process group, logging to a file, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True, preexec_fn=die_with_parent,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def wait_http(url: str, process: ManagedProcess | None, timeout: float, what: str) -> None:
    """Poll url until it answers 200; fail early when the process died, naming its log."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process is not None and process.exited() is not None:
            raise StackError(
                f"{what} exited with code {process.exited()}; end of {process.log_path}:\n{process.tail()}"
            )
        try:
            r = httpx.get(url, timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:500]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}"
        time.sleep(0.5)
    tail = f"\nend of {process.log_path}:\n{process.tail()}" if process else ""
    raise StackError(f"{what} not ready at {url} after {timeout:.0f}s ({last}){tail}")


# Adapter sync's LoRA resolver plugin for vLLM (loraplane_server/vllm_resolver.py): vLLM finds it by its
# entry point, which a directory of distribution metadata on vLLM's PYTHONPATH provides without installing
# anything into vLLM's environment (the image and `make install-vllm` install it for real).
RESOLVER_MODULE_DIR = REPO_ROOT / "server-image"
RESOLVER_ENTRY_POINT = "[vllm.general_plugins]\nloraplane-adapter-resolver = loraplane_server.vllm_resolver:register\n"


def resolver_env(adapter_sync_url: str, plugin_dir: Path) -> dict[str, str]:
    """vLLM's environment for the resolver plugin: where it is, and the adapter sync it asks."""
    info = plugin_dir / "loraplane_vllm_resolver-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: loraplane_vllm_resolver\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(RESOLVER_ENTRY_POINT)
    path = os.pathsep.join([str(plugin_dir), str(RESOLVER_MODULE_DIR)])
    return {"PYTHONPATH": path, "LORAPLANE_ADAPTER_SYNC_URL": adapter_sync_url}


def launch_vllm(
    model_dir: str | Path, served_name: str, log_path: Path, *, port: int | None = None,
    adapter_sync_url: str | None = None, **options,
) -> tuple[ManagedProcess, str]:
    """Start a vLLM server without waiting for it; returns the process and its base URL.

    `adapter_sync_url`: the adapter sync whose /resolve fetches adapters vLLM does not hold on their
    first request (the resolver plugin); unset, vLLM knows only what adapter sync registers.
    """
    port = port or free_port()
    env = dict(VLLM_ENV)
    if adapter_sync_url:
        env |= resolver_env(adapter_sync_url, Path(log_path).parent / "vllm-plugin")
    proc = ManagedProcess("vllm", vllm_command(model_dir, served_name, port, **options), log_path, env).start()
    return proc, f"http://127.0.0.1:{port}"


def start_vllm(
    model_dir: str | Path, served_name: str, log_path: Path, *, port: int | None = None,
    timeout: float = 600, adapter_sync_url: str | None = None, **options,
) -> tuple[ManagedProcess, str]:
    """Start a vLLM server (launch_vllm) and wait until /health answers; returns the process and its base URL."""
    proc, url = launch_vllm(model_dir, served_name, log_path, port=port, adapter_sync_url=adapter_sync_url,
                            **options)
    try:
        wait_http(f"{url}/health", proc, timeout, "vLLM")
    except BaseException:
        proc.stop()
        raise
    return proc, url


@dataclass
class LocalStack:
    """vLLM + adapter sync + router on localhost for one pool's routing (a tables directory or one file).

    Give `vllm_url` to use a vLLM server that already runs or starts (tests share one; the demo starts
    its own before its first step, with `sync_port` the adapter sync its resolver asks); otherwise one is
    started from `base_model_dir`, served as `base_model_name`.
    """

    routing_table: Path
    work_dir: Path
    base_model_dir: Path | None = None
    base_model_name: str | None = None
    vllm_url: str | None = None
    router_port: int | None = None
    sync_port: int | None = None
    host: str = "127.0.0.1"
    vllm_options: dict = field(default_factory=dict)
    router_args: Sequence[str] = ()
    sync_args: Sequence[str] = ()  # e.g. ("--disk-budget", "200Mi")
    processes: list[ManagedProcess] = field(default_factory=list)
    sync_url: str | None = None
    router_url: str | None = None
    # The router's admin port: /metrics, /pool/residency and /v1/samples.
    router_admin_url: str | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.router_url}/v1"

    def start(self, timeout: float = 600) -> str:
        """Start every piece, wait until adapters are loaded and the router is ready; returns the endpoint."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            sync_port = self.sync_port or free_port()
            self.sync_url = f"http://{self.host}:{sync_port}"
            started_vllm = self.vllm_url is None
            if started_vllm:
                if self.base_model_dir is None or self.base_model_name is None:
                    raise StackError("base_model_dir and base_model_name are needed to start vLLM")
                self.vllm_url = f"http://127.0.0.1:{free_port()}"
            # Adapter sync first: it waits for vLLM, and vLLM's resolver plugin asks it for cold adapters.
            sync = ManagedProcess("adapter-sync", [
                sys.executable, "-m", "loraplane_server.adapter_sync",
                "--routing-table", str(self.routing_table), "--vllm-url", self.vllm_url,
                "--adapters-dir", str(self.work_dir / "adapters"), "--host", self.host, "--port", str(sync_port),
                "--interval", "2", "--reload-interval", "1", *self.sync_args,
            ], self.work_dir / "adapter-sync.log").start()
            self.processes.append(sync)
            if started_vllm:
                proc, _ = start_vllm(
                    self.base_model_dir, self.base_model_name, self.work_dir / "vllm.log",
                    port=int(self.vllm_url.rsplit(":", 1)[1]), timeout=timeout, adapter_sync_url=self.sync_url,
                    **self.vllm_options,
                )
                self.processes.insert(0, proc)  # stopped last
            port, admin_port = self.router_port or free_port(), free_port()
            router = ManagedProcess("router", [
                sys.executable, "-m", "loraplane_server.router",
                "--routing-table", str(self.routing_table), "--upstream", self.vllm_url,
                "--host", self.host, "--port", str(port), "--admin-port", str(admin_port),
                "--reload-interval", "1", "--signing-key-file", str(self.signing_key_file()), *self.router_args,
            ], self.work_dir / "router.log").start()
            self.processes.append(router)
            self.router_url = f"http://{self.host}:{port}"
            self.router_admin_url = f"http://{self.host}:{admin_port}"
            wait_http(f"{self.sync_url}/readyz", sync, timeout, "adapter sync (every adapter verified and loaded)")
            wait_http(f"{self.router_url}/readyz", router, 60, "router")
        except BaseException:
            self.stop()
            raise
        return self.endpoint

    def signing_key_file(self) -> Path:
        """The router's request-id key, kept in the work directory (as the cluster keeps it in the keys
        Secret): request ids and the traffic samples token stay valid across restarts."""
        path = self.work_dir / "request-id-key"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path

    def stop(self) -> None:
        """Stop the children, router first and vLLM last."""
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
