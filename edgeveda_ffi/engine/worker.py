"""One long-lived worker thread for the main thread's blocking native calls.

Why a worker at all: signals reach only the main thread, and only between
bytecodes, so a generation running *in* the main thread could not be
interrupted by Ctrl-C. The main thread hands the call to the worker and waits
interruptibly (see ``EdgeVeda._interruptible``).

Why one long-lived worker and not a thread per call: a thread start per stream
piece would cost more than the hand-off. Which thread runs ggml's work does not
matter for speed: the core runs all of it on its own compute thread
(native/src/compute_thread.cpp), so calls from this worker, from application
threads and from asyncio executors decode alike (benchmarks/thread_paths.py).

The worker is per process: after ``fork()`` the child gets a new one on first
use (the parent's thread does not exist there).
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable, Generic, List, Optional, TypeVar

T = TypeVar("T")

__all__ = ["Job", "submit"]


class Job(Generic[T]):
    """A call handed to the worker; :meth:`wait` returns True once it has
    returned or raised.

    Done is signalled with one plain lock, held from creation until the call
    ends: a stream hands one job over per piece, and a lock is the cheapest
    wake-up CPython has (an ``Event`` builds a Condition and a waiter lock per
    wait; in the cache-cold moments after a decode that cost ~100 us a piece,
    see benchmarks/README.md).
    """

    __slots__ = ("fn", "_done", "finished", "result", "error")

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self._done = threading.Lock()
        self._done.acquire()
        self.finished = False
        self.result: List[T] = []
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.result.append(self.fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised by the waiting thread
            self.error = exc
        finally:
            self.finished = True
            self._done.release()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the call has ended (True) or ``timeout`` seconds passed
        (False). Interruptible by signals (KeyboardInterrupt) on POSIX."""
        if self.finished:
            return True
        if not self._done.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self._done.release()  # so that every later wait() returns at once
        return True

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result[0]


_lock = threading.Lock()
_jobs: queue.SimpleQueue[Job[Any]] = queue.SimpleQueue()
_worker: Optional[threading.Thread] = None
_worker_pid = 0

#: How many fork()s this process is removed from the first Python process;
#: an object compares it with its own copy in one load where a per-call
#: os.getpid() would be a system call (the stream's per-piece path).
fork_count = 0


def _after_fork_in_child() -> None:
    # the parent's worker does not exist here, and _lock may have been held
    # by a parent thread at the fork
    global _lock, _worker, fork_count
    _lock = threading.Lock()
    _worker = None
    fork_count += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _serve(jobs: queue.SimpleQueue[Job[Any]]) -> None:
    while True:
        jobs.get().run()


def submit(fn: Callable[[], T]) -> Job[T]:
    """Queue ``fn`` on the worker (started on first use, or anew after fork())."""
    job: Job[T] = Job(fn)
    if _worker is None:  # first use, or the first in a fork()ed child (_after_fork_in_child)
        _start()
    _jobs.put(job)
    return job


def _start() -> None:
    global _worker, _worker_pid, _jobs
    with _lock:
        if _worker is None or _worker_pid != os.getpid() or not _worker.is_alive():
            _jobs = queue.SimpleQueue()  # a fork()ed child may inherit a half-used queue
            _worker = threading.Thread(
                target=_serve, args=(_jobs,), name="edgeveda-generate", daemon=True
            )
            _worker.start()
            _worker_pid = os.getpid()


def run_interruptibly(fn: Callable[[], T], cancel: Callable[[], Any]) -> T:
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
    job = submit(fn)
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
