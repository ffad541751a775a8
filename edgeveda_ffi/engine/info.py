"""What this build of the native core can do (for ``edgeveda info``)."""

from __future__ import annotations

from typing import Dict, Union

from .bindings import c_str, lib
from .config import Backend

__all__ = ["native_info"]


def native_info() -> Dict[str, Union[str, bool, Dict[str, bool]]]:
    """API version, llama.cpp build, detected backend, available backends, CPU features."""
    return {
        "api_version": c_str(lib.ev_version()),
        "llama_cpp": c_str(lib.ev_llama_version()),
        "detected_backend": c_str(lib.ev_backend_name(lib.ev_detect_backend())),
        "backends": {b.name.lower(): bool(lib.ev_is_backend_available(int(b))) for b in Backend},
        "system_info": c_str(lib.ev_system_info()),
    }
