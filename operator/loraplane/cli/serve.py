"""`loraplane serve <files>`: a ModelPool and its ChatbotDeployments (or one chatbot) on localhost.

One real vLLM with adapter sync beside it and the router in front, as a pool's pods run them.
"""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

import click

from ..local.inputs import served_model_dir
from ..local.pool import PoolInputError, load_pool_inputs, pool_tables, write_pool_tables
from ..local.resolve import ResolveError
from ..local.stack import LocalStack, StackError


@click.command("serve")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--adapters-root", default="loraplane-out", show_default=True,
              help="Where fineTuneJobRef adapters are: <root>/<job>/<version>/ (a directory or s3:// URI).")
@click.option("--base-model-dir", "given_model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Local Hugging Face directory of the base model.")
@click.option("--port", default=8000, show_default=True, type=int, help="Router port (the endpoint).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Routing tables, verified adapters and logs (default: a new temporary directory).")
@click.option("--vllm-url", help="Use a vLLM server that already runs (started with --enable-lora).")
@click.option("--max-model-len", type=int, help="Override spec.vllm.maxModelLen (smaller starts faster on CPU).")
@click.option("--timeout", default=600, show_default=True, type=float, help="Seconds to wait for readiness.")
def serve_command(files, adapters_root, given_model_dir, port, work_dir, vllm_url, max_model_len, timeout) -> None:
    """Serve chatbots locally: real vLLM with their adapters, behind the router.

    FILES hold a ModelPool and the ChatbotDeployments on it (and any Secrets their auth names), or a
    single ChatbotDeployment without poolRef. Edit <work-dir>/routing/*.yaml while it runs to move
    weights: the router and adapter sync reload them live.
    """
    try:
        inputs = load_pool_inputs(files)
        tables = pool_tables(inputs, adapters_root)
    except PoolInputError as exc:
        raise click.ClickException(str(exc)) from exc
    except ResolveError as exc:
        raise click.ClickException(f"cannot resolve the adapters:\n{exc}") from exc
    pool = inputs.pool.obj if inputs.pool else None
    owner = pool or inputs.chatbots[0].obj
    spec = owner.spec
    work = work_dir or Path(tempfile.mkdtemp(prefix=f"loraplane-serve-{owner.metadata.name}-"))
    routing = work / "routing"
    write_pool_tables(routing, tables)
    vllm = spec.vllm
    adapters = sum(len(t.adapters()) for t in tables)
    options = {
        "max_loras": vllm.max_loras or max(1, min(adapters, 64)),
        "max_cpu_loras": vllm.max_cpu_loras,
        "max_lora_rank": vllm.max_lora_rank or 16,
        "max_model_len": max_model_len or vllm.max_model_len,
        # "auto" would pick the checkpoint's float32 on CPU; bfloat16 is what the CPU build runs fast.
        "dtype": "bfloat16" if vllm.dtype == "auto" else vllm.dtype,
        "extra_args": vllm.extra_args,
    }
    sync_args = ("--disk-budget", pool.spec.adapter_storage.size) if pool else ()
    model_dir = None if vllm_url else served_model_dir(spec.base_model, given_model_dir)
    stack = LocalStack(routing_table=routing, work_dir=work, base_model_dir=model_dir,
                       base_model_name=tables[0].base_model, vllm_url=vllm_url, router_port=port,
                       vllm_options=options, sync_args=sync_args)

    def _terminate(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    click.echo(f"starting vLLM ({tables[0].base_model}), adapter sync and router; logs in {work}", err=True)
    try:
        endpoint = stack.start(timeout=timeout)
        for table in tables:
            weights = ", ".join(f"{v.name}={v.weight}%" for v in table.variants)
            click.echo(f"serving {table.model} ({table.namespace}/{table.chatbot_name}: {weights}) at {endpoint}")
        click.echo(
            f"  curl {endpoint}/chat/completions -H 'content-type: application/json' "
            f"-d '{{\"model\": \"{tables[0].model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hi\"}}]}}'"
        )
        click.echo(f"  metrics: {stack.router_admin_url}/metrics   residency: {stack.sync_url}/status   "
                   f"routing tables (live): {routing}   Ctrl-C stops")
        for table in (t for t in tables if t.sampling is not None):
            click.echo(f"  traffic samples of {table.key}: loraplane eval samples --endpoint {stack.router_admin_url} "
                       f"--namespace {table.namespace} --chatbot {table.chatbot_name} "
                       f"--key-file {stack.signing_key_file()} --out samples.jsonl")
        while True:
            for proc in stack.processes:
                if proc.exited() is not None:
                    raise StackError(f"{proc.name} exited with code {proc.exited()}:\n{proc.tail()}")
            time.sleep(1)
    except KeyboardInterrupt:
        click.echo("stopping", err=True)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        stack.stop()


commands = [serve_command]
