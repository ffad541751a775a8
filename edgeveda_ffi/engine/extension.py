"""The compiled extension, checked: ``ffi``, ``lib`` and the error helpers.

Importing this module fails with a clear ImportError when the extension is
missing or was built from another version of ``edge_veda.h`` (a stale build).
"""

from __future__ import annotations

from typing import Any, Optional

from .._version import HEADER_VERSION
from ..errors import check

try:
    from .._native import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "edgeveda_ffi's native extension (edgeveda_ffi._native) is not built: "
        "run `pip install .` in the source tree (it fetches llama.cpp and compiles the core). "
        f"Original error: {exc}"
    ) from exc

_built = ffi.string(lib.ev_py_header_version()).decode()
if _built != HEADER_VERSION or ffi.string(lib.ev_version()).decode() != HEADER_VERSION:
    raise ImportError(
        f"edgeveda_ffi._native was built from edge_veda.h {_built} but this package expects "
        f"{HEADER_VERSION}: the build is stale; rebuild with `pip install .`"
    )

__all__ = ["ffi", "lib", "c_str", "last_error", "check_native"]


def c_str(ptr: Any) -> str:
    """A C string as ``str`` ("" for NULL), invalid UTF-8 replaced."""
    if ptr == ffi.NULL:
        return ""
    return bytes(ffi.string(ptr)).decode("utf-8", errors="replace")


def last_error() -> str:
    """The calling thread's last native error message."""
    return c_str(lib.ev_last_error_message())


def check_native(code: int, details: Optional[str] = None) -> None:
    """``errors.check`` with this thread's native message as the details."""
    if code != 0:
        check(code, details if details is not None else (last_error() or None))
