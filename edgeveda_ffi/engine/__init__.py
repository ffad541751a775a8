"""The engine: one loaded model (:class:`EdgeVeda`), its streams, chat and
callbacks, over the raw binding of ``edge_veda.h`` (:mod:`.bindings`).

``results`` is pure Python; everything else needs the compiled extension
(``config`` reads its defaults from the core) and is imported on first use,
so that importing the result types never loads the native library.
"""

from __future__ import annotations

from typing import Any

from .environment import CPU_EXTRA_BUFFERS_ENV, cpu_extra_buffers_from_env
from .results import (
    EmbeddingResult,
    FinishReason,
    GenerateResult,
    GenerationStats,
    MemoryPressureEvent,
    MemoryStats,
    ModelInfo,
    TokenInfo,
)

_LAZY = {
    "Backend": "config",
    "Config": "config",
    "GenerationParams": "config",
    "EdgeVeda": "llm",
    "TokenStream": "streams",
    "AsyncTokenStream": "streams",
    "StreamPiece": "streams",
    "ChatSession": "chat",
    "native_info": "info",
}

__all__ = [
    "CPU_EXTRA_BUFFERS_ENV",
    "cpu_extra_buffers_from_env",
    "EmbeddingResult",
    "FinishReason",
    "GenerateResult",
    "GenerationStats",
    "MemoryPressureEvent",
    "MemoryStats",
    "ModelInfo",
    "TokenInfo",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
