"""What this build of the native core can do (for ``edgeveda info``), and its CPU variants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Union

from ..errors import EdgeVedaException
from . import bindings
from .config import Backend

__all__ = ["CpuVariant", "cpu_variant", "cpu_variants", "native_info"]


@dataclass(frozen=True)
class CpuVariant:
    """One CPU variant module of a build with CPU variants (the wheel).

    ``score`` is ggml's own check of this CPU: > 0 it can execute the variant
    (the highest score is the best), 0 it cannot, -1 the module is missing or
    does not load. ``in_use`` marks the variant this process loaded.
    """

    name: str
    score: int
    in_use: bool = False

    @property
    def supported(self) -> bool:
        """Whether this CPU can execute the variant."""
        return self.score > 0


def cpu_variant() -> str:
    """The CPU variant this process uses: in the wheel the module it loaded
    (``"zen4"``, ``"haswell"``, ...: ``$EDGEVEDA_CPU_VARIANT`` or the best this
    CPU can execute); in a source build ``"native"`` (``-march=native``) or
    ``"generic"``. Loads the CPU backend first, so a bad
    ``$EDGEVEDA_CPU_VARIANT`` raises here: ``ConfigurationException`` for a
    name the build does not carry, ``InitializationException`` for a variant
    this CPU cannot execute or a missing module (the message names the file).
    """
    return bindings.cpu_variant()


def cpu_variants() -> List[CpuVariant]:
    """The CPU variants this build carries, in ggml's order ([] in a source build).

    Asks each module whether this CPU can execute it; does not load the CPU
    backend and does not change the variant in use.
    """
    names = bindings.cpu_variants()
    if not names:
        return []
    try:
        current = bindings.cpu_variant()
    except EdgeVedaException:  # a refused $EDGEVEDA_CPU_VARIANT: none is in use
        current = ""
    return [CpuVariant(n, bindings.cpu_variant_score(n), n == current) for n in names]


def native_info() -> Dict[str, Union[str, bool, Dict[str, bool], List[str]]]:
    """API version, llama.cpp build, CPU variant, backends (detected, available), CPU features.

    Raises as :func:`cpu_variant` when ``$EDGEVEDA_CPU_VARIANT`` is refused.
    """
    variant = bindings.cpu_variant()
    return {
        "api_version": bindings.version(),
        "llama_cpp": bindings.llama_version(),
        "cpu_variant": variant,
        "cpu_variants": bindings.cpu_variants(),
        "detected_backend": bindings.backend_name(bindings.detect_backend()),
        "backends": {b.name.lower(): bindings.is_backend_available(int(b)) for b in Backend},
        "system_info": bindings.system_info(),
    }
