"""Streams of one generation: ``TokenStream`` (an iterator) and
``AsyncTokenStream`` (for asyncio). Leaving either in any way frees the native
stream before the engine's next call."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Optional, Tuple

from ..errors import EdgeVedaException, GenerationException
from . import bindings, worker
from .config import GenerationParams
from .lifecycle import free_stream_owned
from .results import GenerationStats, TokenInfo, TokenLogprob

if TYPE_CHECKING:
    from .llm import EdgeVeda

__all__ = ["StreamPiece", "TokenStream", "AsyncTokenStream"]


@dataclass(frozen=True)
class StreamPiece:
    """A streamed piece with its token information (``stream(..., token_info=True)``)
    and, with ``stream(..., logprobs=True)``, the entries of the tokens it came
    from (a piece may come from several tokens, or from none; tokens that
    added no text at the end come in a last piece with text "")."""

    text: str
    info: TokenInfo
    logprobs: Tuple[TokenLogprob, ...] = ()

    def __str__(self) -> str:
        return self.text


class AsyncTokenStream(AsyncIterator[Any]):
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

    async def __anext__(self) -> Any:
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
        if stream._logprobs:  # StreamPiece, as TokenStream yields them
            last = piece is None and stream._tail()
            if last:
                return last
            if piece is not None:
                return stream._piece(piece)
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

    def __init__(
        self, engine: EdgeVeda, handle: Any, token_info: bool, logprobs: bool = False
    ) -> None:
        self._engine = engine
        self._handle: Any = handle
        self._token_info = token_info
        self._logprobs = logprobs
        # with logprobs: the entries of the last piece read (under _lock, so
        # they belong to that piece)
        self._piece_logprobs: Tuple[TokenLogprob, ...] = ()
        self._done = False
        self._lock = threading.Lock()
        self._owner = engine._owner
        self._read = bindings.stream_reader(handle)
        self._cancel_native = lambda: bindings.stream_cancel(handle)
        self._finalizer = weakref.finalize(self, free_stream_owned, self._owner, handle)

    def __iter__(self) -> TokenStream:
        return self

    def _next_text(self) -> Optional[str]:
        """The next piece, or None at the end."""
        if self._owner.inherited:
            raise self._owner.foreign_error()
        with self._lock:
            if self._done or self._handle is None:
                return None
            try:
                text = worker.run(self._read, self._cancel_native)
            except EdgeVedaException as exc:
                self._done = True
                pending = self._engine._take_pending()
                if pending is not None:
                    raise pending from exc
                raise
            if self._logprobs:
                self._piece_logprobs = bindings.stream_get_logprobs(self._handle)
            if text is None:
                self._done = True
                self._engine._raise_pending()
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
            last = self._tail()
            if last is None:
                raise StopIteration
            return last
        if self._logprobs:
            return self._piece(text)
        if self._token_info:
            return StreamPiece(text, self.token_info())
        return text

    def _piece(self, text: str) -> StreamPiece:
        return StreamPiece(text, self.token_info(), self._piece_logprobs)

    def _tail(self) -> Optional[StreamPiece]:
        """At the end, once: the entries of tokens that added no text, as a
        last piece with text "" (None when there are none)."""
        tail, self._piece_logprobs = self._piece_logprobs, ()
        if not tail or self._handle is None:
            return None
        return StreamPiece("", self.token_info(), tail)

    def token_info(self) -> TokenInfo:
        """Confidence information for the latest token."""
        return bindings.stream_get_token_info(self._live())

    @property
    def stats(self) -> GenerationStats:
        """Counts and timings so far (finish_reason once ended)."""
        return bindings.stream_get_stats(self._live())

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
        if h is not None and not self._owner.inherited:
            bindings.stream_cancel(h)

    def close(self) -> None:
        """Cancel and free the native stream. Idempotent."""
        if self._free_native():
            self._engine._raise_pending()

    def _free_native(self) -> bool:
        """Cancel and free the native stream; False when it was already freed."""
        h = self._handle
        if h is None:
            return False
        if self._owner.inherited:  # a fork()ed child's copy: forget it, touch nothing
            self._handle = None
            self._done = True
            return True
        bindings.stream_cancel(h)
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
