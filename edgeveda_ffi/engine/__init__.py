"""The engine: one loaded model (:class:`EdgeVeda`), its streams, chat and
callbacks, over the raw binding of ``edge_veda.h`` (:mod:`.bindings`).

``results`` is pure Python; everything else needs the compiled extension
(``config`` reads its defaults from the core) and is imported on first use,
so that importing the result types never loads the native library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from .environment import CPU_EXTRA_BUFFERS_ENV, CPU_VARIANT_ENV, cpu_extra_buffers_from_env
from .json_schema import JSON_OBJECT_GBNF, response_format_grammar, schema_to_gbnf
from .results import (
    EmbeddingResult,
    FinishReason,
    GenerateResult,
    GenerationStats,
    MemoryPressureEvent,
    MemoryStats,
    ModelInfo,
    TokenInfo,
    TokenLogprob,
    TopLogprob,
)

if TYPE_CHECKING:  # the lazy names below, for type checkers
    from .chat import ChatSession as ChatSession
    from .config import Backend as Backend, Config as Config, GenerationParams as GenerationParams
    from .info import (
        CpuVariant as CpuVariant,
        cpu_variant as cpu_variant,
        cpu_variants as cpu_variants,
        native_info as native_info,
    )
    from .llm import EdgeVeda as EdgeVeda
    from .streams import (
        AsyncTokenStream as AsyncTokenStream,
        StreamPiece as StreamPiece,
        TokenStream as TokenStream,
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
    "CpuVariant": "info",
    "cpu_variant": "info",
    "cpu_variants": "info",
}

__all__ = [
    "CPU_EXTRA_BUFFERS_ENV",
    "CPU_VARIANT_ENV",
    "cpu_extra_buffers_from_env",
    "JSON_OBJECT_GBNF",
    "response_format_grammar",
    "schema_to_gbnf",
    "EmbeddingResult",
    "FinishReason",
    "GenerateResult",
    "GenerationStats",
    "MemoryPressureEvent",
    "MemoryStats",
    "ModelInfo",
    "TokenInfo",
    "TokenLogprob",
    "TopLogprob",
    "Backend",
    "Config",
    "GenerationParams",
    "EdgeVeda",
    "TokenStream",
    "AsyncTokenStream",
    "StreamPiece",
    "ChatSession",
    "native_info",
    "CpuVariant",
    "cpu_variant",
    "cpu_variants",
]


__getattr__, __dir__ = lazy_names(__name__, globals(), _LAZY)
