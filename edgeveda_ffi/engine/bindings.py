"""The raw binding of ``edge_veda.h``, in PyNaCl's shape: the checked
extension (``ffi``, ``lib``) and one typed function per C function.

Each function takes and returns Python values (a context or stream handle is
the cffi pointer), frees what the C side allocated, and turns a non-zero
``ev_error_t`` into the mapped exception with the calling thread's native
message (:func:`check_native`). Nothing here holds state: lifetimes, locks,
threads and callbacks' exceptions are the engine's (``llm.py``, ``streams.py``).
A port reads this module beside the header, function for function.

Importing it fails with a clear ImportError when the extension is missing or
was built from another version of ``edge_veda.h`` (a stale build; see
``extension.py``). ``marshal.py`` converts the C structs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigurationException, GenerationException, NativeErrorCode
from .environment import CPU_VARIANT_ENV
from .extension import c_str, check_native, ffi, last_error, lib
from .marshal import NativeParams, encode, logprobs_from, parse_buffer_types, stats_from
from .results import (
    EmbeddingResult,
    GenerationStats,
    MemoryStats,
    ModelInfo,
    TokenInfo,
    TokenLogprob,
)

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "ffi",
    "lib",
    "c_str",
    "last_error",
    "check_native",
    "encode",
    "NativeParams",
    # one per C function
    "version",
    "llama_version",
    "system_info",
    "cpu_backend_load",
    "cpu_variant",
    "cpu_variants",
    "cpu_variant_score",
    "error_string",
    "detect_backend",
    "is_backend_available",
    "backend_name",
    "set_verbose",
    "config_defaults",
    "generation_params_defaults",
    "init",
    "free",
    "is_valid",
    "generate",
    "generate_cancel",
    "get_last_generation_stats",
    "get_last_logprobs",
    "generate_stream",
    "stream_reader",
    "stream_cancel",
    "stream_free",
    "stream_get_token_info",
    "stream_get_stats",
    "stream_get_logprobs",
    "chat_apply_template",
    "tokenize",
    "detokenize",
    "embed",
    "get_model_info",
    "model_buffer_types",
    "get_memory_usage",
    "set_memory_limit",
    "memory_cleanup",
    "set_memory_pressure_callback",
    "reset",
    "set_prompt_cache",
]


def _take_string(ptr: Any) -> str:
    """A string the core allocated, as ``str``; freed with ``ev_free_string``."""
    try:
        return bytes(ffi.string(ptr)).decode("utf-8", errors="replace")
    finally:
        lib.ev_free_string(ptr)


# ------------------------------------------------------------ process-wide


def version() -> str:
    """``ev_version``: the header version this core implements."""
    return c_str(lib.ev_version())


def llama_version() -> str:
    """``ev_llama_version``: the llama.cpp build inside."""
    return c_str(lib.ev_llama_version())


def system_info() -> str:
    """``ev_system_info``: llama.cpp's CPU features and build options."""
    return c_str(lib.ev_system_info())


def cpu_backend_load() -> None:
    """``ev_cpu_backend_load``: load the CPU backend (the wheel: one variant module); an
    unknown ``$EDGEVEDA_CPU_VARIANT`` is a ConfigurationException with that ``field``."""
    code = int(lib.ev_cpu_backend_load())
    if code == NativeErrorCode.INVALID_PARAM:
        raise ConfigurationException("invalid CPU variant", last_error(), field=CPU_VARIANT_ENV)
    check_native(code)


def cpu_variant() -> str:
    """``ev_cpu_variant``: the CPU variant in use (loads it; raises as ``cpu_backend_load``)."""
    cpu_backend_load()
    return c_str(lib.ev_cpu_variant())


def cpu_variants() -> List[str]:
    """``ev_cpu_variants``: the variants this build carries ([] in a source build)."""
    return [v for v in c_str(lib.ev_cpu_variants()).split(",") if v]


def cpu_variant_score(name: str) -> int:
    """``ev_cpu_variant_score``: > 0 this CPU runs ``name``, 0 it cannot, -1 not carried."""
    return int(lib.ev_cpu_variant_score(encode(name, "name")))


def error_string(code: int) -> str:
    """``ev_error_string``: the fixed text of an ``ev_error_t``."""
    return c_str(lib.ev_error_string(code))


def detect_backend() -> int:
    """``ev_detect_backend``: the best backend of this build and machine."""
    return int(lib.ev_detect_backend())


def is_backend_available(backend: int) -> bool:
    """``ev_is_backend_available``."""
    return bool(lib.ev_is_backend_available(backend))


def backend_name(backend: int) -> str:
    """``ev_backend_name``."""
    return c_str(lib.ev_backend_name(backend))


def set_verbose(enabled: bool) -> None:
    """``ev_set_verbose``: llama.cpp's own logs on (to the log callback) or off."""
    lib.ev_set_verbose(bool(enabled))


_CONFIG_FIELDS = (
    "backend",
    "num_threads",
    "context_size",
    "batch_size",
    "memory_limit_bytes",
    "auto_unload_on_memory_pressure",
    "gpu_layers",
    "use_mmap",
    "use_mlock",
    "seed",
    "flash_attn",
    "kv_cache_type_k",
    "kv_cache_type_v",
)
_PARAMS_FIELDS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repeat_penalty",
    "frequency_penalty",
    "presence_penalty",
    "confidence_threshold",
)


def _plain(value: Any) -> Any:
    # cffi gives float fields as Python floats of the C float: 0.8f is
    # 0.800000011920929; round to the float's own precision for display
    return float(f"{value:.7g}") if isinstance(value, float) else value


def config_defaults() -> Dict[str, Any]:
    """``ev_config_default`` + ``ev_config_extras_default`` as a dict (no model_path)."""
    c = ffi.new("ev_config*")
    lib.ev_config_default(c)
    x = ffi.new("ev_config_extras*")
    lib.ev_config_extras_default(x)
    out = {name: _plain(getattr(c, name)) for name in _CONFIG_FIELDS}
    out["cpu_extra_buffers"] = bool(x.cpu_extra_buffers)
    return out


def generation_params_defaults() -> Dict[str, Any]:
    """``ev_generation_params_default`` + ``ev_generation_extras_default`` as a dict
    (the extras' seed -2, "the engine's seed", is None)."""
    p = ffi.new("ev_generation_params*")
    lib.ev_generation_params_default(p)
    x = ffi.new("ev_generation_extras*")
    lib.ev_generation_extras_default(x)
    out = {name: _plain(getattr(p, name)) for name in _PARAMS_FIELDS}
    out["seed"] = None if x.seed == -2 else int(x.seed)
    out["min_p"] = _plain(x.min_p)
    out["top_logprobs"] = int(x.top_logprobs)  # -1: off
    return out


# ------------------------------------------------------------ lifecycle


def init(config: Config, on_progress: Optional[Any] = None) -> Tuple[Any, Optional[BaseException]]:
    """``ev_init`` / ``ev_init_with_progress``: load ``config``'s model.

    ``on_progress`` is a ``CallbackBox`` (``callbacks.py``) whose function gets
    0..1 and returns False to abort. Returns the context and the exception the
    callback raised (the load was then aborted and the context is NULL or freed);
    a load failure raises.
    """
    cpu_backend_load()  # a bad EDGEVEDA_CPU_VARIANT fails here, with its field
    c = ffi.new("ev_config*")
    lib.ev_config_default(c)
    path = ffi.new("char[]", os.fsencode(config.model_path))
    c.model_path = path
    for name in _CONFIG_FIELDS:
        setattr(c, name, int(getattr(config, name)))
    extras = ffi.new("ev_config_extras*")  # alive until ev_init returns
    lib.ev_config_extras_default(extras)
    extras.cpu_extra_buffers = 1 if config.cpu_extra_buffers else 0
    c.reserved = extras
    err = ffi.new("ev_error_t*")
    if on_progress is not None:
        handle = ffi.new_handle(on_progress)
        ctx = lib.ev_init_with_progress(c, lib._ev_py_load_progress, handle, err)
        if on_progress.pending is not None:
            if ctx != ffi.NULL:
                lib.ev_free(ctx)
            return ffi.NULL, on_progress.take_pending()
    else:
        ctx = lib.ev_init(c, err)
    if ctx == ffi.NULL:
        check_native(err[0])
        raise GenerationException("ev_init returned NULL without an error code")  # pragma: no cover
    return ctx, None


def free(ctx: Any) -> None:
    """``ev_free``."""
    lib.ev_free(ctx)


def is_valid(ctx: Any) -> bool:
    """``ev_is_valid``."""
    return bool(lib.ev_is_valid(ctx))


# ------------------------------------------------------------ generation


def generate(ctx: Any, prompt: bytes, params: NativeParams) -> str:
    """``ev_generate``: the whole completion (raises on failure)."""
    out = ffi.new("char**")
    check_native(lib.ev_generate(ctx, prompt, params.ptr, out))
    return _take_string(out[0])


def generate_cancel(ctx: Any) -> None:
    """``ev_generate_cancel``: from any thread, lock-free."""
    lib.ev_generate_cancel(ctx)


def get_last_generation_stats(ctx: Any) -> GenerationStats:
    """``ev_get_last_generation_stats`` (the calling thread's last generation)."""
    st = ffi.new("ev_generation_stats*")
    check_native(lib.ev_get_last_generation_stats(ctx, st))
    return stats_from(st)


def _take_logprobs(lp: Any) -> Tuple[TokenLogprob, ...]:
    """The entries of a filled ``ev_logprobs``, freed with ``ev_free_logprobs``."""
    try:
        return logprobs_from(lp)
    finally:
        lib.ev_free_logprobs(lp)


def get_last_logprobs(ctx: Any) -> Tuple[TokenLogprob, ...]:
    """``ev_get_last_logprobs`` (the calling thread's last ``ev_generate``; empty
    when its logprobs were off) + ``ev_free_logprobs``."""
    lp = ffi.new("ev_logprobs*")
    check_native(lib.ev_get_last_logprobs(ctx, lp))
    return _take_logprobs(lp)


def generate_stream(ctx: Any, prompt: bytes, params: NativeParams) -> Any:
    """``ev_generate_stream``: the stream handle (raises on failure)."""
    err = ffi.new("ev_error_t*")
    handle = lib.ev_generate_stream(ctx, prompt, params.ptr, err)
    if handle == ffi.NULL:
        check_native(err[0])
        raise GenerationException("ev_generate_stream returned NULL")  # pragma: no cover
    return handle


def stream_reader(handle: Any) -> Callable[[], Optional[str]]:
    """``ev_stream_next`` for one stream: a function returning the next piece,
    None at the end, raising on an error. Built once per stream (the per-piece
    path allocates nothing); call it on the thread whose error message counts
    (``ev_last_error_message`` is thread-local)."""
    err = ffi.new("ev_error_t*")
    null = ffi.NULL
    ended = (0, NativeErrorCode.STREAM_ENDED)
    stream_next = lib.ev_stream_next

    def read() -> Optional[str]:
        ptr = stream_next(handle, err)
        if ptr == null:
            if err[0] in ended:
                return None
            check_native(err[0])
        try:
            text: str = ffi.string(ptr).decode("utf-8")
            return text
        finally:
            lib.ev_free_string(ptr)

    return read


def stream_cancel(handle: Any) -> None:
    """``ev_stream_cancel``: from any thread."""
    lib.ev_stream_cancel(handle)


def stream_free(handle: Any) -> None:
    """``ev_stream_free``."""
    lib.ev_stream_free(handle)


def stream_get_token_info(handle: Any) -> TokenInfo:
    """``ev_stream_get_token_info``: the latest token's confidence."""
    info = ffi.new("ev_stream_token_info*")
    check_native(lib.ev_stream_get_token_info(handle, info))
    return TokenInfo(
        confidence=float(info.confidence),
        avg_confidence=float(info.avg_confidence),
        needs_cloud_handoff=bool(info.needs_cloud_handoff),
        token_index=int(info.token_index),
    )


def stream_get_stats(handle: Any) -> GenerationStats:
    """``ev_stream_get_stats``: counts and timings so far."""
    st = ffi.new("ev_generation_stats*")
    check_native(lib.ev_stream_get_stats(handle, st))
    return stats_from(st)


def stream_get_logprobs(handle: Any) -> Tuple[TokenLogprob, ...]:
    """``ev_stream_get_logprobs`` (the tokens of the last ``ev_stream_next``) +
    ``ev_free_logprobs``."""
    lp = ffi.new("ev_logprobs*")
    check_native(lib.ev_stream_get_logprobs(handle, lp))
    return _take_logprobs(lp)


# ------------------------------------------------------------ text


def chat_apply_template(
    ctx: Any, messages: Sequence[Tuple[bytes, bytes]], add_assistant: bool
) -> str:
    """``ev_chat_apply_template``: ``(role, content)`` pairs in the model's template."""
    keep: List[Any] = []
    arr = ffi.new("ev_chat_message[]", max(len(messages), 1))
    for i, (role, content) in enumerate(messages):
        r, c = ffi.new("char[]", role), ffi.new("char[]", content)
        keep += [r, c]
        arr[i].role = r
        arr[i].content = c
    out = ffi.new("char**")
    check_native(lib.ev_chat_apply_template(ctx, arr, len(messages), add_assistant, out))
    return _take_string(out[0])


def tokenize(ctx: Any, text: bytes, add_special: bool, parse_special: bool) -> List[int]:
    """``ev_tokenize``."""
    toks = ffi.new("int32_t**")
    n = ffi.new("int*")
    check_native(lib.ev_tokenize(ctx, text, add_special, parse_special, toks, n))
    try:
        return list(ffi.unpack(toks[0], n[0])) if n[0] else []
    finally:
        lib.ev_free_tokens(toks[0])


def detokenize(ctx: Any, tokens: Sequence[int], special: bool) -> str:
    """``ev_detokenize``; ids that are not int32 raise ConfigurationException."""
    try:
        arr = ffi.new("int32_t[]", list(tokens))
    except (OverflowError, TypeError) as exc:
        raise ConfigurationException(
            "Invalid parameter", f"tokens must be int32 ids: {exc}", field="tokens"
        ) from None
    out = ffi.new("char**")
    check_native(lib.ev_detokenize(ctx, arr, len(arr), special, out))
    return _take_string(out[0])


def embed(ctx: Any, text: bytes) -> EmbeddingResult:
    """``ev_embed`` (the result is freed with ``ev_free_embeddings``)."""
    res = ffi.new("ev_embed_result*")
    check_native(lib.ev_embed(ctx, text, res))
    try:
        values = list(ffi.unpack(res.embeddings, res.dimensions))
        return EmbeddingResult(values, int(res.dimensions), int(res.token_count))
    finally:
        lib.ev_free_embeddings(res)


# ------------------------------------------------------------ model, memory


def get_model_info(ctx: Any) -> ModelInfo:
    """``ev_get_model_info``."""
    info = ffi.new("ev_model_info*")
    check_native(lib.ev_get_model_info(ctx, info))
    return ModelInfo(
        name=c_str(info.name),
        architecture=c_str(info.architecture),
        num_parameters=int(info.num_parameters),
        context_length=int(info.context_length),
        embedding_dim=int(info.embedding_dim),
        num_layers=int(info.num_layers),
    )


def model_buffer_types(ctx: Any) -> Dict[str, float]:
    """``ev_model_buffer_types``: buffer type name -> MiB of the model's weights."""
    raw = lib.ev_model_buffer_types(ctx)
    if raw == ffi.NULL:
        check_native(int(NativeErrorCode.CONTEXT_INVALID))
    return parse_buffer_types(c_str(raw))  # copied while the caller holds the context


def get_memory_usage(ctx: Any) -> MemoryStats:
    """``ev_get_memory_usage``."""
    st = ffi.new("ev_memory_stats*")
    check_native(lib.ev_get_memory_usage(ctx, st))
    return MemoryStats(
        current_bytes=int(st.current_bytes),
        peak_bytes=int(st.peak_bytes),
        limit_bytes=int(st.limit_bytes),
        model_bytes=int(st.model_bytes),
        context_bytes=int(st.context_bytes),
    )


def set_memory_limit(ctx: Any, limit_bytes: int) -> None:
    """``ev_set_memory_limit`` (0 = none)."""
    check_native(lib.ev_set_memory_limit(ctx, limit_bytes))


def memory_cleanup(ctx: Any) -> None:
    """``ev_memory_cleanup``."""
    check_native(lib.ev_memory_cleanup(ctx))


def set_memory_pressure_callback(ctx: Any, box: Any) -> Any:
    """``ev_set_memory_pressure_callback`` with the Python trampoline; returns the
    handle of ``box`` (a ``CallbackBox``), which must stay alive while registered."""
    handle = ffi.new_handle(box)
    check_native(lib.ev_set_memory_pressure_callback(ctx, lib._ev_py_pressure, handle))
    return handle


def reset(ctx: Any) -> None:
    """``ev_reset``: forget the conversation (KV cache, prompt cache)."""
    check_native(lib.ev_reset(ctx))


def set_prompt_cache(ctx: Any, enabled: bool) -> None:
    """``ev_set_prompt_cache``."""
    check_native(lib.ev_set_prompt_cache(ctx, bool(enabled)))
