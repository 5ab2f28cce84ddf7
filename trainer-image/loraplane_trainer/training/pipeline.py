"""One training run of a FineTuneJob: load -> dataset -> train -> evaluate -> publish.

Everything the operator needs to know is written to the run's progress.json;
the exit code tells the Job controller whether a retry can help.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from loraplane import exitcodes
from loraplane.api.finetunejob import FineTuneJob
from loraplane.storage import RunLayout, read_progress
from loraplane.storage.publish import PublishedAdapter, find_published, publish_adapter
from loraplane.storage.uris import filesystem, join

from . import distributed, evaluation, report, safety
from .chat import read_chat_jsonl, tokenize_all
from .checkpoints import CheckpointStore
from .cost import GpuClock, estimated_cost
from .errors import BadInput, DatasetInvalid, TrainerError
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
    # On a GPU the frozen weights are stored in the compute precision (a 7B model: 14 GB, not 28; what the
    # plan predicts); peft keeps the LoRA weights fp32. On a CPU they stay fp32 under autocast.
    weights = precision.autocast_dtype if precision.device == "cuda" and precision.autocast_dtype else torch.float32
    kwargs: dict[str, Any] = {**ref.load_kwargs(), "dtype": weights}
    if quantization == "4bit":  # only reached on CUDA (check_quantization refuses it elsewhere)
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=precision.autocast_dtype or torch.bfloat16)
        kwargs["device_map"] = {"": torch.cuda.current_device()}  # this rank's GPU (0 in one process)
    model = AutoModelForCausalLM.from_pretrained(ref.path, **kwargs)
    if quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
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


def _prepare_dataset(job: FineTuneJob, workdir: Path, base_dir: str | None, tokenizer):
    from ..dataset import SourceError, SyntheticError, prepare

    try:
        return prepare(job.spec, workdir / "dataset", base_dir=Path(base_dir) if base_dir else None,
                       tokenizer=tokenizer)
    except SourceError as exc:
        raise DatasetInvalid(f"spec.dataset: {exc}") from exc
    except SyntheticError as exc:
        raise BadInput(f"spec.augmentation.synthetic: {exc}", reason="AugmentationFailed") from exc


def _evaluate(model, tokenizer, val_records, val_examples, regression_examples, precision, spec, pad_id,
              probes) -> dict:
    ev = spec.evaluation
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
        phase="Succeeded" if accepted else "Failed",
        reason=None if accepted else "QualityGateFailed",
        message=f"published {adapter.version} ({m.verdict})" + (f": {m.reason}" if m.reason else ""),
        metrics=metrics,
        adapter={"version": adapter.version, "uri": adapter.uri, "sha256": adapter.sha256, "verdict": m.verdict,
                 "reason": m.reason},
        gpu_seconds=gpu_seconds,
    )
    write_atomic(layout.result, json.dumps(
        {"version": adapter.version, "uri": adapter.uri, "sha256": adapter.sha256, "verdict": m.verdict,
         "reason": m.reason, "metrics": metrics, "gpuSeconds": gpu_seconds}, indent=2).encode())
    log.info("%s %s: %s%s", "accepted" if accepted else "REJECTED", adapter.version, adapter.uri,
             f" ({m.reason})" if m.reason else "")
    return exitcodes.OK if accepted else exitcodes.QUALITY_GATE_FAILED


def run_job(job: FineTuneJob, run_id: str, *, base_dir: str | None = None, workdir: Path | None = None) -> int:
    """Run one FineTuneJob training run end to end; returns the process exit code."""
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
        return _run(job, run_id, layout, progress, workdir, base_dir, dist)
    except Preempted as exc:
        log.warning("%s", exc)
        progress.update(force=True, message=str(exc))
        raise
    except TrainerError as exc:
        log.error("%s: %s", exc.reason, exc)
        progress.update(force=True, phase="Failed", reason=exc.reason, message=str(exc)[:4000])
        return exc.exit_code
    except BaseException as exc:
        # A crash the Job may retry: progress keeps its phase, the message says what happened.
        log.exception("run crashed; the Job may retry it and it resumes from the last checkpoint")
        progress.update(force=True, message=f"crashed: {type(exc).__name__}: {exc}"[:4000])
        raise
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(job: FineTuneJob, run_id: str, layout: RunLayout, progress: ProgressWriter, workdir: Path,
         base_dir: str | None, dist: distributed.Context = distributed.SINGLE) -> int:
    spec = job.spec
    progress.phase("Validating", "checking the base model and the dataset")
    precision = choose(spec.training.precision)
    threads = configure_threads()
    log.info("device %s, precision %s (%s), %d CPU threads", precision.device, precision.name, precision.why,
             threads)
    check_quantization(spec.lora.quantization, precision.device)
    ref = resolve(spec.base_model, token=os.environ.get("HF_TOKEN"))
    license_id = check_license(ref, spec.base_model.allowed_licenses)
    log.info("base model %s (%s), license %s", ref.name, ref.source, license_id or "unknown")
    model, tokenizer = _load_model(ref, precision, spec.lora.quantization)

    if dist.is_main:
        prepared = _prepare_dataset(job, workdir, base_dir, tokenizer)
        summary = prepared.report.status_summary()
        write_atomic(layout.dataset_report, Path(prepared.report_path).read_bytes())
        progress.update(force=True, dataset=summary)
        if prepared.report.has_errors:
            problems = "; ".join(f"{p.get('check')}: {p.get('message')}"
                                 for p in summary.get("topProblems", [])[:3])
            raise DatasetInvalid(f"the dataset failed its checks ({problems}); see {layout.dataset_report}")
        train_records = read_chat_jsonl(prepared.train_path)
        val_records = read_chat_jsonl(prepared.validation_path)
    # Several GPUs: rank 0 prepares the dataset (augmentation may not repeat exactly), the others take its split.
    train_records, val_records = distributed.share(dist, (train_records, val_records) if dist.is_main else None)

    max_tokens = spec.training.max_tokens
    train_examples = tokenize_all(tokenizer, train_records, max_tokens)
    val_examples = tokenize_all(tokenizer, val_records, max_tokens)
    regression = tokenize_all(tokenizer, evaluation.load_regression_set(spec.evaluation.regression_set_uri),
                              max_tokens)
    probes = safety.load(spec.evaluation.safety)
    if not train_examples or not val_examples:
        raise DatasetInvalid(f"no trainable examples: train {len(train_examples)}, validation {len(val_examples)}")
    pad_id = tokenizer.pad_token_id

    if dist.is_main:
        before = _read_json(join(layout.prefix, BEFORE_FILE))
        if before is None:
            progress.phase("Evaluating", "evaluating the base model")
            before = _evaluate(model, tokenizer, val_records, val_examples, regression, precision, spec, pad_id,
                               probes)
            write_atomic(join(layout.prefix, BEFORE_FILE), json.dumps(before).encode())
        log.info("base model: validation perplexity %.3f, exact match %.3f, regression perplexity %.3f",
                 before["perplexity"], before["exactMatch"], before["regressionPerplexity"])
    distributed.barrier(dist)  # the other ranks wait while rank 0 evaluates the base model

    from peft import get_peft_model

    from .loop import train
    from .lora import lora_config

    model = get_peft_model(model, lora_config(spec.lora, model.config.model_type))
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA r=%d alpha=%d on %s: %d trainable parameters (%.2f%%)", spec.lora.r, spec.lora.alpha,
             sorted(model.peft_config["default"].target_modules), trainable, 100 * trainable / total)
    progress.phase("Training")
    clock = GpuClock()
    result = train(model, train_examples, val_examples, spec.training, precision,
                   store=CheckpointStore(layout.checkpoints), progress=progress, clock=clock, pad_id=pad_id,
                   dist=dist)
    if not dist.is_main:  # rank 0 alone evaluates and publishes
        log.info("rank %d of %d: trained %d steps on its share of the examples", dist.rank, dist.world_size,
                 result.steps - (result.resumed_from or 0))
        return exitcodes.OK

    progress.phase("Evaluating", "evaluating the adapter")
    after = _evaluate(model, tokenizer, val_records, val_examples, regression, precision, spec, pad_id, probes)
    metrics = {
        "trainLoss": result.train_loss,
        "evalLoss": result.best_eval_loss,
        "perplexityBefore": before["perplexity"],
        "perplexityAfter": after["perplexity"],
        "exactMatchBefore": before["exactMatch"],
        "exactMatchAfter": after["exactMatch"],
        "regressionPerplexityBefore": before["regressionPerplexity"],
        "regressionPerplexityAfter": after["regressionPerplexity"],
    }
    if after.get("harmfulCompliance") is not None and before.get("harmfulCompliance") is not None:
        metrics["harmfulComplianceBefore"] = before["harmfulCompliance"]
        metrics["harmfulComplianceAfter"] = after["harmfulCompliance"]
        log.info("safety probes: harmful-request compliance %.2f -> %.2f", before["harmfulCompliance"],
                 after["harmfulCompliance"])
    log.info("adapter: validation perplexity %.3f -> %.3f, exact match %.3f -> %.3f, regression perplexity "
             "%.3f -> %.3f", before["perplexity"], after["perplexity"], before["exactMatch"], after["exactMatch"],
             before["regressionPerplexity"], after["regressionPerplexity"])
    failed = evaluation.check_gates(spec.evaluation.gates, metrics)
    verdict = "rejected" if failed else "accepted"
    reason = "; ".join(failed) or None

    progress.phase("Publishing", f"publishing the adapter ({verdict})", metrics=metrics)
    gpu_seconds = round(clock.gpu_seconds, 1)
    out = workdir / "adapter"
    shutil.rmtree(out, ignore_errors=True)
    model.peft_config["default"].base_model_name_or_path = ref.name
    model.save_pretrained(out, save_embedding_layers=False)  # LoRA only: embeddings are not trained
    shutil.copy(prepared.report_path, out / "dataset-report.json")
    report.write_loss_curve(out / "loss_curve.png", result.history, result.evals,
                            f"{job.metadata.name} ({run_id})")
    cost = estimated_cost(gpu_seconds, spec.resources.price_per_gpu_hour)
    hyper = {
        "r": spec.lora.r, "alpha": spec.lora.alpha, "dropout": spec.lora.dropout,
        "targetModules": ", ".join(sorted(model.peft_config["default"].target_modules)),
        "learningRate": spec.training.learning_rate, "batchSize": spec.training.batch_size,
        "gradientAccumulation": spec.training.gradient_accumulation, "epochs": spec.training.epochs,
        "steps": f"{result.steps} of {result.total_steps}" + (" (early stop)" if result.stopped_early else ""),
        "scheduler": spec.training.scheduler, "warmupRatio": spec.training.warmup_ratio,
        "maxTokens": spec.training.max_tokens, "packing": spec.training.packing, "precision": precision.name,
        "seed": spec.training.seed,
    }
    lineage = {
        "job": f"{job.metadata.namespace or 'default'}/{job.metadata.name}", "uid": job.metadata.uid,
        "generation": job.metadata.generation, "run": run_id, "dataset hash": summary.get("hash"),
        "base model source": ref.source, "code": code_version(), "device": precision.device,
        "GPU-seconds": gpu_seconds, "estimated cost": cost,
    }
    report.write_metrics(out / "metrics.json", metrics, {
        "verdict": verdict, "reason": reason, "gpuSeconds": gpu_seconds, "estimatedCost": cost,
        "tokensPerSecond": result.tokens_per_second, "steps": result.steps, "history": result.history,
        "evals": result.evals, "samples": after["samples"][:20],
        "safety": {"before": before.get("safety"), "after": after.get("safety")}})
    samples = [{"question": s["question"][:200], "reference": r["reference"], "before": s["answer"],
                "after": r["answer"]}
               for s, r in zip(before["samples"], after["samples"], strict=False)][:SAMPLES_IN_CARD]
    (out / "README.md").write_text(report.model_card(
        job={"name": job.metadata.name, "namespace": job.metadata.namespace}, base_model=ref.name,
        license=license_id, verdict=verdict, reason=reason, metrics=metrics, dataset=summary,
        hyperparameters=hyper, lineage=lineage, samples=samples,
        safety={"before": before.get("safety"), "after": after.get("safety")}))
    adapter = publish_adapter(
        out, spec.output.uri, job.metadata.name, run_id=run_id, verdict=verdict, reason=reason,
        base_model=ref.name, namespace=job.metadata.namespace, uid=job.metadata.uid,
        generation=job.metadata.generation, lora_rank=spec.lora.r, dataset_hash=summary.get("hash"),
        metrics=metrics)
    return _finish(progress, layout, adapter, metrics, gpu_seconds)
