"""Model load: ``EdgeVeda(path)`` (ev_init: GGUF check, mmap, context) plus close."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List


def test_load(benchmark: Any, model_path: Path, quick: bool) -> None:
    from edgeveda_ffi import EdgeVeda

    open_engines: List[Any] = []

    def setup() -> None:
        while open_engines:
            open_engines.pop().close()

    def load() -> None:
        open_engines.append(EdgeVeda(model_path))

    try:
        EdgeVeda(model_path).close()  # warm the page cache
        benchmark.pedantic(load, setup=setup, rounds=1 if quick else 5, iterations=1)
    finally:
        setup()
