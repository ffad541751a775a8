"""``EdgeVeda``: one loaded model, and the streams it produces.

Every method maps to one or two calls of ``edge_veda.h``; see docs/porting.md
for the table. cffi releases the GIL during each native call, so other Python
threads keep running while a model loads or generates.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from ..errors import ConfigurationException, EdgeVedaException, EngineClosedException
from . import bindings, worker
from .callbacks import CallbackBox
from .completions import OpenAICompatible
from .config import Backend, Config, GenerationParams
from .lifecycle import Owner, free_owned
from .marshal import NativeParams, encode, encode_messages
from .results import (
    EmbeddingResult,
    GenerateResult,
    GenerationStats,
    MemoryPressureEvent,
    MemoryStats,
    ModelInfo,
    TokenLogprob,
)
from .streams import AsyncTokenStream, StreamPiece, TokenStream

if TYPE_CHECKING:
    from .chat import ChatSession

__all__ = ["EdgeVeda", "TokenStream", "AsyncTokenStream", "StreamPiece", "ChatMessage", "Backend"]

_log = logging.getLogger("edgeveda_ffi")
_log.addHandler(logging.NullHandler())

# llama.cpp's logs go to the `edgeveda_ffi.llama` logger (quiet unless the
# application configures logging).
bindings.lib.ev_set_log_callback(bindings.lib._ev_py_log, bindings.ffi.NULL)

R = TypeVar("R")
ChatMessage = Mapping[str, str]
PathLike = Union[str, "os.PathLike[str]"]


def _weak_dispatch(ref: weakref.ref[EdgeVeda]) -> Callable[[int, int], None]:
    def dispatch(current: int, limit: int) -> None:
        engine = ref()
        if engine is not None:
            engine._dispatch_pressure(current, limit)

    return dispatch


class EdgeVeda(OpenAICompatible):
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
                    "Invalid parameter", "model_path (or config) is required", field="model_path"
                )
            config = Config.from_kwargs(os.fspath(model_path), **config_kwargs)
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

        box = CallbackBox(on_load_progress) if on_load_progress is not None else None
        ctx, aborted_by = bindings.init(config, box)
        if aborted_by is not None:
            raise aborted_by
        self._ctx = ctx
        self._closed = False
        self._owner = Owner()
        self._finalizer = weakref.finalize(self, free_owned, self._owner, ctx, self._boxes)

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
        if self._owner.inherited:
            return  # a fork()ed child's copy: nothing of it may be touched here
        stream = self._stream_ref() if self._stream_ref else None
        if stream is not None:
            stream.close()
        if busy:
            bindings.generate_cancel(self._ctx)  # the context is alive until _release
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
        if self._owner.inherited:
            raise self._owner.foreign_error()
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
        if self._owner.inherited:
            raise self._owner.foreign_error()
        if self._closed:
            raise EngineClosedException(
                "Engine is closed", "this EdgeVeda was closed; create a new one"
            )

    def _call(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(ctx, *args)`` (a function of ``bindings``) while holding the
        context. An exception a memory-pressure callback raised during the
        call is raised in preference to the call's own result or error."""
        ctx = self._acquire()
        try:
            result = fn(ctx, *args)
        except EdgeVedaException as exc:
            pending = self._take_pending()
            if pending is not None:
                raise pending from exc
            raise
        finally:
            self._release()
        self._raise_pending()
        return result

    def _take_pending(self) -> Optional[BaseException]:
        box = self._pressure_box
        return box.take_pending() if box is not None else None

    def _raise_pending(self) -> None:
        exc = self._take_pending()
        if exc is not None:
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
        data = encode(prompt, "prompt")
        native = NativeParams(p)

        def call(ctx: Any) -> Tuple[str, GenerationStats, Optional[Tuple[TokenLogprob, ...]]]:
            # on the thread that ran the generation: stats and logprobs are per thread
            return worker.run(
                lambda: (
                    bindings.generate(ctx, data, native),
                    bindings.get_last_generation_stats(ctx),
                    bindings.get_last_logprobs(ctx) if p.logprobs else None,
                ),
                lambda: bindings.generate_cancel(ctx),
            )

        text, stats, logprobs = self._call(call)
        return GenerateResult(
            text=text,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            finish_reason=stats.finish_reason,
            stats=stats,
            latency_ms=stats.prompt_ms + stats.generation_ms,
            logprobs=logprobs,
        )

    def stream(
        self,
        prompt: str,
        params: Optional[GenerationParams] = None,
        *,
        token_info: bool = False,
        **kwargs: Any,
    ) -> TokenStream:
        """Stream the completion of ``prompt`` as pieces of whole UTF-8 characters.

        Returns an iterator of ``str`` (or :class:`StreamPiece` with ``token_info=True`` or
        ``logprobs=True``). Leaving the loop early, :meth:`TokenStream.close` or
        garbage collection cancels and frees the native stream. One stream
        per engine at a time; a second raises InitializationException.
        """
        p = self._params(params, kwargs)
        data = encode(prompt, "prompt")
        handle = self._call(bindings.generate_stream, data, NativeParams(p))
        stream = TokenStream(self, handle, token_info, p.logprobs)
        self._stream_ref = weakref.ref(stream)
        return stream

    def astream(
        self, prompt: str, params: Optional[GenerationParams] = None, **kwargs: Any
    ) -> AsyncTokenStream:
        """:meth:`stream` for asyncio (``async for piece in llm.astream(...)``): each
        piece is computed on the package's worker thread (``engine/worker.py``), so the
        event loop keeps running.

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
        pairs = encode_messages(messages)
        return self._call(bindings.chat_apply_template, pairs, add_assistant)

    def cancel(self) -> None:
        """Cancel the generation or stream running on this engine, from any thread.

        Prompt processing is interrupted too. No effect when nothing runs.
        """
        try:
            ctx = self._acquire()
        except EngineClosedException:
            return
        try:
            bindings.generate_cancel(ctx)
        finally:
            self._release()

    def reset(self) -> None:
        """Forget the conversation state (KV cache and prompt cache)."""
        self._call(bindings.reset)

    def set_prompt_cache(self, enabled: bool) -> None:
        """Reuse the KV cache for prompts that extend the previous one (default on)."""
        self._call(bindings.set_prompt_cache, enabled)

    @property
    def last_stats(self) -> GenerationStats:
        """Stats of this thread's last finished generation on this engine.

        Read where this thread's generations run (the worker, from the main
        thread), so it reports the last :meth:`generate` of the calling thread."""
        return self._call(lambda ctx: worker.run(lambda: bindings.get_last_generation_stats(ctx)))

    # ---------------------------------------------------------- tokenizer

    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = True
    ) -> List[int]:
        """Token ids of ``text`` (BOS added only when the model asks for it)."""
        return self._call(
            bindings.tokenize, encode(text, "text"), bool(add_special), bool(parse_special)
        )

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        """Text of ``tokens``; ids outside the vocabulary raise ConfigurationException."""
        return self._call(bindings.detokenize, tokens, bool(special))

    # --------------------------------------------------------- embeddings

    def embed(self, text: str) -> EmbeddingResult:
        """A mean-pooled, L2-normalized embedding of ``text`` (up to 512 tokens)."""
        return self._call(bindings.embed, encode(text, "text"))

    # -------------------------------------------------------- model, memory

    @property
    def model_info(self) -> ModelInfo:
        """Name, architecture, parameters, context length, embedding size, layers."""
        self._ensure_open()  # also when cached: every use after close() raises
        if self._model_info is None:
            self._model_info = self._call(bindings.get_model_info)
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
            self._buffer_types = self._call(bindings.model_buffer_types)
        return dict(self._buffer_types)

    @property
    def is_valid(self) -> bool:
        """False once closed, or after the model was unloaded under memory pressure."""
        try:
            ctx = self._acquire()
        except EngineClosedException:
            return False
        try:
            return bindings.is_valid(ctx)
        finally:
            self._release()

    def memory_stats(self) -> MemoryStats:
        """llama.cpp's buffer sizes for this engine (returns at once, from any thread)."""
        return self._call(bindings.get_memory_usage)

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
                "Invalid parameter",
                f"limit_bytes={limit_bytes!r}: an int >= 0",
                field="limit_bytes",
            )
        self._call(bindings.set_memory_limit, limit_bytes)

    def memory_cleanup(self) -> MemoryStats:
        """Free what can be freed without unloading the model.

        Clears the KV cache (so the prompt cache too: the next prompt is
        processed from scratch) and frees the embedding context, which
        :meth:`embed` creates on first use. Returns the stats afterwards.
        Raises InitializationException while a stream is open on this engine.
        """
        self._call(bindings.memory_cleanup)
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
            raise ConfigurationException(
                "Invalid parameter", "callback must be callable", field="callback"
            )
        self._ensure_open()
        if self._pressure_box is None:
            # The box must not hold the engine strongly: the finalizer keeps the
            # boxes alive, so a bound method here would make the engine immortal.
            box = CallbackBox(_weak_dispatch(weakref.ref(self)))
            handle = self._call(bindings.set_memory_pressure_callback, box)
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
