"""Running out of memory is an error, never an abort.

`edgeveda generate` runs in child processes under address-space limits from 150 to 400 MB in
10 MB steps (``ulimit -v``, a device short of memory). At each it either answers (exit 0) or
exits 1 with one line naming ``MemoryException``; it never dies of a signal, never aborts
(ggml's allocation assertion, exit 134), and no llama.cpp log line reaches stderr.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

pytestmark = pytest.mark.smollm2

LIMITS_MB = list(range(150, 401, 10))


def _limit_address_space(mb: int) -> Callable[[], None]:
    def apply() -> None:
        limit = mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def _generate_under(mb: int, model: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeveda_ffi",
            "generate",
            "--model",
            str(model),
            "--threads",
            "2",
            "--ctx-size",
            "256",
            "-n",
            "8",
            "-t",
            "0",
            "What is the capital of France?",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        preexec_fn=_limit_address_space(mb),
    )


@pytest.mark.slow
def test_generate_under_address_space_limits(smollm2_path: Path) -> None:
    outcomes: dict[int, str] = {}
    for mb in LIMITS_MB:
        proc = _generate_under(mb, smollm2_path)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        where = f"at {mb} MB: exit {proc.returncode}, stderr {proc.stderr[-1500:]!r}"
        assert proc.returncode >= 0, f"killed by signal {-proc.returncode} {where}"
        assert proc.returncode in (0, 1), where
        if proc.returncode == 0:
            assert proc.stdout.strip(), where
            assert not lines, f"stderr not empty {where}"
            outcomes[mb] = "answered"
        else:
            assert len(lines) == 1, f"not one line {where}"
            assert "MemoryException" in lines[0], where
            outcomes[mb] = "MemoryException"
    print("outcomes:", outcomes)
    # the sweep crosses the boundary: the smallest limits fail, larger ones answer. Where
    # exactly moves with the machine's load: threads that meet in malloc get arenas of their
    # own (64 MiB of address space each), so a limit near the edge may go either way.
    assert outcomes[LIMITS_MB[0]] == "MemoryException"
    assert "answered" in outcomes.values(), outcomes


_ROOM_FOR_NO_THREAD = r"""
import resource, sys
from edgeveda_ffi import EdgeVeda, MemoryException

def mapped():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))

hard = resource.getrlimit(resource.RLIMIT_AS)[1]
with EdgeVeda(sys.argv[1], num_threads=2, context_size=256) as llm:
    if sys.argv[2] == "openmp":
        llm.last_stats  # starts the Python worker thread (the generate call's), computes nothing
    # Loaded; ggml has not computed yet, so libgomp has not started its worker thread.
    # Leave 4 MiB: enough for the decode's small allocations, not for a thread's stack.
    resource.setrlimit(resource.RLIMIT_AS, (mapped() + (4 << 20), hard))
    try:
        llm.generate("The capital of France is", max_tokens=4, temperature=0)
        print("answered under the limit")
    except MemoryException as exc:
        print("MemoryException:", exc)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    print("then:", llm.generate("The capital of France is", max_tokens=8, temperature=0).text)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
@pytest.mark.parametrize(
    "which, says",
    [
        # libgomp exits the process ("Thread creation failed") when it cannot start a worker
        # thread: the core maps the workers' stacks first and reports OUT_OF_MEMORY instead
        ("openmp", "compute threads need"),
        # Python's "can't start new thread" for the engine's own worker thread
        ("python", "cannot start the engine's worker thread"),
    ],
)
def test_no_room_for_a_thread_is_a_memory_error_not_an_exit(
    smollm2_path: Path, which: str, says: str
) -> None:
    """No room for a thread's stack is a MemoryException, and the engine works again once
    there is room."""
    proc = subprocess.run(
        [sys.executable, "-c", _ROOM_FOR_NO_THREAD, str(smollm2_path), which],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="2"),
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "Thread creation failed" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("MemoryException:") and says in lines[0], lines
    assert lines[1].startswith("then:") and "Paris" in lines[1], lines
