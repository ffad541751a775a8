"""Freeing native objects exactly once, and never in a fork()ed child."""

from __future__ import annotations

import os
from typing import Any, List

from ..errors import EngineClosedException
from . import bindings

__all__ = ["free_owned", "free_stream_owned", "foreign_process_error"]


def _free_context(ctx: Any, boxes: List[Any]) -> None:
    # Runs exactly once: from close() or when the engine is garbage-collected.
    bindings.free(ctx)
    boxes.clear()  # handles may go only after the context can no longer call them


def free_owned(pid: int, ctx: Any, boxes: List[Any]) -> None:
    """The engine's finalizer: free the context, except in a fork()ed child.

    A child inherits a copy of the context, whose locks may be held by a parent
    thread that does not exist in the child: freeing it there (at exit, say)
    could hang forever. The parent owns it; the child's copy goes with the child.
    """
    if os.getpid() == pid:
        _free_context(ctx, boxes)


def free_stream_owned(pid: int, handle: Any) -> None:
    if os.getpid() == pid:
        bindings.stream_free(handle)


def foreign_process_error(pid: int) -> EngineClosedException:
    return EngineClosedException(
        "Engine belongs to another process",
        f"this EdgeVeda was created by process {pid} and inherited through fork(); "
        "create a new engine in this process (see docs/safety.md)",
    )
