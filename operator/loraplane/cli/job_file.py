"""Reading a FineTuneJob YAML file for the CLI, with errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError

from ..api.finetunejob import FineTuneJob


def read_finetunejob(job_file: Path) -> tuple[dict[str, Any], FineTuneJob]:
    """The file's mapping (for callers that pass it on) and the validated FineTuneJob, status ignored."""
    try:
        data = yaml.safe_load(job_file.read_text())
        job = FineTuneJob.model_validate({k: v for k, v in data.items() if k != "status"})
    except (yaml.YAMLError, AttributeError) as exc:
        raise click.ClickException(f"{job_file}: not a YAML object: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        raise click.ClickException(f"{job_file}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    return data, job
