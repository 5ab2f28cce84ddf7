"""The API key of an OpenAI-compatible endpoint the dataset stage calls (augmentations, moderation)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def from_secrets_or_env(ref: Any, secrets: Mapping[str, str] | None, env: str) -> str | None:
    """From the secrets map ("name/key") when it holds `ref`; in the pod, from the variable `env`."""
    if ref is not None and secrets and f"{ref.name}/{ref.key}" in secrets:
        return secrets[f"{ref.name}/{ref.key}"]
    return os.environ.get(env)
