"""A per-model lock that works across processes and threads.

POSIX: ``fcntl.flock`` on ``<models_dir>/<file name>.lock``. flock locks
belong to an open file description, so two threads of one process exclude each
other as well as two processes; the kernel drops the lock when a process dies
(even by SIGKILL), so a crashed download never leaves a stale lock. The lock
file is opened with ``O_NOFOLLOW`` and never truncated, so a symlink planted
there cannot make us write anywhere. Lock files are left in place (removing
them would race with a process that is opening them). Elsewhere (Windows) the
``filelock`` package is used.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Optional

from ..errors import DownloadException
from .cancel import CancelToken
from .fsutil import unlink_quiet, wrap_os_error

__all__ = ["ModelLock"]

try:
    import fcntl

    _HAVE_FCNTL = True
except ImportError:  # pragma: no cover - Windows
    _HAVE_FCNTL = False


class ModelLock:
    """Exclusive lock on one model's files.

    Args:
        path: the lock file.
        timeout: seconds to wait for another holder; ``None`` waits forever.
        cancel_token: waiting stops with ``DownloadCancelledException`` when
            this token is cancelled.
        poll_interval: seconds between attempts while another holder has it.

    Raises (from ``acquire``/``__enter__``): ``DownloadException`` on timeout
    or when the lock file cannot be created (read-only folder).
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
        self._fd: Optional[int] = None
        self._fallback: Any = None

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(2):
            try:
                return os.open(str(self.path), flags, 0o644)
            except OSError as e:
                if e.errno == errno.ELOOP:  # a planted symlink: remove the link only
                    unlink_quiet(self.path)
                    continue
                raise wrap_os_error(e, "creating the lock file", self.path) from e
        raise DownloadException("Cannot create the lock file", str(self.path))

    def acquire(self) -> None:
        """Block until the lock is held (see the class doc for the limits)."""
        if not _HAVE_FCNTL:  # pragma: no cover - Windows
            self._acquire_fallback()
            return
        fd = self._open()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            while True:
                if self.cancel_token is not None:
                    self.cancel_token.raise_if_cancelled()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._fd = fd
                    return
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise wrap_os_error(e, "locking", self.path) from e
                if deadline is not None and time.monotonic() >= deadline:
                    raise DownloadException(
                        "Timed out waiting for another download of this model",
                        f"{self.path} is still locked after {self.timeout} s",
                    )
                if self.cancel_token is not None:
                    self.cancel_token.wait(self.poll_interval)
                else:
                    time.sleep(self.poll_interval)
        except BaseException:
            os.close(fd)
            raise

    def _acquire_fallback(self) -> None:  # pragma: no cover - Windows
        import filelock

        lock = filelock.FileLock(str(self.path))
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            if self.cancel_token is not None:
                self.cancel_token.raise_if_cancelled()
            try:
                lock.acquire(timeout=self.poll_interval)
                self._fallback = lock
                return
            except filelock.Timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise DownloadException(
                        "Timed out waiting for another download of this model",
                        str(self.path),
                    ) from None

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.release()
            self._fallback = None

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
