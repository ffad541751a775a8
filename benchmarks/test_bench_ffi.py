"""The cost of crossing the FFI: trivial native calls (target: <= 150 ns)."""

from __future__ import annotations

from typing import Any


def test_ev_version(benchmark: Any) -> None:
    from edgeveda_ffi.engine.bindings import lib

    assert benchmark(lib.ev_version) != 0


def test_ev_is_valid_null(benchmark: Any) -> None:
    from edgeveda_ffi.engine.bindings import ffi, lib

    assert benchmark(lib.ev_is_valid, ffi.NULL) is False


def test_ev_is_valid(benchmark: Any, engine: Any) -> None:
    from edgeveda_ffi.engine.bindings import lib

    assert benchmark(lib.ev_is_valid, engine._ctx) is True


def test_engine_is_valid_property(benchmark: Any, engine: Any) -> None:
    """The same call through the Python wrapper (``EdgeVeda.is_valid``)."""
    assert benchmark(lambda: engine.is_valid) is True


def test_memory_stats(benchmark: Any, engine: Any) -> None:
    """A lock-free struct-returning call plus the dataclass it becomes."""
    assert benchmark(engine.memory_stats).model_bytes > 0
