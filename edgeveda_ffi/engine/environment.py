"""The environment variables the engine reads. Pure Python (no extension)."""

from __future__ import annotations

import os
from typing import Optional

from ..errors import ConfigurationException

__all__ = ["CPU_EXTRA_BUFFERS_ENV", "CPU_VARIANT_ENV", "cpu_extra_buffers_from_env"]

#: Environment variable giving ``Config.cpu_extra_buffers`` when the field is not given.
CPU_EXTRA_BUFFERS_ENV = "EDGEVEDA_CPU_EXTRA_BUFFERS"

#: Environment variable naming the CPU variant a build with variants (the wheel)
#: loads instead of the best one for this CPU (read once per process, at the
#: first load; see ``edgeveda_ffi.cpu_variants``).
CPU_VARIANT_ENV = "EDGEVEDA_CPU_VARIANT"

_ON_OFF = {"on": True, "off": False}


def cpu_extra_buffers_from_env() -> Optional[bool]:
    """``$EDGEVEDA_CPU_EXTRA_BUFFERS`` as a bool (``on``/``off``, any case), or
    None when it is unset or empty; any other value raises ConfigurationException."""
    raw = os.environ.get(CPU_EXTRA_BUFFERS_ENV)
    if raw is None or not raw.strip():
        return None
    value = _ON_OFF.get(raw.strip().lower())
    if value is None:
        raise ConfigurationException(
            "Invalid parameter",
            f"{CPU_EXTRA_BUFFERS_ENV}={raw!r}: must be 'on' or 'off' (any case); "
            "unset it for the default (on)",
            field="cpu_extra_buffers",
        )
    return value
