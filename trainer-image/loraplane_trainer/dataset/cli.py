"""`python -m loraplane_trainer validate|split|augment`: the dataset tools (and `loraplane` runs them)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import yaml
from loraplane.api import FineTuneJob, FineTuneJobSpec
from loraplane.api.finetunejob import AugmentationSpec, DatasetChecks, PromptVariations
from pydantic import ValidationError

from .augment.synthetic import SyntheticError
from .meaning.moderation import ModerationError
from .pipeline import check, prepare
from .report import DatasetReport
from .sources import SourceError, open_uri

EXIT_FAILED = 1


def load_job(path: Path) -> FineTuneJobSpec | None:
    """The spec of a FineTuneJob YAML file, or None when the file is not one."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        return None
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    job = next((d for d in docs if d.get("kind") == "FineTuneJob"), None)
    if job is None:
        raise click.UsageError(f"{path}: no FineTuneJob in this YAML file")
    try:
        return FineTuneJob.model_validate(job).spec
    except ValidationError as e:
        raise click.UsageError(f"{path}: invalid FineTuneJob:\n{e}") from e


def spec_for_file(path: str, **dataset: Any) -> FineTuneJobSpec:
    """A spec around a bare dataset file, for split/augment without a FineTuneJob."""
    return FineTuneJobSpec.model_validate({
        "baseModel": {"name": "unset"},
        "dataset": {"uri": path, **{k: v for k, v in dataset.items() if v is not None}},
        "output": {"uri": "unset"},
    })


def load_tokenizer(path: str | None) -> Any:
    if not path:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def finish(report: DatasetReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        report.render()
    sys.exit(EXIT_FAILED if report.has_errors else 0)


def _errors(fn):
    """Turn an unreadable source or an unusable endpoint into one clear line (exit code 1), not a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SourceError, SyntheticError, ModerationError) as e:
            raise click.ClickException(str(e)) from e

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


@click.command("validate")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the machine-readable JSON report.")
@click.option("--max-tokens", type=int, default=None, help="Longest example in tokens (default: the job's, or 1024).")
@click.option("--tokenizer", default=None, help="Hugging Face tokenizer directory or id, to count tokens exactly.")
@click.option("--format", "fmt", type=click.Choice(["auto", "prompt-completion", "chat", "mapped"]), default="auto",
              help="Record format of a bare dataset file.")
@_errors
def validate_command(source: Path, as_json: bool, max_tokens: int | None, tokenizer: str | None, fmt: str) -> None:
    """Check a dataset file, or the dataset of a FineTuneJob YAML; exit 1 on errors."""
    spec = load_job(source)
    tok = load_tokenizer(tokenizer)
    if spec is None:
        report = check(open_uri(str(source), fmt=fmt), DatasetChecks(), max_tokens=max_tokens or 1024, tokenizer=tok)
    else:
        if max_tokens:
            spec.training.max_tokens = max_tokens
        with tempfile.TemporaryDirectory() as tmp:
            report = prepare(spec, Path(tmp), base_dir=source.parent, tokenizer=tok, augment=False).report
    finish(report, as_json)


def _prepare(source: Path, out: Path, augment: bool, as_json: bool, **overrides: Any) -> None:
    spec = load_job(source)
    if spec is None:
        spec = spec_for_file(str(source.resolve()), **{k: v for k, v in overrides.items() if k != "variations"})
    else:
        for key in ("validation_split", "seed"):
            if overrides.get(key) is not None:
                setattr(spec.dataset, key, overrides[key])
    if augment and overrides.get("variations") is not None:
        spec.augmentation = spec.augmentation or AugmentationSpec()
        spec.augmentation.prompt_variations = PromptVariations(per_example=overrides["variations"])
    prepared = prepare(spec, out, base_dir=source.parent, augment=augment)
    if not as_json:
        click.echo(f"wrote {prepared.train_path}, {prepared.validation_path}, {prepared.report_path}")
    finish(prepared.report, as_json)


_common = [
    click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
    click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                 help="Directory for train.jsonl, validation.jsonl and dataset-report.json."),
    click.option("--validation-split", type=float, default=None, help="Override dataset.validationSplit."),
    click.option("--seed", type=int, default=None, help="Override dataset.seed."),
    click.option("--json", "as_json", is_flag=True, help="Print the JSON report."),
]


def _with_common(fn):
    for decorator in reversed(_common):
        fn = decorator(fn)
    return fn


@click.command("split")
@_with_common
@_errors
def split_command(source: Path, out: Path, validation_split: float | None, seed: int | None, as_json: bool) -> None:
    """Check and split a dataset (file or FineTuneJob YAML) into train.jsonl and validation.jsonl."""
    _prepare(source, out, False, as_json, validation_split=validation_split, seed=seed)


@click.command("augment")
@_with_common
@click.option("--variations", type=click.IntRange(0, 10), default=None,
              help="Prompt variations per training example (overrides augmentation.promptVariations).")
@_errors
def augment_command(source: Path, out: Path, validation_split: float | None, seed: int | None, as_json: bool,
                    variations: int | None) -> None:
    """Check, split and augment (train side only) a dataset: the files the trainer reads."""
    _prepare(source, out, True, as_json, validation_split=validation_split, seed=seed, variations=variations)


commands = [validate_command, split_command, augment_command]
