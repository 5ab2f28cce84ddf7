"""One training run of a FineTuneJob, in named stages (`_run` reads top to bottom):

    _check_base_model           Validating: device, precision, the base model's source and license
    _prepare_dataset_and_share  checks, split, augmentation on rank 0, in a child process, kept in the run
                                (a retried run takes its kept split again); every rank gets the split
                                (`--dataset-only` stops here)
    _load_weights               the base model's weights and tokenizer
    _tokenize
    _evaluate_base_model        Evaluating: the figures before (once per run)
    _train                      Training: LoRA, checkpointed to object storage
    _evaluate_adapter           Evaluating: the figures after; the quality gates judge them
    _write_adapter_directory    Publishing: adapter, loss curve, metrics, model card
    publish_adapter, _finish    the manifest last, then progress.json and result.json

Everything the operator needs to know is written to the run's progress.json;
the exit code tells the Job controller whether a retry can help.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from loraplane import exitcodes
from loraplane.api.finetunejob import FineTuneJob
from loraplane.api.states import Reason, RunPhase
from loraplane.storage import RunLayout, read_progress
from loraplane.storage.publish import PublishedAdapter, find_published, publish_adapter
from loraplane.storage.uris import filesystem, join

from . import allocator, distributed, evaluation, kept_split, report, safety, segment_attention
from .chat import read_chat_jsonl, tokenize_all
from .checkpoints import CheckpointStore
from .cost import GpuClock, estimated_cost
from .dataset_stage import prepare_dataset
from .errors import DatasetInvalid, TrainerError
from .logs import log
from .model_source import ResolvedModel, check_license, resolve
from .precision import Precision, check_quantization, choose, configure_threads
from .progress import ProgressWriter, write_atomic
from .stop_signal import Preempted

BEFORE_FILE = "evaluation-before.json"
SAMPLES_IN_CARD = 5


def code_version() -> str:
    try:
        version = metadata.version("loraplane")
    except metadata.PackageNotFoundError:
        version = "unknown"
    image = os.environ.get("LORAPLANE_IMAGE")
    return f"loraplane {version}" + (f" ({image})" if image else "")


def _load_model(ref: ResolvedModel, precision: Precision, quantization: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ref.path, **ref.load_kwargs())
    # The frozen weights are stored in the compute precision (a 7B model: 14 GB, not 28; what the plan
    # predicts); peft keeps the LoRA weights fp32.
    kwargs: dict[str, Any] = {**ref.load_kwargs(), "dtype": precision.weights_dtype}
    if quantization == "4bit":  # only reached on CUDA (check_quantization refuses it elsewhere)
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=precision.autocast_dtype or torch.bfloat16)
        kwargs["device_map"] = {"": torch.cuda.current_device()}  # this rank's GPU (0 in one process)
    model = AutoModelForCausalLM.from_pretrained(ref.path, **kwargs)
    if quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        from .lora import CHECKPOINTING_KWARGS

        model = prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs=CHECKPOINTING_KWARGS)
    else:
        model.to(precision.device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _read_json(uri: str) -> dict | None:
    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def _evaluate(model, tokenizer, val_records, val_examples, regression_examples, precision, spec, pad_id,
              probes, loss: float | None = None) -> dict:
    """The model's figures on the validation, regression and safety sets; `loss`: its validation loss, when
    the training loop measured it on these weights already."""
    ev = spec.evaluation
    if loss is None:
        loss = evaluation.mean_loss(model, val_examples, precision, pad_id=pad_id)
    em = evaluation.exact_match(model, tokenizer, val_records[: ev.max_examples], precision,
                                max_new_tokens=ev.max_new_tokens)
    reg = evaluation.mean_loss(model, regression_examples, precision, pad_id=pad_id)
    harmful = safety.evaluate(model, tokenizer, probes, ev.safety, precision)
    return {"loss": loss, "perplexity": evaluation.perplexity(loss), "exactMatch": em.score,
            "regressionPerplexity": evaluation.perplexity(reg), "samples": em.samples,
            "harmfulCompliance": harmful["share"] if harmful else None, "safety": harmful}


def _finish(progress: ProgressWriter, layout: RunLayout, adapter: PublishedAdapter, metrics: dict,
            gpu_seconds: float | None) -> int:
    m = adapter.manifest
    accepted = m.verdict == "accepted"
    progress.update(
        force=True,
        phase=RunPhase.SUCCEEDED if accepted else RunPhase.FAILED,
        reason=None if accepted else Reason.QUALITY_GATE_FAILED,
        message=f"published {adapter.version} ({m.verdict})" + (f": {m.reason}" if m.reason else ""),
        metrics=metrics,
        adapter=adapter.status(),
        gpu_seconds=gpu_seconds,
    )
    write_atomic(layout.result, json.dumps(
        {**adapter.status().to_wire(), "metrics": metrics, "gpuSeconds": gpu_seconds}, indent=2).encode())
    log.info("%s %s: %s%s", "accepted" if accepted else "REJECTED", adapter.version, adapter.uri,
             f" ({m.reason})" if m.reason else "")
    return exitcodes.OK if accepted else exitcodes.QUALITY_GATE_FAILED


def run_job(job: FineTuneJob, run_id: str, *, base_dir: str | None = None, workdir: Path | None = None,
            dataset_only: bool = False) -> int:
    """Run one FineTuneJob training run end to end (`dataset_only`: until its split is kept); returns the
    process exit code."""
    name = job.metadata.name
    spec = job.spec
    layout = RunLayout(spec.output.uri, name, run_id)
    dist = distributed.context()
    progress = ProgressWriter(layout.progress, run_id, writes=dist.is_main)
    own_workdir = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="loraplane-run-"))
    log.info("run %s of %s/%s -> %s", run_id, job.metadata.namespace or "default", name, layout.prefix)
    try:
        # A run that already published (killed after its manifest) reports that version again.
        done = find_published(spec.output.uri, name, run_id)
        if done is not None:
            log.info("run %s already published %s", run_id, done.version)
            if not dist.is_main:
                return exitcodes.OK
            last = read_progress(layout.progress)
            return _finish(progress, layout, done, done.manifest.metrics,
                           last.gpu_seconds if last else None)
        return _run(job, run_id, layout, progress, workdir, base_dir, dist, dataset_only)
    except Preempted as exc:
        log.warning("%s", exc)
        progress.update(force=True, message=str(exc))
        raise
    except TrainerError as exc:
        log.error("%s: %s", exc.reason, exc)
        progress.update(force=True, phase=RunPhase.FAILED, reason=exc.reason, message=str(exc)[:4000])
        return exc.exit_code
    except BaseException as exc:
        # A crash the Job may retry: progress keeps its phase, the message says what happened.
        log.exception("run crashed; the Job may retry it and it resumes from the last checkpoint")
        progress.update(force=True, message=f"crashed: {type(exc).__name__}: {exc}"[:4000])
        raise
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class _Run:
    """What the stages of one run hand each other, filled in top to bottom."""

    job: FineTuneJob
    run_id: str
    layout: RunLayout
    progress: ProgressWriter
    workdir: Path
    base_dir: str | None
    dist: distributed.Context
    precision: Precision | None = None
    ref: ResolvedModel | None = None
    license_id: str | None = None
    model: Any = None
    tokenizer: Any = None
    prepared: Any = None  # rank 0's prepared dataset (report, split files), unless the run's kept split was taken
    dataset_report: bytes = b""  # rank 0's dataset-report.json
    summary: dict = field(default_factory=dict)  # the dataset's status summary
    train_records: list = field(default_factory=list)
    val_records: list = field(default_factory=list)
    train_examples: list = field(default_factory=list)
    val_examples: list = field(default_factory=list)
    regression: list = field(default_factory=list)
    probes: Any = None  # the safety probes (evaluation.safety), when configured
    before: dict = field(default_factory=dict)  # the base model's figures
    result: Any = None  # the training loop's result
    after: dict = field(default_factory=dict)  # the adapter's figures
    clock: GpuClock | None = None  # started with training: GPU-seconds count training and what follows
    lora: dict | None = None  # under FSDP: the trained LoRA weights gathered from the ranks, for rank 0 to save

    @property
    def spec(self):
        return self.job.spec

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def evaluate(self, loss: float | None = None) -> dict:
        return _evaluate(distributed.forward_module(self.dist, self.model), self.tokenizer, self.val_records,
                         self.val_examples, self.regression, self.precision, self.spec, self.pad_id, self.probes, loss)


def _run(job: FineTuneJob, run_id: str, layout: RunLayout, progress: ProgressWriter, workdir: Path,
         base_dir: str | None, dist: distributed.Context = distributed.SINGLE, dataset_only: bool = False) -> int:
    """The stages of one run, in order; ranks other than 0 stop after training."""
    run = _Run(job, run_id, layout, progress, workdir, base_dir, dist)
    _check_base_model(run)
    _prepare_dataset_and_share(run)
    if dataset_only:
        return _dataset_only(run)
    _load_weights(run)
    _tokenize(run)
    _evaluate_base_model(run)
    _train(run)
    if not dist.is_main and not dist.sharded:  # rank 0 alone evaluates and publishes
        log.info("rank %d of %d: trained %d steps on its share of the examples", dist.rank, dist.world_size,
                 run.result.steps - (run.result.resumed_from or 0))
        return exitcodes.OK
    metrics = _evaluate_adapter(run)  # under FSDP on every rank: each forward pass needs them all
    if dist.sharded:
        run.lora = distributed.full_lora_parameters(run.model)
        if not dist.is_main:
            log.info("rank %d of %d: trained %d steps on its shard and took part in the evaluation", dist.rank,
                     dist.world_size, run.result.steps - (run.result.resumed_from or 0))
            return exitcodes.OK
    failed = evaluation.check_gates(run.spec.evaluation.gates, metrics)
    verdict, reason = ("rejected" if failed else "accepted"), ("; ".join(failed) or None)
    progress.phase(RunPhase.PUBLISHING, f"publishing the adapter ({verdict})", metrics=metrics)
    gpu_seconds = round(run.clock.gpu_seconds, 1)
    out = _write_adapter_directory(run, metrics, verdict, reason, gpu_seconds)
    adapter = publish_adapter(
        out, run.spec.output.uri, job.metadata.name, run_id=run_id, verdict=verdict, reason=reason,
        base_model=run.ref.name, namespace=job.metadata.namespace, uid=job.metadata.uid,
        generation=job.metadata.generation, lora_rank=run.spec.lora.r, dataset_hash=run.summary.get("hash"),
        metrics=metrics)
    return _finish(progress, layout, adapter, metrics, gpu_seconds)


def _check_base_model(run: _Run) -> None:
    """Validating: device and precision, quantization support, the base model's source and license."""
    spec = run.spec
    run.progress.phase(RunPhase.VALIDATING, "checking the base model and the dataset")
    run.precision = choose(spec.training.precision)
    threads = configure_threads()
    log.info("device %s, precision %s (%s), %d CPU threads", run.precision.device, run.precision.name,
             run.precision.why, threads)
    check_quantization(spec.lora.quantization, run.precision.device)
    run.ref = resolve(spec.base_model, token=os.environ.get("HF_TOKEN"))
    run.license_id = check_license(run.ref, spec.base_model.allowed_licenses)
    log.info("base model %s (%s), license %s", run.ref.name, run.ref.source, run.license_id or "unknown")


def _load_weights(run: _Run) -> None:
    """The base model's weights (after the dataset stage: its child process does not share them)."""
    run.model, run.tokenizer = _load_model(run.ref, run.precision, run.spec.lora.quantization)
    # On a CPU, packed rows attend example by example (segment_attention): SDPA's CPU kernels compute every
    # score of the row and were a quarter of a demo step. GPUs keep SDPA's fused kernels.
    if run.precision.device == "cpu" and segment_attention.use(run.model):
        log.info("attention: %s (packed examples attend block by block)", segment_attention.SEGMENT_ATTENTION)


def _prepare_dataset_and_share(run: _Run) -> None:
    """Rank 0 checks, splits and augments the dataset (augmentation may not repeat exactly) and keeps the
    split in the run, or takes the split the run kept before; the other ranks take rank 0's."""
    split = None
    if run.dist.is_main:
        kept = kept_split.take(run.layout, run.spec)
        if kept is not None:
            digest = str(kept.summary.get("hash", "?")).removeprefix("sha256:")[:12]
            log.info("dataset: the run's checked split, kept at %s: train %d, validation %d (dataset sha256 %s)",
                     kept.uri, len(kept.train), len(kept.validation), digest)
            run.summary, run.dataset_report = kept.summary, kept.report
            run.progress.update(force=True, dataset=run.summary)
            split = (kept.train, kept.validation)
        else:
            prepared = run.prepared = prepare_dataset(run.job, run.workdir, run.base_dir, run.ref)
            run.summary = prepared.report.status_summary()
            run.dataset_report = Path(prepared.report_path).read_bytes()
            write_atomic(run.layout.dataset_report, run.dataset_report)
            run.progress.update(force=True, dataset=run.summary)
            if prepared.report.has_errors:
                problems = "; ".join(f"{p.get('check')}: {p.get('message')}"
                                     for p in run.summary.get("topProblems", [])[:3])
                raise DatasetInvalid(f"the dataset failed its checks ({problems}); see {run.layout.dataset_report}")
            kept_split.keep(run.layout, run.spec, prepared.train_path, prepared.validation_path, run.summary)
            split = (read_chat_jsonl(prepared.train_path), read_chat_jsonl(prepared.validation_path))
    run.train_records, run.val_records = distributed.share(run.dist, split)


def _dataset_only(run: _Run) -> int:
    """`--dataset-only`: the split is kept in the run, which trains later under the same run id."""
    if run.dist.is_main:
        if run.prepared is not None:
            run.prepared.report.render()
        run.progress.update(force=True, message="dataset checked and split; training starts when the run is run "
                                                "again under the same run id")
    return exitcodes.OK


def _tokenize(run: _Run) -> None:
    max_tokens = run.spec.training.max_tokens
    run.train_examples = tokenize_all(run.tokenizer, run.train_records, max_tokens)
    run.val_examples = tokenize_all(run.tokenizer, run.val_records, max_tokens)
    run.regression = tokenize_all(
        run.tokenizer, evaluation.load_regression_set(run.spec.evaluation.regression_set_uri), max_tokens)
    run.probes = safety.load(run.spec.evaluation.safety)
    if not run.train_examples or not run.val_examples:
        raise DatasetInvalid(f"no trainable examples: train {len(run.train_examples)}, "
                             f"validation {len(run.val_examples)}")


def _evaluate_base_model(run: _Run) -> None:
    """Evaluating: the base model's figures, once per run (kept beside the checkpoints for a resumed run)."""
    if run.dist.is_main:
        saved = join(run.layout.prefix, BEFORE_FILE)
        run.before = _read_json(saved)
        if run.before is None:
            run.progress.phase(RunPhase.EVALUATING, "evaluating the base model")
            run.before = run.evaluate()
            write_atomic(saved, json.dumps(run.before).encode())
        log.info("base model: validation perplexity %.3f, exact match %.3f, regression perplexity %.3f",
                 run.before["perplexity"], run.before["exactMatch"], run.before["regressionPerplexity"])
    allocator.release()  # generation's caches and logits, freed but still resident
    # The other ranks wait while rank 0 evaluates the base model, and take its figures (FSDP evaluates the
    # adapter on every rank, against them).
    run.before = distributed.share(run.dist, run.before)


def _train(run: _Run) -> None:
    """Training: LoRA on the base model, checkpointed to object storage (a resumed run goes on from there)."""
    from .dropout import use_lane_mask_dropout
    from .loop import train
    from .lora import add_adapter, checkpoint_activations

    spec = run.spec
    run.model = add_adapter(run.model, spec.lora, spec.training.seed)
    if spec.training.gradient_checkpointing and spec.lora.quantization != "4bit":  # QLoRA's is on already
        checkpoint_activations(run.model)
        log.info("gradient checkpointing: each layer's activations are recomputed in backward")
    if run.precision.device == "cpu" and use_lane_mask_dropout(run.model):
        log.info("LoRA dropout %.2f with bulk-drawn masks (CPU)", spec.lora.dropout)
    trainable, total = run.model.get_nb_trainable_parameters()
    log.info("LoRA r=%d alpha=%d on %s: %d trainable parameters (%.2f%%)", spec.lora.r, spec.lora.alpha,
             sorted(run.model.peft_config["default"].target_modules), trainable, 100 * trainable / total)
    run.progress.phase(RunPhase.TRAINING)
    run.clock = GpuClock()
    run.result = train(run.model, run.train_examples, run.val_examples, spec.training, run.precision,
                       store=CheckpointStore(run.layout.checkpoints), progress=run.progress, clock=run.clock,
                       pad_id=run.pad_id, dist=run.dist)


def _evaluate_adapter(run: _Run) -> dict:
    """Evaluating: the adapter on the same sets; the figures FineTuneJob status shows (status.metrics)."""
    run.progress.phase(RunPhase.EVALUATING, "evaluating the adapter")
    allocator.release()  # training's activations, freed but still resident: generation would add to them
    before = run.before
    # The loop ends on its best weights, whose validation loss it measured (the same examples): not again.
    after = run.after = run.evaluate(loss=run.result.held_eval_loss)
    if after.get("harmfulCompliance") is not None and before.get("harmfulCompliance") is not None:
        log.info("safety probes: harmful-request compliance %.2f -> %.2f", before["harmfulCompliance"],
                 after["harmfulCompliance"])
    log.info("adapter: validation perplexity %.3f -> %.3f, exact match %.3f -> %.3f, regression perplexity "
             "%.3f -> %.3f", before["perplexity"], after["perplexity"], before["exactMatch"], after["exactMatch"],
             before["regressionPerplexity"], after["regressionPerplexity"])
    return {
        "trainLoss": run.result.train_loss,
        "evalLoss": run.result.best_eval_loss,
        "perplexityBefore": before["perplexity"],
        "perplexityAfter": after["perplexity"],
        "exactMatchBefore": before["exactMatch"],
        "exactMatchAfter": after["exactMatch"],
        "regressionPerplexityBefore": before["regressionPerplexity"],
        "regressionPerplexityAfter": after["regressionPerplexity"],
        **({"harmfulComplianceBefore": before["harmfulCompliance"], "harmfulComplianceAfter": after["harmfulCompliance"]}
           if after.get("harmfulCompliance") is not None and before.get("harmfulCompliance") is not None else {}),
    }


def _write_adapter_directory(run: _Run, metrics: dict, verdict: str, reason: str | None,
                             gpu_seconds: float) -> Path:
    """Publishing, first half: the adapter, dataset report, loss curve, metrics and model card in one directory."""
    job, spec, result, ref = run.job, run.spec, run.result, run.ref
    out = run.workdir / "adapter"
    shutil.rmtree(out, ignore_errors=True)
    run.model.peft_config["default"].base_model_name_or_path = ref.name
    # LoRA only: embeddings are not trained. Under FSDP the weights gathered from the ranks.
    run.model.save_pretrained(out, save_embedding_layers=False, **({"state_dict": run.lora} if run.lora else {}))
    (out / "dataset-report.json").write_bytes(run.dataset_report)
    report.write_loss_curve(out / "loss_curve.png", result.history, result.evals,
                            f"{job.metadata.name} ({run.run_id})")
    cost = estimated_cost(gpu_seconds, spec.resources.price_per_gpu_hour)
    hyper = {
        "r": spec.lora.r, "alpha": spec.lora.alpha, "dropout": spec.lora.dropout,
        "targetModules": ", ".join(sorted(run.model.peft_config["default"].target_modules)),
        "learningRate": spec.training.learning_rate, "batchSize": spec.training.batch_size,
        "gradientAccumulation": spec.training.gradient_accumulation, "epochs": spec.training.epochs,
        "steps": f"{result.steps} of {result.total_steps}" + (" (early stop)" if result.stopped_early else ""),
        "scheduler": spec.training.scheduler, "warmupRatio": spec.training.warmup_ratio,
        "maxTokens": spec.training.max_tokens, "packing": spec.training.packing, "precision": run.precision.name,
        "seed": spec.training.seed,
    }
    lineage = {
        "job": f"{job.metadata.namespace or 'default'}/{job.metadata.name}", "uid": job.metadata.uid,
        "generation": job.metadata.generation, "run": run.run_id, "dataset hash": run.summary.get("hash"),
        "base model source": ref.source, "code": code_version(), "device": run.precision.device,
        "GPU-seconds": gpu_seconds, "estimated cost": cost,
    }
    after = run.after
    report.write_metrics(out / "metrics.json", metrics, {
        "verdict": verdict, "reason": reason, "gpuSeconds": gpu_seconds, "estimatedCost": cost,
        "tokensPerSecond": result.tokens_per_second, "steps": result.steps, "history": result.history,
        "evals": result.evals, "samples": after["samples"][:evaluation.SAMPLES_KEPT],
        "safety": {"before": run.before.get("safety"), "after": after.get("safety")}})
    samples = [{"question": s["question"][:200], "reference": r["reference"], "before": s["answer"],
                "after": r["answer"]}
               for s, r in zip(run.before["samples"], after["samples"], strict=False)][:SAMPLES_IN_CARD]
    (out / "README.md").write_text(report.model_card(
        job={"name": job.metadata.name, "namespace": job.metadata.namespace}, base_model=ref.name,
        license=run.license_id, verdict=verdict, reason=reason, metrics=metrics, dataset=run.summary,
        hyperparameters=hyper, lineage=lineage, samples=samples,
        safety={"before": run.before.get("safety"), "after": after.get("safety")}))
    return out
