"""Compatibility module: ``edgeveda_ffi.model_manager`` keeps the names it had
before the package was split into parts. New code imports them from
``edgeveda_ffi`` (or ``edgeveda_ffi.models``)."""

from __future__ import annotations

from .models import (
    DEFAULT_MODEL_ID,
    KNOWN_MODELS,
    CancelToken,
    DownloadProgress,
    ModelManager,
    ModelSpec,
)

__all__ = [
    "CancelToken",
    "DEFAULT_MODEL_ID",
    "DownloadProgress",
    "KNOWN_MODELS",
    "ModelManager",
    "ModelSpec",
]
