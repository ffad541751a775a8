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

from ._version import HEADER_VERSION, __version__
from .engine import (
    CPU_EXTRA_BUFFERS_ENV,
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
        EdgeVeda as EdgeVeda,
        GenerationParams as GenerationParams,
        StreamPiece as StreamPiece,
        TokenStream as TokenStream,
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
    "ModelManager",
    "CancelToken",
    "DownloadProgress",
    "ModelSpec",
    "DEFAULT_MODEL_ID",
    "KNOWN_MODELS",
    "VerifyReport",
]


def __getattr__(name: str) -> Any:
    if name == "CancelledException":  # deprecated; warns
        from . import errors

        return errors.__getattr__(name)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeveda_ffi' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
