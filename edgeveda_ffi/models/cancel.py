"""``CancelToken``: a thread-safe, resettable cancellation flag with listeners."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

from ..errors import DownloadCancelledException

__all__ = ["CancelToken"]

_log = logging.getLogger("edgeveda_ffi.model_manager")


class CancelToken:
    """Cancels a download (or an import) from any thread.

    ``cancel()`` sets the flag and calls every listener once, on the calling
    thread. The manager registers a listener that shuts down the socket of the
    response being read, so even a download stuck on a silent server stops at
    once; otherwise the flag is seen before the next chunk is written.

    A token can be reused after ``reset()``. Listeners stay registered across
    resets; a listener added to a token that is already cancelled is called
    immediately. Exceptions raised by listeners are logged, never propagated.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @property
    def is_cancelled(self) -> bool:
        """True once ``cancel()`` was called (until ``reset()``)."""
        return self._event.is_set()

    def cancel(self) -> None:
        """Request cancellation and notify the listeners (idempotent)."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            listeners = list(self._listeners)
        for listener in listeners:
            self._call(listener)

    def reset(self) -> None:
        """Clear the flag so the token can be used for another download."""
        self._event.clear()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` when the token is cancelled (now, if it already is)."""
        with self._lock:
            self._listeners.append(listener)
            already = self._event.is_set()
        if already:
            self._call(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Unregister ``listener``; unknown listeners are ignored."""
        with self._lock:
            try:
                self._listeners.remove(listener)
            except ValueError:
                pass

    def wait(self, timeout: Optional[float]) -> bool:
        """Sleep up to ``timeout`` seconds; return True early if cancelled."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self, what: str = "Download") -> None:
        """Raise ``DownloadCancelledException`` if the token is cancelled."""
        if self._event.is_set():
            raise DownloadCancelledException(f"{what} cancelled")

    @staticmethod
    def _call(listener: Callable[[], None]) -> None:
        try:
            listener()
        except Exception:  # noqa: BLE001 - a listener must never break cancel()
            _log.exception("CancelToken listener failed")

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.is_cancelled})"
