"""``ProgressReporter``: byte counts in, ``DownloadProgress`` events out, never backwards."""

from __future__ import annotations

import time
from typing import Callable, Optional

from .spec import DownloadProgress

__all__ = ["ProgressCallback", "ProgressReporter"]

ProgressCallback = Callable[[DownloadProgress], None]


class ProgressReporter:
    """Turns byte counts into ``DownloadProgress`` events that never go backwards.

    An event is dropped if its byte count or its percent would be lower than
    the last one sent (after a restart the bar waits until the new attempt has
    passed the old mark). No event reaches 100 % before ``complete()``, which
    the store calls only after the file is in place. Exceptions raised by the
    callback propagate and abort the operation.
    """

    def __init__(self, callback: Optional[ProgressCallback]) -> None:
        self._callback = callback
        self._last: Optional[DownloadProgress] = None
        self._t0 = time.monotonic()
        self._base = 0

    def begin(self, offset: int, total: Optional[int]) -> None:
        """A new attempt starts at ``offset`` bytes: send the first event (speed 0)."""
        self._t0 = time.monotonic()
        self._base = offset
        self._emit(DownloadProgress(offset, total, 0.0, None))

    def update(self, downloaded: int, total: Optional[int]) -> None:
        """Bytes arrived: send an event with the speed of this attempt and the ETA."""
        elapsed = time.monotonic() - self._t0
        speed = (downloaded - self._base) / elapsed if elapsed > 0 else 0.0
        eta: Optional[float] = None
        if total is not None and speed > 0:
            eta = max(0.0, (total - downloaded) / speed)
        self._emit(DownloadProgress(downloaded, total, speed, eta))

    def complete(self, size: int) -> None:
        """The file is in place: send the 100 % event."""
        speed = self._last.speed_bytes_per_second if self._last else 0.0
        ev = DownloadProgress(size, size, speed, 0.0)
        self._last = ev
        if self._callback is not None:
            self._callback(ev)

    def _emit(self, ev: DownloadProgress) -> None:
        if self._callback is None:
            self._last = ev
            return
        if ev.total_bytes is not None and ev.downloaded_bytes >= ev.total_bytes:
            return  # 100 % only after the rename
        last = self._last
        if last is not None:
            if ev.downloaded_bytes < last.downloaded_bytes:
                return
            lp, p = last.percent, ev.percent
            if lp is not None and (p is None or p < lp):
                return
        self._last = ev
        self._callback(ev)
