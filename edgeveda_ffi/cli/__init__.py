"""The ``edgeveda`` command (``python -m edgeveda_ffi``). Uses only the public API."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
