"""The one way the package runs work off the caller's thread: a cancellable
:class:`Job` on one long-lived worker thread.

Every blocking native call of the engine (a generation, a stream piece) and
every download of the model manager that must stay interruptible goes through
:func:`run` (blocking callers) or :func:`run_async` (asyncio):

* :func:`run` from the main thread hands the call to the worker and waits
  interruptibly, because signals reach only the main thread and only between
  bytecodes: a generation running *in* the main thread could not be stopped by
  Ctrl-C. On KeyboardInterrupt it cancels the job, waits for the call to wind
  down (the caller may free what the call uses once it returns) and re-raises.
  From any other thread it calls directly: there is nothing to interrupt.
* :func:`run_async` awaits a job from an event loop without blocking it. When
  the awaiting task is cancelled, the job is cancelled and awaited before the
  CancelledError goes on, so the caller may free what the call uses.

Why one long-lived worker and not a thread per call: a stream hands over one
call per piece, and a thread start would cost more than the hand-off. Which
thread runs ggml's work does not matter for speed: the core runs all of it on
its own compute thread (native/src/compute_thread.cpp), so calls from this
worker, from application threads and from event loops decode alike
(benchmarks/thread_paths.py). The worker is per process: after ``fork()`` the
child starts a new one on first use.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from typing import Any, Callable, Generic, List, Optional, TypeVar

from ..errors import MemoryException

T = TypeVar("T")

__all__ = ["Job", "JobCancelled", "submit", "run", "run_async"]


class JobCancelled(Exception):
    """A job was cancelled before it started; its function never ran."""


class Job(Generic[T]):
    """A call handed to the worker, with the way to cancel it.

    ``cancel`` is the call's own cancel function (``ev_generate_cancel``,
    ``ev_stream_cancel``, a download's cancel token): it must be safe from any
    thread and make the running call return soon. A job cancelled before it
    starts never runs.

    Done is signalled with one plain lock, held from creation until the call
    ends: a stream hands over one job per piece, and a lock is the cheapest
    wake-up CPython has (an ``Event`` builds a Condition and a waiter lock per
    wait; ~100 us a piece in the cache-cold moments after a decode, see
    benchmarks/README.md).
    """

    __slots__ = ("fn", "_cancel", "_done", "finished", "cancelled", "result", "error", "_then")

    def __init__(self, fn: Callable[[], T], cancel: Optional[Callable[[], Any]] = None) -> None:
        self.fn = fn
        self._cancel = cancel
        self._done = threading.Lock()
        self._done.acquire()
        self.finished = False
        self.cancelled = False
        self.result: List[T] = []
        self.error: Optional[BaseException] = None
        self._then: Optional[Callable[[Job[T]], None]] = None

    def run(self) -> None:
        try:
            if self.cancelled:
                raise JobCancelled("cancelled before it started")
            self.result.append(self.fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised by the waiting thread
            self.error = exc
        finally:
            self.finished = True
            self._done.release()
            then = self._then
            if then is not None:
                then(self)

    def cancel(self) -> None:
        """Ask the call to stop (from any thread); a queued job will not start."""
        self.cancelled = True
        if self._cancel is not None and not self.finished:
            self._cancel()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the call has ended (True) or ``timeout`` seconds passed
        (False). Interruptible by signals (KeyboardInterrupt) on POSIX."""
        if self.finished:
            return True
        if not self._done.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self._done.release()  # so that every later wait() returns at once
        return True

    def wait_through_interrupts(self) -> None:
        """Wait for the end even through more Ctrl-Cs, cancelling again at each."""
        while not self.finished:
            try:
                self.wait()
            except KeyboardInterrupt:
                self.cancel()

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result[0]


_lock = threading.Lock()
_jobs: queue.SimpleQueue[Job[Any]] = queue.SimpleQueue()
_worker: Optional[threading.Thread] = None


def _after_fork_in_child() -> None:
    # the parent's worker does not exist here, and _lock may have been held
    # by a parent thread at the fork
    global _lock, _worker
    _lock = threading.Lock()
    _worker = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _serve(jobs: queue.SimpleQueue[Job[Any]]) -> None:
    while True:
        jobs.get().run()


def _start() -> None:
    global _worker, _jobs
    with _lock:
        if _worker is None or not _worker.is_alive():
            _jobs = queue.SimpleQueue()  # a fork()ed child may inherit a half-used queue
            worker = threading.Thread(
                target=_serve, args=(_jobs,), name="edgeveda-worker", daemon=True
            )
            try:
                worker.start()
            except RuntimeError as exc:  # "can't start new thread": no memory for its stack
                _worker = None
                raise MemoryException(
                    "Out of memory", f"cannot start the engine's worker thread: {exc}", exc
                ) from exc
            _worker = worker


def submit(
    fn: Callable[[], T],
    cancel: Optional[Callable[[], Any]] = None,
    then: Optional[Callable[[Job[T]], None]] = None,
) -> Job[T]:
    """Queue ``fn`` on the worker (started on first use, or anew after fork());
    ``then(job)`` runs on the worker when it has ended."""
    job: Job[T] = Job(fn, cancel)
    job._then = then
    if _worker is None:  # first use, or the first in a fork()ed child (_after_fork_in_child)
        _start()
    _jobs.put(job)
    return job


def on_worker() -> bool:
    """True in the worker thread itself (a job that waits for another job
    there would wait forever)."""
    return threading.current_thread() is _worker


def run(fn: Callable[[], T], cancel: Optional[Callable[[], Any]] = None) -> T:
    """Call ``fn`` so that Ctrl-C cancels it: on the worker from the main
    thread (waiting interruptibly), directly from any other thread."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    job = submit(fn, cancel)
    try:
        while not job.wait(0.25):
            pass
    except KeyboardInterrupt:
        # The call must end before the caller may release (and perhaps free)
        # what it uses: wait for it, even through more Ctrl-Cs.
        job.cancel()
        job.wait_through_interrupts()
        raise
    return job.outcome()


async def run_async(fn: Callable[[], T], cancel: Optional[Callable[[], Any]] = None) -> T:
    """Await ``fn`` run on the worker, without blocking the event loop.

    When the awaiting task is cancelled, the job is cancelled and awaited
    before the CancelledError goes on. From inside the worker itself (an
    event loop run by a job), ``fn`` is called directly.
    """
    if on_worker():
        return fn()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(_: Job[T]) -> None:
        try:
            loop.call_soon_threadsafe(_resolve, done)
        except RuntimeError:  # the loop is closed: nobody awaits any more
            pass

    job = submit(fn, cancel, settle)
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        job.cancel()
        while not job.finished:
            try:
                await asyncio.shield(done)
            except asyncio.CancelledError:
                job.cancel()
        raise
    return job.outcome()


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
