"""`loraplane plan <finetunejob.yaml>`: memory per GPU, the GPUs and strategy that fit, time and cost."""

from __future__ import annotations

from pathlib import Path

import click
import yaml
from rich.console import Console

from ..planning import ShapeUnknown, make_plan, model_shape
from ..planning.dataset import dataset_size
from ..planning.plan import ASSUMPTIONS
from ..planning.report import plan_table
from .job_file import read_finetunejob


def _prices(path: Path | None) -> dict[str, float]:
    if path is None:
        return {}
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not all(isinstance(v, int | float) for v in data.values()):
        raise click.ClickException(f"{path}: expected a mapping of GPU key to price per GPU-hour, e.g. 'h100: 3.78'")
    return {str(k): float(v) for k, v in data.items()}


@click.command("plan")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prices", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="YAML mapping of GPU key (rtx3090, l4, a100-40gb, a100-80gb, h100-pcie, h100, h200) to $/GPU-hour.")
def plan_command(job_file: Path, prices: Path | None) -> None:
    """Predict a FineTuneJob's peak memory per GPU, where it fits, how long it takes and what it costs."""
    _, job = read_finetunejob(job_file)
    base = job.spec.base_model
    try:
        shape = model_shape(base.name, base.uri, base.revision)
    except ShapeUnknown as exc:
        raise click.ClickException(f"{job_file}: spec.baseModel: {exc}") from exc
    plan = make_plan(job.spec, shape, dataset_size(job.spec), prices=_prices(prices))
    console = Console()
    if not console.is_terminal:  # a pipe or a file: the whole table, not squeezed to 80 columns
        console = Console(width=180)
    console.print(plan_table(plan))
    console.print(plan.summary())
    for note in (*plan.notes, *ASSUMPTIONS):
        console.print(f"  - {note}")
    if plan.fits is False:
        raise SystemExit(1)


commands = [plan_command]
