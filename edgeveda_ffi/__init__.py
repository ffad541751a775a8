"""edgeveda-ffi: the Python binding of the Edge Veda on-device LLM engine.

    from edgeveda_ffi import EdgeVeda
    with EdgeVeda("model.gguf") as llm:
        print(llm.generate("The capital of France is", max_tokens=16, temperature=0).text)

The package has three parts: ``engine`` (the model in memory, over the raw
binding ``engine.bindings``), ``models`` (the model store and its fetchers)
and ``cli`` (the ``edgeveda`` command). The names below are the public API.
The engine names (EdgeVeda, TokenStream, ChatSession) need the compiled
extension and are imported on first use, so the errors, types and the model
manager work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._lazy import lazy_names
from ._version import HEADER_VERSION, __version__
from .engine import (
    CPU_EXTRA_BUFFERS_ENV,
    CPU_VARIANT_ENV,
    JSON_OBJECT_GBNF,
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
    cpu_extra_buffers_from_env,
    response_format_grammar,
    schema_to_gbnf,
)
from .errors import (
    CONTEXT_LENGTH_EXCEEDED,
    ChecksumException,
    ConfigurationException,
    DownloadCancelledException,
    DownloadException,
    EdgeVedaException,
    EdgeVedaGenericException,
    EngineClosedException,
    FailureReason,
    GenerationException,
    InitializationException,
    MemoryException,
    ModelLoadException,
    ModelValidationException,
    NativeErrorCode,
)

if TYPE_CHECKING:  # the lazy names below, for type checkers
    from .engine import (
        AsyncTokenStream as AsyncTokenStream,
        Backend as Backend,
        ChatSession as ChatSession,
        Config as Config,
        CpuVariant as CpuVariant,
        EdgeVeda as EdgeVeda,
        GenerationParams as GenerationParams,
        StreamPiece as StreamPiece,
        TokenStream as TokenStream,
        cpu_variant as cpu_variant,
        cpu_variants as cpu_variants,
        native_info as native_info,
    )
    from .models import (
        DEFAULT_MODEL_ID as DEFAULT_MODEL_ID,
        KNOWN_MODELS as KNOWN_MODELS,
        CancelToken as CancelToken,
        DownloadProgress as DownloadProgress,
        ModelManager as ModelManager,
        ModelSpec as ModelSpec,
        VerifyReport as VerifyReport,
    )

_LAZY = {
    "Backend": "engine",
    "Config": "engine",
    "GenerationParams": "engine",
    "EdgeVeda": "engine",
    "TokenStream": "engine",
    "AsyncTokenStream": "engine",
    "StreamPiece": "engine",
    "ChatSession": "engine",
    "native_info": "engine",
    "CpuVariant": "engine",
    "cpu_variant": "engine",
    "cpu_variants": "engine",
    "ModelManager": "models",
    "CancelToken": "models",
    "DownloadProgress": "models",
    "ModelSpec": "models",
    "DEFAULT_MODEL_ID": "models",
    "KNOWN_MODELS": "models",
    "VerifyReport": "models",
}

__all__ = [
    "__version__",
    "HEADER_VERSION",
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
    "ChecksumException",
    "ConfigurationException",
    "CONTEXT_LENGTH_EXCEEDED",
    "DownloadCancelledException",
    "DownloadException",
    "EdgeVedaException",
    "EdgeVedaGenericException",
    "EngineClosedException",
    "FailureReason",
    "GenerationException",
    "InitializationException",
    "MemoryException",
    "ModelLoadException",
    "ModelValidationException",
    "NativeErrorCode",
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
    "ModelManager",
    "CancelToken",
    "DownloadProgress",
    "ModelSpec",
    "DEFAULT_MODEL_ID",
    "KNOWN_MODELS",
    "VerifyReport",
]


_lazy_getattr, __dir__ = lazy_names(__name__, globals(), _LAZY)


def __getattr__(name: str) -> Any:
    if name == "CancelledException":  # deprecated; warns
        from . import errors

        return errors.__getattr__(name)
    return _lazy_getattr(name)
