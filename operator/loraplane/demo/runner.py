"""The demo's steps, in order: validate, train, serve, talk, judge the canary, keep serving."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from .. import router_metrics as rm
from ..api import BASE_VARIANT, ChatbotDeployment, FineTuneJob
from ..builders.routing_table import served_base_model
from ..canary import LocalCanary, RouterMetricsSource, RoutingFileRouter, parse_router_metrics, window_figures
from ..canary.analysis import Decision
from ..canary.rollout import Action
from ..local.inputs import base_model_dir, load_chatbot
from ..local.resolve import ResolveError, local_routing_table
from ..local.stack import (
    LocalStack,
    ManagedProcess,
    StackError,
    die_with_parent,
    free_port,
    launch_vllm,
    wait_http,
)
from ..routing import RoutingTable
from ..storage import RunLayout, read_manifest, verify_files
from ..storage.layout import EVALUATION_ROWS
from ..storage.uris import is_local, local_path
from .conversation import Answer, load_questions, run_round
from .preflight import PreflightError, check_disk, check_port

HINTS = {"perplexityBefore": "lower is better", "exactMatchBefore": "higher is better",
         "regressionPerplexityBefore": "general prompts"}


class DemoError(Exception):
    """A step failed; the message says which and why."""


@dataclass
class DemoOptions:
    job_file: Path = Path("examples/demo/finetunejob.yaml")
    chatbot_file: Path = Path("examples/demo/chatbotdeployment.yaml")
    out: Path = Path("loraplane-out")
    port: int = 8000
    serve: bool = True
    epochs: int | None = None
    max_steps: int | None = None
    questions: int = 24
    max_rounds: int = 4
    max_tokens: int = 48
    summary: dict = field(default_factory=dict)


def _run(argv: list[str], what: str) -> None:
    code = subprocess.call(argv, preexec_fn=die_with_parent)
    if code != 0:
        raise DemoError(f"{what} failed (exit code {code}): `{' '.join(argv[2:])}` — see its output above")


class Demo:
    def __init__(self, options: DemoOptions, console: Console | None = None):
        self.o = options
        self.console = console or Console()
        self.out = options.out.resolve()
        self.work = self.out / "demo"
        self.stack: LocalStack | None = None
        self.vllm: ManagedProcess | None = None  # started before step 1, served from step 4
        self.vllm_url: str | None = None
        self.sync_port: int | None = None
        self.summary: dict = {"steps": {}}

    @cached_property
    def chatbot(self) -> ChatbotDeployment:
        """The demo's ChatbotDeployment, read once."""
        return load_chatbot(self.o.chatbot_file)

    @cached_property
    def job(self) -> FineTuneJob:
        """The demo's FineTuneJob, read once."""
        return FineTuneJob.model_validate(_yaml(self.o.job_file))

    @cached_property
    def run_id(self) -> str:
        """The demo's one training run: step 1 keeps its dataset split, step 2 trains it."""
        return f"demo-{time.strftime('%Y%m%d-%H%M%S')}"

    @cached_property
    def layout(self) -> RunLayout:
        return RunLayout(f"file://{self.out}", self.job.metadata.name, self.run_id)

    def _train_argv(self) -> list[str]:
        return [sys.executable, "-m", "loraplane.cli", "train", str(self.o.job_file), "--output", f"file://{self.out}",
                "--run-id", self.run_id]

    def step(self, n: int, title: str) -> None:
        self.console.rule(f"[bold]{n}. {title}")
        self.summary["steps"][str(n)] = title

    # -- 1 -------------------------------------------------------------------------------------
    def validate(self) -> None:
        uri = self.job.spec.dataset.uri or ""
        # A local dataset is relative to the job file: named as the user would open it from here.
        shown = os.path.relpath(self.o.job_file.parent / local_path(uri)) if uri and is_local(uri) else uri
        self.step(1, f"Validate the dataset {shown}")
        # The trainer's own dataset stage, as the run's first stage: it keeps the split in the run, and step 2
        # (the same run) trains on it without checking it again. Its validation half gives the demo questions.
        _run(self._train_argv() + ["--dataset-only"], "the dataset check and split")

    # -- 2, 3 ----------------------------------------------------------------------------------
    def train(self) -> dict:
        job = self.job
        profile = []
        if self.o.epochs is not None:
            profile.append(f"epochs={self.o.epochs}")
        if self.o.max_steps is not None:
            profile.append(f"max-steps={self.o.max_steps}")
        t = job.spec.training
        profile = [f"learningRate {t.learning_rate:g}", f"batchSize {t.batch_size}",
                   *([f"gradientAccumulation {t.gradient_accumulation}"] if t.gradient_accumulation > 1 else []),
                   f"epochs {t.epochs}", *profile]
        self.step(2, f"Train a LoRA adapter of {job.spec.base_model.name or job.spec.base_model.uri}")
        self.console.print(f"profile {self.o.job_file}: {', '.join(profile)} (its header says why)")
        argv = self._train_argv()
        if self.o.epochs is not None:
            argv += ["--epochs", str(self.o.epochs)]
        if self.o.max_steps is not None:
            argv += ["--max-steps", str(self.o.max_steps)]
        code = subprocess.call(argv, preexec_fn=die_with_parent)
        layout = self.layout
        result = layout.read_result()
        if result is None:
            raise DemoError(f"training failed (exit code {code}) before it wrote {layout.result}; see its log above")
        self.step(3, "Before and after")
        self._print_evaluation(result)
        if result.get("verdict") != "accepted":
            raise DemoError(f"the adapter was rejected by a quality gate: {result.get('reason')}")
        manifest = read_manifest(result["uri"])
        if manifest is None:
            raise DemoError(f"{result['uri']}: no manifest.json, the adapter was not published")
        verify_files(result["uri"], manifest)
        self.summary["training"] = {"runId": self.run_id, **result}
        return result

    def _print_evaluation(self, result: dict) -> None:
        metrics = result.get("metrics") or {}
        table = Table(title="Evaluation on held-out data", title_justify="left")
        for col in ("", "base model", "with adapter", ""):
            table.add_column(col)
        for label, before, after in EVALUATION_ROWS:
            table.add_row(label, _fmt(metrics.get(before)), _fmt(metrics.get(after)), HINTS.get(before, ""))
        self.console.print(table)
        prefix = result["uri"].rstrip("/")
        self.console.print(f"adapter [bold]{result['version']}[/] ({result['verdict']}): {prefix}")
        for name, what in (("README.md", "model card"), ("loss_curve.png", "loss curve"),
                           ("manifest.json", "manifest (sha256 of every file, written last)")):
            self.console.print(f"  {what}: {prefix}/{name}")

    def launch_vllm(self) -> None:
        """Start vLLM with the base model in the background before step 1, so that it is up by step 4.

        vLLM's three processes take most of a minute to import on a CPU, one core at a time, beside the
        dataset checks and the trainer's start (one core each too), and then wait idle; the adapter is
        hot-loaded once it is published, as in a cluster.
        """
        cbd = self.chatbot
        self.work.mkdir(parents=True, exist_ok=True)
        self.sync_port = free_port()
        self.vllm, self.vllm_url = launch_vllm(
            base_model_dir(cbd, None), served_base_model(cbd.spec, cbd.metadata.name or "chatbot"),
            self.work / "vllm.log", adapter_sync_url=f"http://127.0.0.1:{self.sync_port}",
            max_model_len=cbd.spec.vllm.max_model_len, max_loras=cbd.spec.vllm.max_loras or 2,
            max_lora_rank=cbd.spec.vllm.max_lora_rank or 16)
        self.console.print(f"vLLM (CPU build) starts in the background for step 4; its log: {self.work / 'vllm.log'}")

    # -- 4 -------------------------------------------------------------------------------------
    def serve(self) -> tuple[ChatbotDeployment, RoutingTable, Path]:
        cbd = self.chatbot
        self.step(4, "Serve: real vLLM with the adapter hot-loaded, behind the A/B router")
        try:
            table = local_routing_table(cbd, str(self.out))
        except ResolveError as exc:
            raise DemoError(f"cannot resolve the adapters of {self.o.chatbot_file}: {exc}") from exc
        self.work.mkdir(parents=True, exist_ok=True)
        routing = self.work / "routing.yaml"
        routing.write_text(table.to_yaml())
        assert self.vllm is not None and self.vllm_url is not None
        self.stack = LocalStack(
            routing_table=routing, work_dir=self.work, vllm_url=self.vllm_url, sync_port=self.sync_port,
            router_port=self.o.port or free_port(),  # 0: a port free now, not when the demo began
        )
        self.console.print("waiting for vLLM, then starting adapter sync (which hot-loads the adapter) and the router …")
        started = time.monotonic()
        try:
            wait_http(f"{self.vllm_url}/health", self.vllm, 600, "vLLM")
            self.stack.start()
        except StackError as exc:
            raise DemoError(str(exc)) from exc
        self.console.print(f"ready in {time.monotonic() - started:.0f} s: endpoint {self.stack.endpoint}, "
                           f"logs in {self.work}")
        return cbd, table, routing

    # -- 5 -------------------------------------------------------------------------------------
    async def talk(self, cbd: ChatbotDeployment, table: RoutingTable, routing: Path) -> dict:
        assert self.stack is not None and self.stack.router_admin_url
        canary_name = next(v.name for v in table.variants if v.adapter_uri)
        stable = next((t.adapter for t in cbd.spec.traffic if t.weight == 100), BASE_VARIANT)
        self.step(5, f"Canary {canary_name} against {stable}: customer questions, feedback, analysis")
        questions = load_questions(Path(local_path(self.layout.kept_split)) / "validation.jsonl", self.o.questions)
        if not questions:
            raise DemoError("the validation split holds no questions")
        canary = LocalCanary(cbd.spec.rollout, stable=stable, canary=canary_name, model=table.model,
                             source=RouterMetricsSource(f"{self.stack.router_admin_url}/metrics"),
                             router=RoutingFileRouter(routing), base_weights={stable: 100})
        reloads = await _reloads(self.stack.router_admin_url)
        first = await canary.start()
        self.console.print(f"canary: {first.reason}")
        await _wait_for_reload(self.stack.router_admin_url, reloads)
        header = cbd.spec.stickiness.header or "x-user-id"
        answers: list[Answer] = []
        outcome = first
        for round_no in range(1, self.o.max_rounds + 1):
            batch = await run_round(self.stack.endpoint, table.model, questions, round_no,
                                    stickiness_header=header, max_tokens=self.o.max_tokens)
            answers += batch
            self._print_answers(batch, round_no)
            reloads = await _reloads(self.stack.router_admin_url)
            outcome = await canary.tick()
            self.console.print(f"canary analysis after round {round_no}: [bold]{outcome.action.value}[/] "
                               f"{outcome.reason}")
            if outcome.action is Action.WAIT and outcome.verdict and outcome.verdict.decision is Decision.PASS:
                # Every check passes and only the step's interval is left: wait it out, as the operator's
                # timer does, instead of asking the same questions again.
                left = canary.interval_left()
                self.console.print(f"every check passes: waiting {left:.0f} s for the end of the step's "
                                   f"{cbd.spec.rollout.interval} interval")
                await asyncio.sleep(left)
                outcome = await canary.tick()
                self.console.print(f"canary analysis: [bold]{outcome.action.value}[/] {outcome.reason}")
            if outcome.action in (Action.PROMOTE, Action.ROLLBACK):
                break
            if outcome.action is Action.ADVANCE:
                await _wait_for_reload(self.stack.router_admin_url, reloads)
        self._print_metrics(table.model, await _metrics_text(self.stack.router_admin_url))
        self._print_decision(outcome)
        by_variant: dict[str, list[Answer]] = {}
        for a in answers:
            by_variant.setdefault(a.variant, []).append(a)
        self.summary["traffic"] = {
            v: {"answers": len(lst), "thumbsUp": sum(1 for a in lst if a.thumbs_up),
                "examples": [{"question": a.question.prompt, "answer": a.text} for a in lst[:3]]}
            for v, lst in by_variant.items()
        }
        self.summary["canary"] = {
            "action": outcome.action.value, "reason": outcome.reason,
            "weights": canary.state.weights(canary.base), "stable": canary.state.stable,
            "analysis": [r.model_dump(by_alias=True, exclude_none=True) for r in outcome.state.analysis],
        }
        return self.summary

    def _print_answers(self, batch: list[Answer], round_no: int) -> None:
        table = Table(title=f"Round {round_no}: {len(batch)} questions from {len(batch)} users", title_justify="left")
        table.add_column("question", max_width=38)
        table.add_column("variant")
        table.add_column("answer", max_width=60)
        table.add_column("user", justify="center")
        for a in batch:
            mark = "[green]👍[/]" if a.thumbs_up else ("[red]👎[/]" if a.thumbs_up is False else f"HTTP {a.status}")
            table.add_row(a.question.prompt, a.variant + (" (cached)" if a.cached else ""), a.text, mark)
        self.console.print(table)

    def _print_metrics(self, model: str, text: str) -> None:
        figures = window_figures(parse_router_metrics(text, model), None)
        extra = _counters(text, model)
        table = Table(title="Per-variant metrics from the router's /metrics", title_justify="left")
        for col in ("variant", "requests", "error rate", "p95 latency", "feedback", "cache hits", "tokens out"):
            table.add_column(col, justify="right")
        for variant, f in sorted(figures.items()):
            table.add_row(
                variant, f"{f.requests:.0f}", _fmt(f.error_rate), _fmt(f.p95_latency_seconds, "s"),
                f"{_fmt(f.feedback_mean)} ({f.feedback_count:.0f})",
                f"{extra.get((variant, 'hit'), 0):.0f}", f"{extra.get((variant, 'completion'), 0):.0f}",
            )
            self.summary.setdefault("metrics", {})[variant] = {
                "requests": f.requests, "errorRate": f.error_rate, "p95LatencySeconds": f.p95_latency_seconds,
                "feedbackMean": f.feedback_mean, "feedbackCount": f.feedback_count,
            }
        self.console.print(table)

    def _print_decision(self, outcome) -> None:
        table = Table(title=f"Canary decision: {outcome.action.value}", title_justify="left")
        for col in ("metric", "stable", "canary", "limit", "passed"):
            table.add_column(col)
        for r in outcome.state.analysis or (outcome.verdict.results if outcome.verdict else []):
            table.add_row(r.metric, _fmt(r.stable), _fmt(r.canary), _fmt(r.limit),
                          {True: "yes", False: "NO", None: "no data"}[r.passed])
        self.console.print(table)
        self.console.print(outcome.reason)

    # -- 6 -------------------------------------------------------------------------------------
    def wait_for_ctrl_c(self) -> None:
        assert self.stack is not None
        self.step(6, "The chatbot is live")
        self.console.print(f"endpoint: {self.stack.endpoint}  (Ctrl-C stops everything)\n")
        self.console.print(
            f"curl -s {self.stack.endpoint}/chat/completions -H 'content-type: application/json' "
            "-H 'x-user-id: alice' \\\n  -d '{\"model\": \"support-bot\", \"messages\": [{\"role\": \"user\", "
            "\"content\": \"What do your plans cost?\"}]}' -i"
        )
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        while not stop["now"]:
            for proc in [*self.stack.processes, *([self.vllm] if self.vllm else [])]:
                if proc.exited() is not None:
                    raise DemoError(f"{proc.name} exited with code {proc.exited()}; end of {proc.log_path}:\n"
                                    f"{proc.tail()}")
            time.sleep(1)

    def close(self) -> None:
        if self.stack is not None:
            self.stack.stop()
            self.stack = None
        if self.vllm is not None:  # after the router and adapter sync, as the stack stops its own
            self.vllm.stop()
            self.vllm = None
        if self.summary.get("steps"):
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "demo-summary.json").write_text(json.dumps(self.summary, indent=2, default=str) + "\n")


def run_demo(options: DemoOptions, console: Console | None = None) -> dict:
    """Run every step; returns the summary also written to <out>/demo-summary.json."""
    demo = Demo(options, console)
    try:
        check_disk(demo.out)
        if options.port:
            check_port(options.port)
    except PreflightError as exc:
        raise DemoError(str(exc)) from exc
    try:
        demo.launch_vllm()
        demo.validate()
        demo.train()
        cbd, table, routing = demo.serve()
        asyncio.run(demo.talk(cbd, table, routing))
        if options.serve:
            demo.wait_for_ctrl_c()
    finally:
        demo.close()
    return demo.summary


# -- helpers -----------------------------------------------------------------------------------
def _yaml(path: Path) -> dict:
    import yaml

    data = yaml.safe_load(path.read_text())
    data.pop("status", None)
    return data


def _fmt(value, unit: str = "") -> str:
    return "–" if value is None else f"{value:.3f}{unit}"


async def _metrics_text(admin_url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{admin_url}/metrics")
        resp.raise_for_status()
        return resp.text


def _counters(text: str, model: str) -> dict[tuple[str, str], float]:
    """Cache hits and completion tokens per variant, from the router's exposition."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("model") != model:
                continue
            if s.name == rm.CACHE and s.labels.get("result") == "hit":
                out[(s.labels["variant"], "hit")] = out.get((s.labels["variant"], "hit"), 0) + s.value
            elif s.name == rm.TOKENS and s.labels.get("kind") == "completion":
                key = (s.labels["variant"], "completion")
                out[key] = out.get(key, 0) + s.value
    return out


async def _reloads(admin_url: str) -> float:
    """How many routing tables the router has loaded so far."""
    total = 0.0
    for family in text_string_to_metric_families(await _metrics_text(admin_url)):
        for s in family.samples:
            if s.name == rm.ROUTING_TABLE_RELOADS and s.labels.get("result") == "ok":
                total += s.value
    return total


async def _wait_for_reload(admin_url: str, before: float, timeout: float = 30) -> None:
    """Wait until the router has loaded the routing table written after `before` was read."""
    deadline = time.monotonic() + timeout
    while await _reloads(admin_url) <= before:
        if time.monotonic() > deadline:
            raise DemoError(f"the router did not reload routing.yaml within {timeout:.0f} s")
        await asyncio.sleep(0.25)
