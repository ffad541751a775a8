"""``Staging``: the ``.tmp`` one model is fetched into, and what it must match.

The manager makes one ``Staging`` per download or import, under the model's
lock, and hands it to each fetcher in turn. A fetcher calls ``announce`` as
soon as it knows the size (before writing a byte: the size is checked against
the spec, and free space is checked once), then writes through a ``TmpWriter``
(hashing, progress, cancel, disk-full handling) and returns ``Fetched``. The
store verifies and installs it.
"""

from __future__ import annotations

import hashlib
import os
from types import TracebackType
from typing import Optional

from ..errors import FailureReason, ModelValidationException
from .cancel import CancelToken
from .fsutil import is_regular_file, open_for_write, unlink_quiet, wrap_os_error, write_all
from .progress import ProgressReporter
from .spec import ModelSpec
from .store import Fetched, Store

__all__ = ["Staging", "TmpWriter"]


class Staging:
    """One model's ``.tmp`` and its expectations.

    Attributes:
        tmp, resume_state: the ``.tmp`` and its http resume state.
        model_id, name: the model's id and display name (for messages).
        expected_size: the spec's size, or ``None``.
        expected_sha256: the digest that will be checked (decides whether a
            ``.tmp`` may be resumed), or ``None``.
        reporter, token: progress and cancellation.
        what: ``"Download"`` or ``"Import"``, for the cancel message.
    """

    def __init__(
        self,
        store: Store,
        spec: ModelSpec,
        expected_sha256: Optional[str],
        reporter: ProgressReporter,
        token: CancelToken,
        what: str = "Download",
    ) -> None:
        self._store = store
        self.tmp = store.tmp(spec)
        self.resume_state = store.resume_state(spec)
        self.model_id = spec.id
        self.name = spec.name
        self.expected_size = spec.size_bytes
        self.expected_sha256 = expected_sha256
        self.reporter = reporter
        self.token = token
        self.what = what
        self._space_checked = False

    def raise_if_cancelled(self) -> None:
        """Raise ``DownloadCancelledException`` once the token is cancelled."""
        self.token.raise_if_cancelled(self.what)

    def announce(self, total: Optional[int], offset: int, where: str) -> None:
        """``where`` (a source, a response) says the model has ``total`` bytes.

        Checks ``total`` against the spec's size (``ModelValidationException``,
        the ``.tmp`` is removed) and, the first time a total is known, that
        ``total - offset`` bytes fit on the disk (``DownloadException``
        ``DISK_SPACE``). ``None`` (unknown) checks nothing.
        """
        if total is None:
            return
        try:
            Store.check_size(self.model_id, self.expected_size, total, where)
        except ModelValidationException:
            self.discard()
            raise
        if not self._space_checked:
            self._space_checked = True
            self._store.check_free_space(total - offset, self.name)

    def existing_size(self) -> int:
        """Bytes already in a regular ``.tmp`` (0 if none)."""
        return os.lstat(self.tmp).st_size if is_regular_file(self.tmp) else 0

    def discard(self) -> None:
        """Remove the ``.tmp`` and its resume state."""
        unlink_quiet(self.tmp)
        unlink_quiet(self.resume_state)

    def open(
        self,
        *,
        append: bool,
        total: Optional[int],
        offset: int = 0,
        hasher: Optional[hashlib._Hash] = None,
    ) -> TmpWriter:
        """Open the ``.tmp`` for writing (``append`` continues ``offset`` bytes
        hashed into ``hasher``) and send the first progress event."""
        try:
            fd = open_for_write(self.tmp, append)
        except OSError as e:
            raise wrap_os_error(e, "creating the download file", self.tmp) from e
        self.reporter.begin(offset, total)
        return TmpWriter(self, fd, hasher or hashlib.sha256(), offset, total)


class TmpWriter:
    """Writes chunks to the ``.tmp``: hashes, counts, reports progress.

    Before each chunk it raises if the token is cancelled. A chunk past the
    announced ``total`` raises ``ModelValidationException``; a failed write or
    fsync (disk full, ...) raises ``DownloadException``; both remove the
    ``.tmp``. Use as a context manager; ``finish()`` fsyncs and returns
    ``Fetched``.
    """

    def __init__(
        self, staging: Staging, fd: int, hasher: hashlib._Hash, offset: int, total: Optional[int]
    ) -> None:
        self._staging = staging
        self._fd = fd
        self._hasher = hasher
        self.size = offset
        self.total = total

    def write(self, chunk: bytes) -> None:
        """Append ``chunk`` (see the class doc for what raises)."""
        st = self._staging
        st.raise_if_cancelled()
        if self.total is not None and self.size + len(chunk) > self.total:
            self._abort()
            raise ModelValidationException(
                "Source sent more bytes than announced",
                f"{st.model_id}: more than {self.total} bytes",
                reason=FailureReason.SIZE_MISMATCH,
                field="size_bytes",
                expected=self.total,
                actual=self.size + len(chunk),
                model_id=st.model_id,
            )
        try:
            write_all(self._fd, chunk)
        except OSError as e:
            self._abort()
            raise wrap_os_error(e, f"writing {st.name}", st.tmp) from e
        self._hasher.update(chunk)
        self.size += len(chunk)
        st.reporter.update(self.size, self.total)

    def finish(self) -> Fetched:
        """fsync and close the ``.tmp``; its digest and size."""
        try:
            os.fsync(self._fd)
        except OSError as e:
            self._abort()
            raise wrap_os_error(e, f"writing {self._staging.name}", self._staging.tmp) from e
        self._close()
        return Fetched(self._hasher.hexdigest(), self.size)

    def _abort(self) -> None:
        self._close()
        self._staging.discard()

    def _close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> TmpWriter:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._close()
