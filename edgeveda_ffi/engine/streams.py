"""Streams of one generation: ``TokenStream`` (an iterator) and
``AsyncTokenStream`` (for asyncio). Leaving either in any way frees the native
stream before the engine's next call."""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Optional, Tuple

from ..errors import GenerationException, NativeErrorCode
from . import worker
from .bindings import check_native, ffi, last_error, lib, stats_from
from .config import GenerationParams
from .lifecycle import foreign_process_error, free_stream_owned
from .results import GenerationStats, TokenInfo

if TYPE_CHECKING:
    from .llm import EdgeVeda

__all__ = ["StreamPiece", "TokenStream", "AsyncTokenStream"]


@dataclass(frozen=True)
class StreamPiece:
    """A streamed piece with its token information (``stream(..., token_info=True)``)."""

    text: str
    info: TokenInfo

    def __str__(self) -> str:
        return self.text


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
        try:
            piece = await worker.run_async(stream._next_text, stream.cancel)
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
            await worker.run_async(stream.close, stream.cancel)

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
        self._forks = worker.fork_count
        self._pull = _stream_puller(handle)
        self._cancel_native = lambda: lib.ev_stream_cancel(handle)
        self._finalizer = weakref.finalize(self, free_stream_owned, self._pid, handle)

    def __iter__(self) -> TokenStream:
        return self

    def _next_text(self) -> Optional[str]:
        """The next piece, or None at the end."""
        if self._forks != worker.fork_count:
            raise foreign_process_error(self._pid)
        with self._lock:
            if self._done or self._handle is None:
                return None
            text, code, message = worker.run(self._pull, self._cancel_native)
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
        return stats_from(st)

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
