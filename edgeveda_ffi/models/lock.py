"""The per-model lock: ``filelock.FileLock`` on ``<models_dir>/<file name>.lock``.

filelock uses ``fcntl.flock`` on POSIX (the kernel drops the lock when the
holder dies, even by SIGKILL, so a crashed download never leaves a stale lock)
and opens the lock file with ``O_NOFOLLOW`` (since 3.20.1), so a symlink
planted there is never written through: it is removed and the lock file made
anew. Each acquisition opens its own descriptor, so two threads of one process
exclude each other as well as two processes. The lock file stays in place
(removing it would race with a process that is opening it).

What this module adds: waiting that a ``CancelToken`` can interrupt, and
failures as ``DownloadException`` with a ``FailureReason``.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from types import TracebackType
from typing import Optional

import filelock

from ..errors import DownloadException, FailureReason
from .cancel import CancelToken
from .fsutil import unlink_quiet, wrap_os_error

__all__ = ["ModelLock"]


class ModelLock:
    """Exclusive lock on one model's files, across threads and processes.

    Args:
        path: the lock file.
        timeout: seconds to wait for another holder; ``None`` waits forever.
        cancel_token: waiting stops with ``DownloadCancelledException`` when
            this token is cancelled.
        poll_interval: seconds between attempts while another holder has it.

    Raises (from ``acquire``/``__enter__``): ``DownloadException`` with
    ``reason`` ``LOCK_TIMEOUT`` on timeout, or ``NOT_WRITABLE``/``FILESYSTEM``
    when the lock file cannot be created.
    """

    def __init__(
        self,
        path: Path,
        timeout: Optional[float] = None,
        cancel_token: Optional[CancelToken] = None,
        poll_interval: float = 0.05,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.cancel_token = cancel_token
        self.poll_interval = poll_interval
        self._lock = filelock.FileLock(str(path), mode=0o644)

    def acquire(self) -> None:
        """Block until the lock is held (see the class doc for the limits)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        planted_link_removed = False
        while True:
            if self.cancel_token is not None:
                self.cancel_token.raise_if_cancelled()
            try:
                self._lock.acquire(timeout=self.poll_interval, poll_interval=self.poll_interval)
                return
            except filelock.Timeout:
                pass
            except OSError as e:
                if e.errno == errno.ELOOP and not planted_link_removed:
                    unlink_quiet(self.path)  # a planted symlink: remove the link only
                    planted_link_removed = True
                    continue
                raise wrap_os_error(e, "locking", self.path) from e
            if deadline is not None and time.monotonic() >= deadline:
                raise DownloadException(
                    "Timed out waiting for another download of this model",
                    f"{self.path} is still locked after {self.timeout} s",
                    reason=FailureReason.LOCK_TIMEOUT,
                    path=str(self.path),
                )

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()
