"""The C allocator under the trainer: tcmalloc where the machine has it, and handing freed pages back.

A CPU training step allocates and frees gigabytes of activations whose shapes change every step.
glibc's malloc serves them slowly (fresh pages faulted in, arenas fragmented) and keeps much of
what is freed: the demo profile trained at 231 tokens/s and peaked at 2.9 GiB over 12 steps under
glibc, 276 tokens/s and 2.5 GiB under gperftools' tcmalloc (`libtcmalloc_minimal.so.4`, Debian's
and Ubuntu's `libtcmalloc-minimal4`; jemalloc gave the same speed with six times the page faults).
PyTorch's CPU performance guide recommends the same. A malloc is chosen before the process starts,
so `python -m loraplane_trainer run` re-executes itself once with tcmalloc in `LD_PRELOAD` when the
library is installed (the trainer image installs it) and nothing else was preloaded;
`LORAPLANE_MALLOC=system` keeps the system's malloc.

glibc's arenas are not capped. Capped at 2 (`M_ARENA_MAX`), torch's two OpenMP threads waited on
each other at every parallel region, about 13,000 voluntary context switches a second against
5,600 in a whole 12-step run without it, and the demo profile trained at 171 tokens/s instead of
214 with the same peak resident memory (12 steps through the entrypoint, one run each).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from collections.abc import Mapping
from enum import StrEnum
from functools import cache

TCMALLOC = "tcmalloc_minimal"  # the library's name for the linker: libtcmalloc_minimal.so.4
MALLOC_ENV = "LORAPLANE_MALLOC"  # "system": do not preload tcmalloc


class Malloc(StrEnum):
    """The allocator a process runs under."""

    TCMALLOC = "tcmalloc"
    SYSTEM = "system"


# A preload that already names one of these chose the process's allocator: leave it alone.
ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")


def preloaded_environment(environ: Mapping[str, str], library: str | None) -> dict[str, str] | None:
    """The environment to re-execute the trainer in so that it runs under tcmalloc, or None to go on as it is.

    None when the library is not installed, the user asked for the system's malloc, or an
    allocator is already preloaded (also what stops a second re-execution).
    """
    preload = environ.get("LD_PRELOAD", "")
    if library is None or environ.get(MALLOC_ENV, "").lower() == Malloc.SYSTEM or any(a in preload for a in ALLOCATORS):
        return None
    return {**environ, "LD_PRELOAD": f"{library} {preload}".strip()}


def run_under_tcmalloc(module: str) -> None:
    """Re-execute `python -m module <this process's arguments>` with tcmalloc preloaded; returns when it will not.

    Call it first thing, before threads start: exec replaces the process (same pid, so a parent
    waiting on it, its death signal and its exit code are unchanged). Only a process started as
    `python -m module` re-executes: a command invoked inside another program (a test) never does.
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or spec.name != f"{module}.__main__":
        return
    env = preloaded_environment(os.environ, tcmalloc_library())
    if env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)


def tcmalloc_library() -> str | None:
    """The installed tcmalloc's file name for `LD_PRELOAD`, or None."""
    return ctypes.util.find_library(TCMALLOC)


def current() -> Malloc:
    """The allocator this process runs under: tcmalloc when its extension API is loaded."""
    return Malloc.TCMALLOC if _tcmalloc_release() is not None else Malloc.SYSTEM


@cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


@cache
def _tcmalloc_release():
    """tcmalloc's `MallocExtension_ReleaseFreeMemory` when this process runs under it."""
    try:
        return ctypes.CDLL(None).MallocExtension_ReleaseFreeMemory
    except (OSError, AttributeError):
        return None


def release() -> None:
    """Between phases: collect Python garbage and hand the allocator's free pages back to the system."""
    gc.collect()
    if current() is Malloc.TCMALLOC:
        _tcmalloc_release()()
    else:
        trim()


def trim() -> None:
    """Between training steps: hand glibc's free pages back; nothing under tcmalloc, which reuses its own.

    Under glibc resident memory climbed by about 40 MiB a step of the demo profile (2.6 to 3.4 GiB
    over 20 steps) and a trim (about 0.17 s) brought it back near what the next step needs; the
    loop trims every few steps on a CPU. tcmalloc's peak stays flat without it, and releasing its
    free spans every 10 steps made the same 24 steps 267 tokens/s instead of 345 (same peak).
    """
    if current() is Malloc.TCMALLOC:
        return
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
