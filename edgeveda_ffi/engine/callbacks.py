"""Callbacks from C into Python, through cffi's ``@ffi.def_extern`` (static
trampolines: no writable+executable memory, unlike ``ffi.callback``).

The ``void* user_data`` the C side passes back is an ``ffi.new_handle`` of a
Python object that the registering Python object keeps alive while it is
registered. An exception raised by user code never crosses into C: it is
caught here, stored on the owner, and re-raised on the calling thread after
the native call returns (see ``EdgeVeda._raise_pending``), or logged when no
call is waiting for it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, TypeVar

from .bindings import ffi

_log = logging.getLogger("edgeveda_ffi")
_llama_log = logging.getLogger("edgeveda_ffi.llama")

_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}


_F = TypeVar("_F", bound=Callable[..., Any])


def _extern(fn: _F) -> _F:
    """``@ffi.def_extern()`` with its type kept (cffi is untyped): attaches ``fn``
    to the ``extern "Python"`` declaration of the same name."""
    ffi.def_extern()(fn)
    return fn


class CallbackBox:
    """What a native callback's user_data points at: the target and its errors."""

    __slots__ = ("func", "pending", "__weakref__")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.pending: Optional[BaseException] = None

    def take_pending(self) -> Optional[BaseException]:
        exc, self.pending = self.pending, None
        return exc


@_extern
def _ev_py_pressure(user_data: Any, current: int, limit: int) -> None:
    try:
        box: CallbackBox = ffi.from_handle(user_data)
    except Exception:  # pragma: no cover - a bad handle would be our bug
        _log.exception("memory pressure callback: bad handle")
        return
    try:
        box.func(int(current), int(limit))
    except BaseException as exc:  # noqa: BLE001 - must not cross into C
        if box.pending is None:
            box.pending = exc
        else:
            _log.error("memory pressure callback raised again: %r", exc)


@_extern
def _ev_py_load_progress(progress: float, user_data: Any) -> bool:
    box: CallbackBox = ffi.from_handle(user_data)
    try:
        result = box.func(float(progress))
    except BaseException as exc:  # noqa: BLE001 - abort the load, re-raise later
        box.pending = exc
        return False
    return result is not False


@_extern
def _ev_py_log(level: int, text: Any, user_data: Any) -> None:
    try:
        msg = bytes(ffi.string(text)).decode("utf-8", errors="replace").rstrip("\n")
        if msg:
            _llama_log.log(_LEVELS.get(int(level), logging.INFO), "%s", msg)
    except BaseException:  # noqa: BLE001 - logging must never break inference
        pass
