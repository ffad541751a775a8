"""The one engine behind the server, and the one thread that runs its work.

Every engine call of every request runs as a job on ONE single-thread
executor owned by the host. That single thread is the queue: requests are
served whole and in the order they arrived (a stream holds the thread until it
ends), and only one native stream exists at a time, as the engine requires.

A streaming job hands its chunks to the event loop through a :class:`Handoff`,
which the loop reads at most once per ``stream_interval`` (plus at once for the
first chunk, the end and errors). A client that disconnects sets the job's
stop flag and cancels the running generation (``EdgeVeda.cancel``, any
thread); the job then closes the chunk generator, which frees the native
stream, and the thread takes the next job.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Deque, Iterator, List, Optional, TypeVar

from .api_errors import unavailable

if TYPE_CHECKING:
    from .. import EdgeVeda

__all__ = ["ModelHost", "Handoff", "LOAD_DELAY_ENV", "STREAM_INTERVAL"]

T = TypeVar("T")
log = logging.getLogger("edgeveda_ffi.server")

#: Test hook: seconds to wait before loading the model, so tests can observe
#: the 503 a client gets while a (large) model loads. Never set in production.
LOAD_DELAY_ENV = "EDGEVEDA_SERVE_TEST_LOAD_DELAY"

_END = object()

#: The shortest time between two sends of one stream's chunks, in seconds:
#: the chunks that arrive meanwhile go out together (each its own SSE event).
STREAM_INTERVAL = 0.02


def _is_final(item: Any) -> bool:
    """The end of a stream or its error: handed over without waiting."""
    return item is _END or isinstance(item, BaseException)


class Handoff:
    """A stream's chunks from the host's thread to the event loop, paced.

    Why paced: waking the event loop and sending costs about 0.15 ms of CPU
    per send on a 2-vCPU machine, and while ggml's threads decode on every
    core that time is taken from the decode (benchmarks/README.md, "Against
    llama.cpp's own server, then paced streams"). So the loop takes what has
    arrived at most once per ``interval``: a chunk waits at most that long
    (the first one, the end and an error not at all), and a model faster than
    one token per interval sends several tokens' events in one write. A slower
    model gets every chunk at once, since the loop, finding nothing at its
    next look, waits for the next chunk to wake it.

    ``put`` is for the host's thread, ``take`` for the loop.
    """

    __slots__ = ("_loop", "_interval", "_items", "_asleep", "_waiter", "_error", "_ended", "_next")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = STREAM_INTERVAL) -> None:
        self._loop = loop
        self._interval = interval
        self._items: Deque[Any] = collections.deque()
        self._asleep = False  # the loop waits for a put() to wake it
        self._waiter: Optional[asyncio.Future[None]] = None
        self._error: Optional[BaseException] = None
        self._ended = False
        self._next = 0.0  # loop time before which the loop does not look again

    def put(self, item: Any) -> None:
        """Hand over ``item`` (any thread): a chunk, an exception or the end."""
        # Append first, then look at the flag (take() sets it, then looks at
        # the deque): an item is never left behind while the loop sleeps.
        self._items.append(item)
        if self._asleep or _is_final(item):
            self._asleep = False
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop is closed: nobody takes any more
                pass

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drain(self) -> List[Any]:
        batch: List[Any] = []
        while self._items:
            item = self._items.popleft()
            if item is _END:
                self._ended = True
                break
            if isinstance(item, BaseException):
                self._error = item
                break
            batch.append(item)
        return batch

    async def take(self, paced: bool = True) -> List[Any]:
        """The chunks that have arrived, waiting for at least one; ``[]`` at the
        end. An exception handed over is raised after the chunks before it.
        ``paced=False`` takes them as soon as they come (the first chunks,
        before the response starts)."""
        loop = self._loop
        while True:
            if self._error is not None:
                error, self._error = self._error, None
                self._ended = True
                raise error
            if self._ended:
                return []
            wait = self._next - loop.time() if paced else 0.0
            if wait <= 0 or (self._items and _is_final(self._items[-1])):  # the end: at once
                batch = self._drain()
                if batch:
                    if paced:
                        self._next = loop.time() + self._interval
                    return batch
                if self._error is not None or self._ended:
                    continue
            self._waiter = waiter = loop.create_future()
            timer = None
            if wait > 0:
                timer = loop.call_later(wait, self._wake)
            else:
                self._asleep = True
                if self._items:  # arrived before the flag was set
                    self._asleep = False
                    self._waiter = None
                    continue
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()


class ModelHost:
    """Loads the model in the background and runs every request's engine work
    on one thread, in arrival order.

    Args:
        model_id: the id clients name in ``model`` (``/v1/models`` lists it).
        load: builds the engine; called on the host's thread with an
            ``on_load_progress`` callback that returns False to abort the load.
    """

    def __init__(self, model_id: str, load: Callable[[Callable[[float], bool]], EdgeVeda]) -> None:
        self.model_id = model_id
        self.created = int(time.time())
        self._load = load
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeveda-serve")
        self._engine: Optional[EdgeVeda] = None
        self.load_error: Optional[BaseException] = None
        self._closing = False
        # the stop flag of the job on the thread now; guarded so a late
        # disconnect never cancels the generation of the next request
        self._active: Optional[threading.Event] = None
        self._active_lock = threading.Lock()
        self.on_load_failed: Callable[[BaseException], None] = lambda exc: None
        #: seconds between two sends of a stream's chunks (see Handoff)
        self.stream_interval = STREAM_INTERVAL

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start loading the model (the first job on the host's thread)."""
        self._executor.submit(self._load_job)

    def _load_job(self) -> None:
        delay = float(os.environ.get(LOAD_DELAY_ENV) or 0)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self._closing:
            time.sleep(0.05)
        if self._closing:
            return
        try:
            self._engine = self._load(lambda progress: not self._closing)
        except BaseException as exc:  # noqa: BLE001 - reported to clients and the runner
            self.load_error = exc
            log.error("the model failed to load: %s", exc)
            self.on_load_failed(exc)

    @property
    def ready(self) -> bool:
        """True once the model is loaded (and until shutdown begins)."""
        return self._engine is not None and not self._closing

    def state(self) -> str:
        """``loading``, ``ok``, ``failed`` or ``stopping``."""
        if self._closing:
            return "stopping"
        if self._engine is not None:
            return "ok"
        return "failed" if self.load_error is not None else "loading"

    def check_ready(self) -> None:
        """Raise the 503 a request gets while the model is not usable."""
        state = self.state()
        if state == "ok":
            return
        if state == "loading":
            raise unavailable(f"the model {self.model_id} is loading; retry shortly")
        if state == "failed":
            raise unavailable(f"the model {self.model_id} failed to load: {self.load_error}")
        raise unavailable("the server is shutting down")

    def begin_shutdown(self) -> None:
        """Refuse new and queued work and stop the running generation (SIGTERM)."""
        self._closing = True
        with self._active_lock:
            if self._active is not None:
                self._active.set()
                self._cancel_engine()

    def close(self) -> None:
        """Wait for the thread to finish its job, then free the engine."""
        self.begin_shutdown()
        self._executor.shutdown(wait=True, cancel_futures=True)
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def _cancel_engine(self) -> None:
        if self._engine is not None:
            self._engine.cancel()

    # ----------------------------------------------------------------- jobs

    def _engine_for_job(self) -> EdgeVeda:
        # a job queued before shutdown began runs after it: refuse it
        if self._closing or self._engine is None:
            raise unavailable("the server is shutting down")
        return self._engine

    async def run(self, fn: Callable[[EdgeVeda], T]) -> T:
        """``fn(engine)`` on the host's thread, after the jobs queued before it."""
        self.check_ready()

        def job() -> T:
            return fn(self._engine_for_job())

        return await asyncio.wrap_future(self._executor.submit(job))

    def stream(
        self, start: Callable[[EdgeVeda], Iterator[Any]]
    ) -> tuple[Handoff, Callable[[], None]]:
        """Run ``start(engine)`` and iterate it on the host's thread.

        Returns the chunks as a :class:`Handoff` to ``take`` from (an exception
        raised by the engine comes out of it) and ``stop``: call it when the
        client has gone; it ends the generation now and frees the native
        stream, so the next queued request starts."""
        self.check_ready()
        handoff = Handoff(asyncio.get_running_loop(), self.stream_interval)
        put = handoff.put
        stop = threading.Event()

        def job() -> None:
            try:
                if stop.is_set():  # the client left while queued
                    return
                engine = self._engine_for_job()
                with self._active_lock:
                    self._active = stop
                chunks = start(engine)
                try:
                    for chunk in chunks:
                        if stop.is_set():
                            break
                        put(chunk)
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()  # cancels and frees the native stream
            except BaseException as exc:  # noqa: BLE001 - handed to the request
                put(exc)
            finally:
                with self._active_lock:
                    self._active = None
                put(_END)

        def stop_now() -> None:
            with self._active_lock:
                stop.set()
                if self._active is stop:
                    self._cancel_engine()

        self._executor.submit(job)
        return handoff, stop_now
