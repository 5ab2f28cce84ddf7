"""Run the trainer and server programs as child processes, as the cluster runs them as pods."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from ..local.stack import die_with_parent

commands: list = []


def python_module(module: str, args: Sequence[str], *, python: str | None = None, env: dict | None = None) -> int:
    """Run `python -m module args...` in the foreground and return its exit code.

    The child inherits stdin/stdout/stderr, so progress bars and colours work.
    """
    full_env = {**os.environ, **(env or {})}
    try:
        return subprocess.call([python or sys.executable, "-m", module, *args], env=full_env,
                               preexec_fn=die_with_parent)
    except KeyboardInterrupt:
        return 130
