"""Native objects' owners: freeing each exactly once, and never in a fork()ed
child. The one place the Python layer tells a fork()ed child from its parent
(the core has its own, ``native/src/fork_guard.cpp``)."""

from __future__ import annotations

import os
from typing import Any, List

from ..errors import EngineClosedException
from . import bindings

__all__ = ["Owner", "free_owned", "free_stream_owned"]

# fork()s between the first Python process and this one. Comparing it is one
# load, where os.getpid() would be a system call on every stream piece.
_forks = 0


def _after_fork_in_child() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Owner:
    """The process a native object was created in."""

    __slots__ = ("pid", "_forks")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._forks = _forks

    @property
    def inherited(self) -> bool:
        """True in a fork()ed child: the object is a copy the child must not touch."""
        return self._forks != _forks

    def foreign_error(self) -> EngineClosedException:
        """The error for using an inherited engine or stream."""
        return EngineClosedException(
            "Engine belongs to another process",
            f"this EdgeVeda was created by process {self.pid} and inherited through fork(); "
            "create a new engine in this process (see docs/safety.md)",
        )


def _free_context(ctx: Any, boxes: List[Any]) -> None:
    # Runs exactly once: from close() or when the engine is garbage-collected.
    bindings.free(ctx)
    boxes.clear()  # handles may go only after the context can no longer call them


def free_owned(owner: Owner, ctx: Any, boxes: List[Any]) -> None:
    """The engine's finalizer: free the context, except in a fork()ed child.

    A child inherits a copy of the context, whose locks may be held by a parent
    thread that does not exist in the child: freeing it there (at exit, say)
    could hang forever. The parent owns it; the child's copy goes with the child.
    """
    if not owner.inherited:
        _free_context(ctx, boxes)


def free_stream_owned(owner: Owner, handle: Any) -> None:
    """A stream's finalizer: free it, except in a fork()ed child."""
    if not owner.inherited:
        bindings.stream_free(handle)
