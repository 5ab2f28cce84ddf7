"""A run's dataset stage (checks, split, augmentation) in a process of its own.

The checks load their own models (a sentence encoder, a moderation classifier). Unloaded after the
checks in the training process, about 580 MiB of theirs stayed resident all the same (imports and
the allocator's caches: 1,290 MiB before training instead of 706), and every training step's memory
came on top of it. In a spawned child that memory goes back to the system when the child exits.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from loraplane.api.finetunejob import FineTuneJob
from loraplane.api.states import Reason

from .errors import BadInput, DatasetInvalid
from .model_source import ResolvedModel


def prepare_dataset(job: FineTuneJob, workdir: Path, base_dir: str | None, model: ResolvedModel):
    """`dataset.prepare` for the job in a child process, its token counts by the base model's tokenizer.

    The data problems go into the report as in one process; an unusable source or endpoint raises
    the trainer's bad-input errors, naming the spec field.
    """
    from ..dataset import ModerationError, SourceError, SyntheticError

    # spawn, not fork: the parent has torch's thread pools and the tokenizers' threads started.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as child:
        future = child.submit(_prepare, job.spec, workdir / "dataset", base_dir, str(model.path), model.load_kwargs())
        try:
            return future.result()
        except SourceError as exc:
            raise DatasetInvalid(f"spec.dataset: {exc}") from exc
        except SyntheticError as exc:
            raise BadInput(f"spec.augmentation.synthetic: {exc}", reason=Reason.AUGMENTATION_FAILED) from exc
        except ModerationError as exc:  # its message names spec field dataset.checks.moderation
            raise DatasetInvalid(f"spec.{exc}") from exc


def _prepare(spec: Any, workdir: Path, base_dir: str | None, tokenizer_dir: str, load_kwargs: dict):
    """In the child: the trainer's logging and thread count, the tokenizer, then the dataset stage."""
    from transformers import AutoTokenizer

    from ..dataset import prepare
    from .logs import setup_logging
    from .precision import configure_threads

    setup_logging()
    configure_threads()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, **load_kwargs)
    return prepare(spec, workdir, base_dir=Path(base_dir) if base_dir else None, tokenizer=tokenizer)
