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
    # the sweep crosses the boundary: the smallest limits fail, the largest answer
    assert outcomes[LIMITS_MB[0]] == "MemoryException"
    assert outcomes[LIMITS_MB[-1]] == "answered", outcomes
