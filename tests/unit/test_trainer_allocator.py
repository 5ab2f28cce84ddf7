"""The trainer's malloc: tcmalloc preloaded by one re-execution of the entrypoint, and the trims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from loraplane_trainer.training import allocator
from loraplane_trainer.training.allocator import MALLOC_ENV, preloaded_environment

LIB = "libtcmalloc_minimal.so.4"


@pytest.mark.parametrize(("environ", "library", "preload"), [
    ({}, LIB, LIB),
    ({"LD_PRELOAD": "libfoo.so"}, LIB, f"{LIB} libfoo.so"),  # another preload is kept
    ({}, None, None),  # not installed: the system's malloc
    ({MALLOC_ENV: "system"}, LIB, None),  # asked for the system's malloc
    ({MALLOC_ENV: "System"}, LIB, None),
    ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, LIB, None),  # someone chose an allocator
    ({"LD_PRELOAD": f"/usr/lib/x86_64-linux-gnu/{LIB}"}, LIB, None),  # already re-executed
])
def test_the_entrypoint_re_executes_under_tcmalloc_only_when_it_should(environ, library, preload):
    env = preloaded_environment(environ, library)
    assert (env or {}).get("LD_PRELOAD") == preload
    if env is not None:
        assert {k: v for k, v in env.items() if k != "LD_PRELOAD"} == {k: v for k, v in environ.items()
                                                                       if k != "LD_PRELOAD"}


def test_a_command_run_inside_another_program_never_re_executes():
    allocator.run_under_tcmalloc("loraplane_trainer")  # pytest's process: returns instead of exec
    assert allocator.current() == "system"


def _entrypoint(tmp_path: Path, **env: str) -> str:
    job = tmp_path / "job.yaml"
    job.write_text("kind: FineTuneJob\n")  # no spec: refused right after the allocator is chosen
    proc = subprocess.run([sys.executable, "-m", "loraplane_trainer", "run", "--job", str(job)],
                          capture_output=True, text=True, timeout=120,
                          env={**{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, **env})
    assert proc.returncode != 0 and "not a FineTuneJob" in proc.stderr, proc.stderr
    return proc.stderr


def test_the_trainer_runs_under_tcmalloc_where_it_is_installed(tmp_path):
    assert allocator.tcmalloc_library(), "libtcmalloc-minimal4 is missing: run `make install`"
    assert "malloc: tcmalloc" in _entrypoint(tmp_path)
    assert "malloc: system" in _entrypoint(tmp_path, **{MALLOC_ENV: "system"})


def test_the_allocator_trims_on_glibc():
    assert allocator._libc() is not None  # this image's libc is glibc: the trims are real here
    allocator.release()  # returns the free pages; must not raise
