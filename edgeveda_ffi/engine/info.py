"""What this build of the native core can do (for ``edgeveda info``)."""

from __future__ import annotations

from typing import Dict, Union

from . import bindings
from .config import Backend

__all__ = ["native_info"]


def native_info() -> Dict[str, Union[str, bool, Dict[str, bool]]]:
    """API version, llama.cpp build, detected backend, available backends, CPU features."""
    return {
        "api_version": bindings.version(),
        "llama_cpp": bindings.llama_version(),
        "detected_backend": bindings.backend_name(bindings.detect_backend()),
        "backends": {b.name.lower(): bindings.is_backend_available(int(b)) for b in Backend},
        "system_info": bindings.system_info(),
    }
