"""The dataset stage: load, check, split and augment a FineTuneJob's data.

    from loraplane_trainer.dataset import prepare
    prepared = prepare(spec, workdir)       # train.jsonl, validation.jsonl, dataset-report.json
    if prepared.report.has_errors: exit(42)
"""

from .example import Example
from .pipeline import ModerationError, PreparedDataset, SyntheticError, check, prepare
from .report import DatasetReport
from .sources import SourceError, open_dataset, open_uri

__all__ = [
    "DatasetReport",
    "Example",
    "ModerationError",
    "PreparedDataset",
    "SourceError",
    "SyntheticError",
    "check",
    "open_dataset",
    "open_uri",
    "prepare",
]
