"""``EdgeVeda``: one loaded model, and the streams it produces.

Every method maps to one or two calls of ``edge_veda.h``; see docs/porting.md
for the table. cffi releases the GIL during each native call, so other Python
threads keep running while a model loads or generates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from . import _runner
from ._callbacks import CallbackBox
from ._ffi import c_str, check_native, ffi, last_error, lib
from .config import (
    Backend,
    Config,
    EmbeddingResult,
    FinishReason,
    GenerateResult,
    GenerationParams,
    GenerationStats,
    MemoryPressureEvent,
    MemoryStats,
    ModelInfo,
    TokenInfo,
)
from .errors import (
    ConfigurationException,
    EngineClosedException,
    GenerationException,
    NativeErrorCode,
)

if TYPE_CHECKING:
    from .chat import ChatSession

__all__ = ["EdgeVeda", "TokenStream", "StreamPiece", "ChatMessage"]

_log = logging.getLogger("edgeveda_ffi")
_log.addHandler(logging.NullHandler())

# llama.cpp's logs go to the `edgeveda_ffi.llama` logger (quiet unless the
# application configures logging).
lib.ev_set_log_callback(lib._ev_py_log, ffi.NULL)

T = TypeVar("T")
ChatMessage = Mapping[str, str]
PathLike = Union[str, "os.PathLike[str]"]


def _encode(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise ConfigurationException(
            "Invalid parameter", f"{what} must be a str, not {type(text).__name__}"
        )
    if "\x00" in text:
        raise ConfigurationException("Invalid parameter", f"{what} must not contain NUL characters")
    return text.encode("utf-8", errors="surrogatepass")


class _NativeParams:
    """An ``ev_generation_params`` and everything its pointers point at."""

    __slots__ = ("ptr", "_keep")

    def __init__(self, p: GenerationParams) -> None:
        keep: List[Any] = []
        ptr = ffi.new("ev_generation_params*")
        lib.ev_generation_params_default(ptr)
        ptr.max_tokens = p.max_tokens
        ptr.temperature = p.temperature
        ptr.top_p = p.top_p
        ptr.top_k = p.top_k
        ptr.repeat_penalty = p.repeat_penalty
        ptr.frequency_penalty = p.frequency_penalty
        ptr.presence_penalty = p.presence_penalty
        ptr.confidence_threshold = p.confidence_threshold
        if p.stop:
            strs = [ffi.new("char[]", _encode(s, "stop sequence")) for s in p.stop]
            arr = ffi.new("const char*[]", strs)
            keep += [strs, arr]
            ptr.stop_sequences = arr
            ptr.num_stop_sequences = len(strs)
        if p.grammar:
            g = ffi.new("char[]", _encode(p.grammar, "grammar"))
            keep.append(g)
            ptr.grammar_str = g
        if p.grammar_root:
            r = ffi.new("char[]", _encode(p.grammar_root, "grammar_root"))
            keep.append(r)
            ptr.grammar_root = r
        if p.seed is not None or p.min_p:
            x = ffi.new("ev_generation_extras*")
            lib.ev_generation_extras_default(x)
            if p.seed is not None:
                x.seed = p.seed
            x.min_p = p.min_p
            keep.append(x)
            ptr.reserved = x
        self.ptr = ptr
        self._keep = keep


def _stats_from(s: Any) -> GenerationStats:
    return GenerationStats(
        prompt_tokens=int(s.prompt_tokens),
        cached_tokens=int(s.cached_tokens),
        completion_tokens=int(s.generated_tokens),
        prompt_ms=float(s.prompt_ms),
        generation_ms=float(s.generation_ms),
        first_token_ms=float(s.first_token_ms),
        finish_reason=FinishReason.from_native(s.finish_reason),
    )


def _free_context(ctx: Any, boxes: List[Any]) -> None:
    # Runs exactly once: from close() or when the engine is garbage-collected.
    lib.ev_free(ctx)
    boxes.clear()  # handles may go only after the context can no longer call them


def _free_owned(pid: int, ctx: Any, boxes: List[Any]) -> None:
    """The engine's finalizer: free the context, except in a fork()ed child.

    A child inherits a copy of the context, whose locks may be held by a parent
    thread that does not exist in the child: freeing it there (at exit, say)
    could hang forever. The parent owns it; the child's copy goes with the child.
    """
    if os.getpid() == pid:
        _free_context(ctx, boxes)


def _free_stream_owned(pid: int, handle: Any) -> None:
    if os.getpid() == pid:
        lib.ev_stream_free(handle)


def _parse_buffer_types(text: str) -> Dict[str, float]:
    """``ev_model_buffer_types``'s ``"CPU_Mapped 85.8 MiB, CPU_REPACK 57.0 MiB"``
    as ``{"CPU_Mapped": 85.8, "CPU_REPACK": 57.0}``."""
    out: Dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(", "))):
        head, _, unit = part.rpartition(" ")  # "<name> <size> MiB"
        name, _, size = head.rpartition(" ")
        try:
            mib = float(size)
        except ValueError:
            mib = -1.0
        if unit != "MiB" or not name or mib < 0:
            raise GenerationException(  # pragma: no cover - the core's own format
                "Unexpected buffer types", f"cannot read {part!r} of {text!r}"
            )
        out[name] = mib
    return out


def _foreign(pid: int) -> EngineClosedException:
    return EngineClosedException(
        "Engine belongs to another process",
        f"this EdgeVeda was created by process {pid} and inherited through fork(); "
        "create a new engine in this process (see docs/safety.md)",
    )


def _weak_dispatch(ref: weakref.ref[EdgeVeda]) -> Callable[[int, int], None]:
    def dispatch(current: int, limit: int) -> None:
        engine = ref()
        if engine is not None:
            engine._dispatch_pressure(current, limit)

    return dispatch


@dataclass(frozen=True)
class StreamPiece:
    """A streamed piece with its token information (``stream(..., token_info=True)``)."""

    text: str
    info: TokenInfo

    def __str__(self) -> str:
        return self.text


class EdgeVeda:
    """One loaded model: generate, stream, chat, embed, cancel, inspect memory.

    Use it as a context manager, or call :meth:`close`; a forgotten engine is
    freed by a finalizer, exactly once. All methods may be called from any
    thread; generations on one engine run one at a time (the native core
    serializes them), while :meth:`cancel` and :meth:`memory_stats` return at
    once.

    Args:
        model_path: a GGUF file.
        config: a :class:`Config` (then ``model_path`` may be omitted).
        on_load_progress: called with 0..1 while loading; return False to abort.
        defaults: default generation parameters for this engine.
        **config_kwargs: :class:`Config` fields (``context_size=4096`` ...).

    Raises:
        ModelLoadException: missing, unreadable, corrupt or truncated model.
        ConfigurationException: a bad config value (names the field).
        MemoryException: ``memory_limit_bytes`` cannot hold model + context.
        InitializationException: backend unavailable or context creation failed.
    """

    def __init__(
        self,
        model_path: Optional[PathLike] = None,
        *,
        config: Optional[Config] = None,
        on_load_progress: Optional[Callable[[float], Optional[bool]]] = None,
        defaults: Optional[GenerationParams] = None,
        **config_kwargs: Any,
    ) -> None:
        self._ctx: Any = None
        self._closed = True
        # In-flight native calls: close() never frees the context under a
        # running call; the last call to finish frees it instead.
        self._state_lock = threading.Lock()
        self._inflight = 0
        if config is None:
            if model_path is None:
                raise ConfigurationException(
                    "Invalid parameter", "model_path (or config) is required"
                )
            unknown = sorted(set(config_kwargs) - set(Config.field_names()))
            if unknown:
                raise ConfigurationException(
                    "Invalid parameter",
                    f"unknown config field(s) {', '.join(unknown)}; "
                    f"known: {', '.join(Config.field_names())}",
                )
            config = Config(model_path=os.fspath(model_path), **config_kwargs)
        elif config_kwargs or model_path is not None:
            raise ConfigurationException(
                "Invalid parameter", "pass either config or model_path/**config_kwargs"
            )
        self.config = config
        self.defaults = defaults or GenerationParams()
        self._boxes: List[Any] = []  # CallbackBoxes and handles alive while registered
        self._pressure_callbacks: List[Callable[[MemoryPressureEvent], Any]] = []
        self._pressure_box: Optional[CallbackBox] = None
        self._model_info: Optional[ModelInfo] = None
        self._buffer_types: Optional[Dict[str, float]] = None
        self._stream_ref: Optional[weakref.ref[TokenStream]] = None

        c = ffi.new("ev_config*")
        lib.ev_config_default(c)
        path = ffi.new("char[]", os.fsencode(config.model_path))
        c.model_path = path
        c.backend = int(config.backend)
        c.num_threads = config.num_threads
        c.context_size = config.context_size
        c.batch_size = config.batch_size
        c.memory_limit_bytes = config.memory_limit_bytes
        c.auto_unload_on_memory_pressure = config.auto_unload_on_memory_pressure
        c.gpu_layers = config.gpu_layers
        c.use_mmap = config.use_mmap
        c.use_mlock = config.use_mlock
        c.seed = config.seed
        c.flash_attn = config.flash_attn
        c.kv_cache_type_k = config.kv_cache_type_k
        c.kv_cache_type_v = config.kv_cache_type_v
        extras = ffi.new("ev_config_extras*")  # alive until ev_init returns
        lib.ev_config_extras_default(extras)
        extras.cpu_extra_buffers = 1 if config.cpu_extra_buffers else 0
        c.reserved = extras

        err = ffi.new("ev_error_t*")
        if on_load_progress is not None:
            box = CallbackBox(on_load_progress)
            handle = ffi.new_handle(box)
            ctx = lib.ev_init_with_progress(c, lib._ev_py_load_progress, handle, err)
            if box.pending is not None:
                if ctx != ffi.NULL:
                    lib.ev_free(ctx)
                raise box.pending
        else:
            ctx = lib.ev_init(c, err)
        if ctx == ffi.NULL:
            check_native(err[0])
            raise GenerationException(  # pragma: no cover
                "ev_init returned NULL without an error code"
            )
        self._ctx = ctx
        self._closed = False
        self._pid = os.getpid()
        self._finalizer = weakref.finalize(self, _free_owned, self._pid, ctx, self._boxes)

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> EdgeVeda:
        """An engine for ``config`` (kwargs: on_load_progress, defaults)."""
        return cls(config=config, **kwargs)

    # ------------------------------------------------------------------ life

    def close(self) -> None:
        """Free the model and context. Idempotent; later calls raise EngineClosedException.

        Safe while other threads use the engine: their running generation is
        cancelled and the native context is freed when the last call returns.
        """
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            busy = self._inflight > 0
        if self._pid != os.getpid():
            return  # a fork()ed child's copy: nothing of it may be touched here
        stream = self._stream_ref() if self._stream_ref else None
        if stream is not None:
            stream.close()
        if busy:
            lib.ev_generate_cancel(self._ctx)  # the context is alive until _release
        else:
            self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> EdgeVeda:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EdgeVeda {os.path.basename(self.config.model_path)!r} {state}>"

    def _acquire(self) -> Any:
        """The native context, counted as in use until :meth:`_release`."""
        if self._pid != os.getpid():
            raise _foreign(self._pid)
        with self._state_lock:
            if self._closed:
                raise EngineClosedException(
                    "Engine is closed", "this EdgeVeda was closed; create a new one"
                )
            self._inflight += 1
            return self._ctx

    def _release(self) -> None:
        with self._state_lock:
            self._inflight -= 1
            free_now = self._closed and self._inflight == 0
        if free_now:
            self._finalizer()  # runs once: weakref.finalize is idempotent

    def _ensure_open(self) -> None:
        """Raise EngineClosedException once closed (for methods that may not call native)."""
        if self._pid != os.getpid():
            raise _foreign(self._pid)
        if self._closed:
            raise EngineClosedException(
                "Engine is closed", "this EdgeVeda was closed; create a new one"
            )

    def _native(self, fn: Callable[..., int], *args: Any) -> None:
        """Call ``fn(ctx, *args)`` while holding the context, and check the code."""
        ctx = self._acquire()
        try:
            code = fn(ctx, *args)
            err = last_error() if code != 0 else None
        finally:
            self._release()
        self._check(code, err)

    def _check(self, code: int, details: Optional[str] = None) -> None:
        self._raise_pending()
        check_native(code, details)

    def _raise_pending(self) -> None:
        box = self._pressure_box
        if box is not None and box.pending is not None:
            exc = box.take_pending()
            assert exc is not None
            raise exc

    # ------------------------------------------------------------ generation

    def _params(
        self, params: Optional[GenerationParams], kwargs: Dict[str, Any]
    ) -> GenerationParams:
        if params is not None and kwargs:
            return GenerationParams.from_kwargs(params, **kwargs)
        if params is not None:
            return params
        return GenerationParams.from_kwargs(self.defaults, **kwargs) if kwargs else self.defaults

    def generate(
        self, prompt: str, params: Optional[GenerationParams] = None, **kwargs: Any
    ) -> GenerateResult:
        """Generate a completion of ``prompt`` (raw text; see :meth:`chat` for templates).

        Keyword arguments are :class:`GenerationParams` fields (``max_tokens``,
        ``temperature`` (0 = greedy), ``top_p``, ``top_k``, ``stop``, ``seed``,
        ``grammar`` ...). A cancel (:meth:`cancel`) returns the text so far with
        ``finish_reason == FinishReason.CANCELLED``. Ctrl-C in the main thread
        cancels the generation and raises KeyboardInterrupt; the engine stays usable.
        """
        p = self._params(params, kwargs)
        data = _encode(prompt, "prompt")
        native = _NativeParams(p)
        ctx = self._acquire()

        def call() -> Tuple[int, str, Optional[str], Optional[GenerationStats]]:
            out = ffi.new("char**")
            code = lib.ev_generate(ctx, data, native.ptr, out)
            if code != 0:
                return code, "", last_error(), None
            try:
                text = bytes(ffi.string(out[0])).decode("utf-8", errors="replace")
            finally:
                lib.ev_free_string(out[0])
            st = ffi.new("ev_generation_stats*")
            lib.ev_get_last_generation_stats(ctx, st)
            return 0, text, None, _stats_from(st)

        try:
            code, text, err, stats = self._interruptible(call, ctx)
        finally:
            self._release()
        self._check(code, err)
        assert stats is not None
        return GenerateResult(
            text=text,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            finish_reason=stats.finish_reason,
            stats=stats,
            latency_ms=stats.prompt_ms + stats.generation_ms,
        )

    def _interruptible(self, fn: Callable[[], T], ctx: Any) -> T:
        """Run a blocking native generation so that Ctrl-C cancels it (see
        :func:`_run_interruptibly`)."""
        return _run_interruptibly(fn, lambda: lib.ev_generate_cancel(ctx))

    def stream(
        self,
        prompt: str,
        params: Optional[GenerationParams] = None,
        *,
        token_info: bool = False,
        **kwargs: Any,
    ) -> TokenStream:
        """Stream the completion of ``prompt`` as pieces of whole UTF-8 characters.

        Returns an iterator of ``str`` (or :class:`StreamPiece` with
        ``token_info=True``). Leaving the loop early, :meth:`TokenStream.close`
        or garbage collection cancels and frees the native stream. One stream
        per engine at a time; a second raises InitializationException.
        """
        p = self._params(params, kwargs)
        data = _encode(prompt, "prompt")
        native = _NativeParams(p)
        ctx = self._acquire()
        err = ffi.new("ev_error_t*")
        try:
            handle = lib.ev_generate_stream(ctx, data, native.ptr, err)
            msg = last_error() if handle == ffi.NULL else None
        finally:
            self._release()
        if handle == ffi.NULL:
            self._check(err[0], msg)
            raise GenerationException("ev_generate_stream returned NULL")  # pragma: no cover
        stream = TokenStream(self, handle, token_info)
        self._stream_ref = weakref.ref(stream)
        return stream

    def astream(
        self, prompt: str, params: Optional[GenerationParams] = None, **kwargs: Any
    ) -> AsyncTokenStream:
        """:meth:`stream` for asyncio (``async for piece in llm.astream(...)``): each
        piece is computed in a worker thread, so the event loop keeps running.

        Leaving the loop in any way (``break``, an exception, the task being
        cancelled, the iterator being dropped) cancels and frees the native
        stream at once, so the next call on this engine can start; ``aclose()``
        and ``async with`` do the same explicitly."""
        return AsyncTokenStream(self, prompt, params, kwargs)

    def chat(
        self,
        messages: Sequence[ChatMessage],
        params: Optional[GenerationParams] = None,
        **kwargs: Any,
    ) -> GenerateResult:
        """Answer a conversation (``[{"role": ..., "content": ...}, ...]``) with
        the model's own chat template."""
        p = self._params(params, kwargs)  # validated before any native call
        return self.generate(self.apply_chat_template(messages), p)

    def chat_session(self, system_prompt: Optional[str] = None, **defaults: Any) -> ChatSession:
        """A :class:`ChatSession` that keeps the history on this engine."""
        from .chat import ChatSession

        return ChatSession(self, system_prompt=system_prompt, **defaults)

    def apply_chat_template(
        self, messages: Sequence[ChatMessage], add_assistant: bool = True
    ) -> str:
        """The prompt text for ``messages`` in the model's template."""
        keep: List[Any] = []
        arr = ffi.new("ev_chat_message[]", max(len(messages), 1))
        for i, m in enumerate(messages):
            try:
                role, content = m["role"], m["content"]
            except (KeyError, TypeError):
                raise ConfigurationException(
                    "Invalid parameter",
                    f"messages[{i}] must be a mapping with 'role' and 'content'",
                ) from None
            r = ffi.new("char[]", _encode(role, f"messages[{i}].role"))
            c = ffi.new("char[]", _encode(content, f"messages[{i}].content"))
            keep += [r, c]
            arr[i].role = r
            arr[i].content = c
        out = ffi.new("char**")
        self._native(lib.ev_chat_apply_template, arr, len(messages), add_assistant, out)
        try:
            return bytes(ffi.string(out[0])).decode("utf-8", errors="replace")
        finally:
            lib.ev_free_string(out[0])

    def cancel(self) -> None:
        """Cancel the generation or stream running on this engine, from any thread.

        Prompt processing is interrupted too. No effect when nothing runs.
        """
        try:
            ctx = self._acquire()
        except EngineClosedException:
            return
        try:
            lib.ev_generate_cancel(ctx)
        finally:
            self._release()

    def reset(self) -> None:
        """Forget the conversation state (KV cache and prompt cache)."""
        self._native(lib.ev_reset)

    def set_prompt_cache(self, enabled: bool) -> None:
        """Reuse the KV cache for prompts that extend the previous one (default on)."""
        self._native(lib.ev_set_prompt_cache, bool(enabled))

    @property
    def last_stats(self) -> GenerationStats:
        """Stats of this thread's last finished generation on this engine."""
        st = ffi.new("ev_generation_stats*")
        self._native(lib.ev_get_last_generation_stats, st)
        return _stats_from(st)

    # ---------------------------------------------------------- tokenizer

    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = True
    ) -> List[int]:
        """Token ids of ``text`` (BOS added only when the model asks for it)."""
        data = _encode(text, "text")
        toks = ffi.new("int32_t**")
        n = ffi.new("int*")
        self._native(lib.ev_tokenize, data, add_special, parse_special, toks, n)
        try:
            return list(ffi.unpack(toks[0], n[0])) if n[0] else []
        finally:
            lib.ev_free_tokens(toks[0])

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        """Text of ``tokens``; ids outside the vocabulary raise ConfigurationException."""
        try:
            arr = ffi.new("int32_t[]", list(tokens))
        except (OverflowError, TypeError) as exc:
            raise ConfigurationException(
                "Invalid parameter", f"tokens must be int32 ids: {exc}"
            ) from None
        out = ffi.new("char**")
        self._native(lib.ev_detokenize, arr, len(arr), special, out)
        try:
            return bytes(ffi.string(out[0])).decode("utf-8", errors="replace")
        finally:
            lib.ev_free_string(out[0])

    # --------------------------------------------------------- embeddings

    def embed(self, text: str) -> EmbeddingResult:
        """A mean-pooled, L2-normalized embedding of ``text`` (up to 512 tokens)."""
        data = _encode(text, "text")
        res = ffi.new("ev_embed_result*")
        self._native(lib.ev_embed, data, res)
        try:
            values = list(ffi.unpack(res.embeddings, res.dimensions))
            return EmbeddingResult(values, int(res.dimensions), int(res.token_count))
        finally:
            lib.ev_free_embeddings(res)

    # -------------------------------------------------------- model, memory

    @property
    def model_info(self) -> ModelInfo:
        """Name, architecture, parameters, context length, embedding size, layers."""
        self._ensure_open()  # also when cached: every use after close() raises
        if self._model_info is None:
            info = ffi.new("ev_model_info*")
            self._native(lib.ev_get_model_info, info)
            self._model_info = ModelInfo(
                name=c_str(info.name),
                architecture=c_str(info.architecture),
                num_parameters=int(info.num_parameters),
                context_length=int(info.context_length),
                embedding_dim=int(info.embedding_dim),
                num_layers=int(info.num_layers),
            )
        return self._model_info

    @property
    def buffer_types(self) -> Dict[str, float]:
        """Where llama.cpp put the model's weights at load: buffer type name → MiB
        (``ev_model_buffer_types``; one decimal, sorted by name), e.g.
        ``{"CPU_Mapped": 85.8, "CPU_REPACK": 57.0}``. ``CPU_Mapped`` is the
        mmap'ed file, ``CPU_REPACK``/``AMX`` the CPU's extra buffer types
        (absent with ``cpu_extra_buffers`` off). Fixed at load; returns at once.
        """
        self._ensure_open()
        if self._buffer_types is None:
            ctx = self._acquire()
            try:
                raw = lib.ev_model_buffer_types(ctx)
                # copied while the context is held (the string is the context's)
                text = c_str(raw) if raw != ffi.NULL else None
                err = last_error() if raw == ffi.NULL else None
            finally:
                self._release()
            if text is None:
                check_native(int(NativeErrorCode.CONTEXT_INVALID), err)
                raise GenerationException("ev_model_buffer_types returned NULL")  # pragma: no cover
            self._buffer_types = _parse_buffer_types(text)
        return dict(self._buffer_types)

    @property
    def is_valid(self) -> bool:
        """False once closed, or after the model was unloaded under memory pressure."""
        try:
            ctx = self._acquire()
        except EngineClosedException:
            return False
        try:
            return bool(lib.ev_is_valid(ctx))
        finally:
            self._release()

    def memory_stats(self) -> MemoryStats:
        """llama.cpp's buffer sizes for this engine (returns at once, from any thread)."""
        st = ffi.new("ev_memory_stats*")
        self._native(lib.ev_get_memory_usage, st)
        return MemoryStats(
            current_bytes=int(st.current_bytes),
            peak_bytes=int(st.peak_bytes),
            limit_bytes=int(st.limit_bytes),
            model_bytes=int(st.model_bytes),
            context_bytes=int(st.context_bytes),
        )

    def set_memory_limit(self, limit_bytes: int) -> None:
        """Set the memory limit (0 = none). At >= 90 % use the pressure callbacks
        run (in this thread, before this returns); above the limit with
        ``auto_unload_on_memory_pressure`` the model is unloaded."""
        if (
            isinstance(limit_bytes, bool)
            or not isinstance(limit_bytes, int)
            or not 0 <= limit_bytes < 2**63
        ):
            raise ConfigurationException(
                "Invalid parameter", f"limit_bytes={limit_bytes!r}: an int >= 0"
            )
        self._native(lib.ev_set_memory_limit, limit_bytes)
        self._raise_pending()

    def memory_cleanup(self) -> MemoryStats:
        """Free what can be freed without unloading the model.

        Clears the KV cache (so the prompt cache too: the next prompt is
        processed from scratch) and frees the embedding context, which
        :meth:`embed` creates on first use. Returns the stats afterwards.
        Raises InitializationException while a stream is open on this engine.
        """
        self._native(lib.ev_memory_cleanup)
        return self.memory_stats()

    def on_memory_pressure(
        self, callback: Callable[[MemoryPressureEvent], Any]
    ) -> Callable[[], None]:
        """Call ``callback(MemoryPressureEvent)`` when use reaches 90 % of the limit.

        It runs in the thread that does the work, at a safe point, and may call
        this engine. An exception it raises is re-raised from the engine call
        that triggered it. Returns a function that unregisters the callback.
        """
        if not callable(callback):
            raise ConfigurationException("Invalid parameter", "callback must be callable")
        self._ensure_open()
        if self._pressure_box is None:
            # The box must not hold the engine strongly: the finalizer keeps the
            # boxes alive, so a bound method here would make the engine immortal.
            box = CallbackBox(_weak_dispatch(weakref.ref(self)))
            handle = ffi.new_handle(box)
            self._native(lib.ev_set_memory_pressure_callback, lib._ev_py_pressure, handle)
            self._pressure_box = box
            self._boxes += [box, handle]
        self._pressure_callbacks.append(callback)

        def remove() -> None:
            self.remove_memory_pressure_callback(callback)

        return remove

    def remove_memory_pressure_callback(
        self, callback: Callable[[MemoryPressureEvent], Any]
    ) -> None:
        """Unregister ``callback`` (no-op if it is not registered); may be called from inside it."""
        try:
            self._pressure_callbacks.remove(callback)
        except ValueError:
            return
        # The native registration stays while the engine lives: unregistering
        # it from inside a callback would free the handle under our feet.

    def _dispatch_pressure(self, current: int, limit: int) -> None:
        event = MemoryPressureEvent(current, limit)
        for cb in list(self._pressure_callbacks):
            cb(event)


def _run_interruptibly(fn: Callable[[], T], cancel: Callable[[], Any]) -> T:
    """Run a blocking native call so that Ctrl-C cancels it.

    Signals reach only the main thread, and only between bytecodes; so there
    the call runs on the long-lived worker thread of ``_runner`` (the same
    thread for every generation and stream piece of the process: one OpenMP
    master, see there) while the main thread waits interruptibly, and on
    KeyboardInterrupt calls ``cancel``, waits for the native call to wind down,
    and re-raises. Other threads call directly.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn()
    job = _runner.submit(fn)
    try:
        while not job.wait(0.25):
            pass
    except KeyboardInterrupt:
        # The native call must end before the caller may release (and
        # perhaps free) the context: wait for it, even through more Ctrl-Cs.
        cancel()
        while not job.finished:
            try:
                job.wait()
            except KeyboardInterrupt:
                cancel()
        raise
    return job.outcome()


def _stream_puller(handle: Any) -> Callable[[], Tuple[Optional[str], int, Optional[str]]]:
    """One ``ev_stream_next`` with its result made Python: ``(text, 0, None)``,
    or ``(None, code, message)`` at the end or on an error. Built once per
    stream, and run where the native call runs (the worker, from the main
    thread), so the message is that thread's (ev_last_error_message is
    thread-local) and the main thread does as little as possible per piece."""
    err = ffi.new("ev_error_t*")
    null = ffi.NULL

    def pull() -> Tuple[Optional[str], int, Optional[str]]:
        ptr = lib.ev_stream_next(handle, err)
        if ptr == null:
            code = err[0]
            ended = code in (0, NativeErrorCode.STREAM_ENDED)
            return None, code, (None if ended else last_error())
        try:
            return ffi.string(ptr).decode("utf-8"), 0, None
        finally:
            lib.ev_free_string(ptr)

    return pull


class AsyncTokenStream(AsyncIterator[str]):
    """The async iterator :meth:`EdgeVeda.astream` returns.

    A class rather than an async generator: an abandoned async generator is
    closed by a task the event loop schedules later, so after a ``break`` the
    native stream stayed open and the engine's next call failed ("another
    stream is active"). This object frees the stream when the loop is left:
    at once when it is dropped (``break``, an exception out of the loop body),
    and before re-raising when the task is cancelled inside a piece.
    """

    def __init__(
        self, engine: EdgeVeda, prompt: str, params: Optional[GenerationParams], kwargs: Any
    ) -> None:
        self._engine = engine
        self._request: Optional[Tuple[str, Optional[GenerationParams], Any]] = (
            prompt,
            params,
            kwargs,
        )
        self._stream: Optional[TokenStream] = None

    def __aiter__(self) -> AsyncTokenStream:
        return self

    async def __anext__(self) -> str:
        if self._request is not None:
            prompt, params, kwargs = self._request
            self._request = None
            # Starting a stream tokenizes and builds the sampler: quick, and
            # done here so that no native stream exists that this object does
            # not hold.
            self._stream = self._engine.stream(prompt, params, **kwargs)
        stream = self._stream
        if stream is None:
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        try:
            piece = await loop.run_in_executor(None, stream._next_text)
        except BaseException:
            # cancelled (the piece may still be computing: cancel ends it
            # within a token) or failed: free the stream before re-raising
            self._free()
            raise
        if piece is None:
            self._free()
            raise StopAsyncIteration
        return piece

    def _free(self) -> None:
        stream, self._stream = self._stream, None
        self._request = None
        if stream is not None:
            stream.cancel()
            stream.close()

    async def aclose(self) -> None:
        """Cancel and free the native stream (waits for a piece in progress
        off the event loop). Idempotent."""
        stream, self._stream = self._stream, None
        self._request = None
        if stream is not None:
            stream.cancel()
            loop = asyncio.get_running_loop()
            await asyncio.shield(loop.run_in_executor(None, stream.close))

    async def __aenter__(self) -> AsyncTokenStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __del__(self) -> None:
        try:
            self._free()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


class TokenStream(Iterator[Any]):
    """An iterator over the pieces of one streamed generation.

    ``close()`` (or leaving a ``with`` block, or garbage collection) cancels and
    frees the native stream, after which the engine can start another.
    """

    def __init__(self, engine: EdgeVeda, handle: Any, token_info: bool) -> None:
        self._engine = engine
        self._handle: Any = handle
        self._token_info = token_info
        self._done = False
        self._lock = threading.Lock()
        self._pid = engine._pid
        self._forks = _runner.fork_count
        self._pull = _stream_puller(handle)
        self._cancel_native = lambda: lib.ev_stream_cancel(handle)
        self._finalizer = weakref.finalize(self, _free_stream_owned, self._pid, handle)

    def __iter__(self) -> TokenStream:
        return self

    def _next_text(self) -> Optional[str]:
        """The next piece, or None at the end."""
        if self._forks != _runner.fork_count:
            raise _foreign(self._pid)
        with self._lock:
            if self._done or self._handle is None:
                return None
            text, code, message = _run_interruptibly(self._pull, self._cancel_native)
            if text is None:
                self._done = True
                self._engine._raise_pending()
                if code in (0, NativeErrorCode.STREAM_ENDED):
                    return None
                check_native(code, message)
            return text

    def __next__(self) -> Any:
        try:
            text = self._next_text()
        except BaseException:
            # Ctrl-C (or an error) inside the loop: the traceback keeps this
            # object alive, so free the native stream now; otherwise the
            # engine would refuse every generation while the traceback lives.
            self._free_native()
            raise
        if text is None:
            raise StopIteration
        if self._token_info:
            return StreamPiece(text, self.token_info())
        return text

    def token_info(self) -> TokenInfo:
        """Confidence information for the latest token."""
        info = ffi.new("ev_stream_token_info*")
        check_native(lib.ev_stream_get_token_info(self._live(), info))
        return TokenInfo(
            confidence=float(info.confidence),
            avg_confidence=float(info.avg_confidence),
            needs_cloud_handoff=bool(info.needs_cloud_handoff),
            token_index=int(info.token_index),
        )

    @property
    def stats(self) -> GenerationStats:
        """Counts and timings so far (finish_reason once ended)."""
        st = ffi.new("ev_generation_stats*")
        check_native(lib.ev_stream_get_stats(self._live(), st))
        return _stats_from(st)

    def _live(self) -> Any:
        if self._handle is None:
            raise GenerationException("Stream ended unexpectedly", "the stream was closed")
        return self._handle

    def text(self) -> str:
        """Consume the rest of the stream and return it joined."""
        return "".join(t for t in iter(self._next_text, None))

    def cancel(self) -> None:
        """Stop the stream from any thread; the iteration then ends."""
        h = self._handle
        if h is not None and self._pid == os.getpid():
            lib.ev_stream_cancel(h)

    def close(self) -> None:
        """Cancel and free the native stream. Idempotent."""
        if self._free_native():
            self._engine._raise_pending()

    def _free_native(self) -> bool:
        """Cancel and free the native stream; False when it was already freed."""
        h = self._handle
        if h is None:
            return False
        if self._pid != os.getpid():  # a fork()ed child's copy: forget it, touch nothing
            self._handle = None
            self._done = True
            return True
        lib.ev_stream_cancel(h)
        with self._lock:
            self._handle = None
            self._done = True
            self._finalizer()
        return True

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __enter__(self) -> TokenStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else ("finished" if self._done else "running")
        return f"<TokenStream {state}>"


# Backend is re-exported for EdgeVeda(backend=Backend.CPU) convenience.
__all__ += ["Backend"]
