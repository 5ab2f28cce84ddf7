"""`loraplane serve <chatbotdeployment.yaml>`: vLLM, adapter sync and the router on localhost."""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

import click

from ..local.inputs import base_model_dir, load_chatbot
from ..local.resolve import ResolveError, local_routing_table
from ..local.stack import LocalStack, StackError


@click.command("serve")
@click.argument("chatbot", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--adapters-root", default="loraplane-out", show_default=True,
              help="Where fineTuneJobRef adapters are: <root>/<job>/<version>/ (a directory or s3:// URI).")
@click.option("--base-model-dir", "given_model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Local Hugging Face directory of the base model.")
@click.option("--port", default=8000, show_default=True, type=int, help="Router port (the endpoint).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Routing table, verified adapters and logs (default: a new temporary directory).")
@click.option("--vllm-url", help="Use a vLLM server that already runs (started with --enable-lora).")
@click.option("--max-model-len", type=int, help="Override spec.vllm.maxModelLen (smaller starts faster on CPU).")
@click.option("--timeout", default=600, show_default=True, type=float, help="Seconds to wait for readiness.")
def serve_command(chatbot, adapters_root, given_model_dir, port, work_dir, vllm_url, max_model_len, timeout) -> None:
    """Serve a ChatbotDeployment locally: real vLLM with its adapters hot-loaded, behind the A/B router.

    Edit <work-dir>/routing.yaml while it runs to move weights: router and adapter sync reload it live.
    """
    cbd = load_chatbot(chatbot)
    try:
        table = local_routing_table(cbd, adapters_root)
    except ResolveError as exc:
        raise click.ClickException(f"cannot resolve the adapters of {chatbot}:\n{exc}") from exc
    work = work_dir or Path(tempfile.mkdtemp(prefix=f"loraplane-serve-{cbd.metadata.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    routing = work / "routing.yaml"
    routing.write_text(table.to_yaml())
    vllm = cbd.spec.vllm
    options = {
        "max_loras": vllm.max_loras or max(1, len(table.adapters())),
        "max_lora_rank": vllm.max_lora_rank or 16,
        "max_model_len": max_model_len or vllm.max_model_len,
        # "auto" would pick the checkpoint's float32 on CPU; bfloat16 is what the CPU build runs fast.
        "dtype": "bfloat16" if vllm.dtype == "auto" else vllm.dtype,
        "extra_args": vllm.extra_args,
    }
    model_dir = None if vllm_url else base_model_dir(cbd, given_model_dir)
    stack = LocalStack(routing_table=routing, work_dir=work, base_model_dir=model_dir,
                       base_model_name=table.base_model, vllm_url=vllm_url, router_port=port, vllm_options=options)

    def _terminate(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    click.echo(f"starting vLLM ({table.base_model}), adapter sync and router; logs in {work}", err=True)
    try:
        endpoint = stack.start(timeout=timeout)
        weights = ", ".join(f"{v.name}={v.weight}%" for v in table.variants)
        click.echo(f"serving {table.model} ({weights}) at {endpoint}")
        click.echo(
            f"  curl {endpoint}/chat/completions -H 'content-type: application/json' "
            f"-d '{{\"model\": \"{table.model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hi\"}}]}}'"
        )
        click.echo(f"  metrics: {stack.router_admin_url}/metrics   routing table (live): {routing}   Ctrl-C stops")
        if table.sampling is not None:
            click.echo(f"  traffic samples: loraplane eval samples --endpoint {stack.router_admin_url} "
                       f"--namespace {table.namespace} --chatbot {table.chatbot_name} --key-file {stack.signing_key_file()} --out samples.jsonl")
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
