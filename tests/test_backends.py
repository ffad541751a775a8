"""Backend selection (DESIGN.md §3, issue 8): what this build offers, and clear errors for the rest.

Runs against whichever extension is imported: the normal CPU build (``pip install -e .``) and, in
the Vulkan stage of ``scripts/test.sh``, the Vulkan build. Tests that need one flavour skip on the
other. The Vulkan-specific generation tests are in ``test_vulkan.py``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeveda_ffi import Backend, InitializationException, NativeErrorCode, native_info
from edgeveda_ffi.engine import EdgeVeda
from edgeveda_ffi.engine.bindings import c_str, lib

BUILD = c_str(lib.ev_llama_version()).rsplit("(backend build: ", 1)[-1].rstrip(")")
VULKAN_BUILD = BUILD == "vulkan"


def _init(model: Path, backend: Backend) -> InitializationException:
    with pytest.raises(InitializationException) as info:
        EdgeVeda(model, backend=backend, context_size=128)
    return info.value


def test_build_flavour_is_reported() -> None:
    assert BUILD in ("cpu", "vulkan", "metal")
    assert native_info()["llama_cpp"].endswith(f"(backend build: {BUILD})")


def test_availability_tells_the_truth() -> None:
    assert lib.ev_is_backend_available(int(Backend.CPU))
    assert lib.ev_is_backend_available(int(Backend.AUTO))
    if sys.platform != "darwin":
        assert not lib.ev_is_backend_available(int(Backend.METAL))
    if not VULKAN_BUILD:
        assert not lib.ev_is_backend_available(int(Backend.VULKAN))
    detected = Backend(lib.ev_detect_backend())
    # AUTO prefers a GPU backend that has a device, else CPU.
    if lib.ev_is_backend_available(int(Backend.METAL)):
        assert detected is Backend.METAL
    elif lib.ev_is_backend_available(int(Backend.VULKAN)):
        assert detected is Backend.VULKAN
    else:
        assert detected is Backend.CPU
    assert native_info()["backends"]["vulkan"] is bool(
        lib.ev_is_backend_available(int(Backend.VULKAN))
    )


@pytest.mark.skipif(sys.platform == "darwin", reason="Metal may exist on macOS")
def test_metal_on_linux_is_unsupported(tiny_model_path: Path) -> None:
    exc = _init(tiny_model_path, Backend.METAL)
    assert exc.code is NativeErrorCode.UNSUPPORTED_BACKEND
    assert "Metal is not compiled into this build" in (exc.details or "")
    assert "metal (macOS only)" in (exc.details or "")


@pytest.mark.skipif(VULKAN_BUILD, reason="this extension is the Vulkan build")
def test_vulkan_on_a_cpu_build_says_the_build_lacks_it(tiny_model_path: Path) -> None:
    exc = _init(tiny_model_path, Backend.VULKAN)
    assert exc.code is NativeErrorCode.UNSUPPORTED_BACKEND
    details = exc.details or ""
    assert "Vulkan is not compiled into this build (EDGEVEDA_BACKEND=cpu)" in details
    assert "rebuild with EDGEVEDA_BACKEND=vulkan" in details


def test_cpu_backend_runs_on_the_cpu_only(
    tiny_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """backend=CPU uses no GPU device even in a GPU build (gpu_layers is ignored)."""
    caplog.set_level(logging.DEBUG, logger="edgeveda_ffi.llama")
    with EdgeVeda(tiny_model_path, backend=Backend.CPU, gpu_layers=-1, context_size=128) as llm:
        assert llm.generate("Hello", max_tokens=2, temperature=0).completion_tokens >= 1
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "edgeveda: backend CPU, gpu_layers 0" in log
    assert "Vulkan0" not in log and "MTL0" not in log


_NO_DEVICE_SCRIPT = r"""
import json, sys
from edgeveda_ffi import Backend, InitializationException
from edgeveda_ffi.engine.bindings import lib
from edgeveda_ffi.engine import EdgeVeda
out = {"available": bool(lib.ev_is_backend_available(int(Backend.VULKAN))),
       "detected": int(lib.ev_detect_backend())}
try:
    EdgeVeda(sys.argv[1], backend=Backend.VULKAN, context_size=128)
except InitializationException as exc:
    out["code"], out["details"] = exc.code.name, exc.details
with EdgeVeda(sys.argv[1], backend=Backend.AUTO, context_size=128) as llm:
    out["auto_tokens"] = llm.generate("Hi", max_tokens=2, temperature=0).completion_tokens
print(json.dumps(out))
"""


@pytest.mark.skipif(not VULKAN_BUILD, reason="needs the Vulkan build")
def test_vulkan_build_without_a_device(tiny_model_path: Path) -> None:
    """No usable device: VULKAN is unavailable and says so; AUTO falls back to the CPU."""
    import edgeveda_ffi

    env = dict(os.environ, GGML_VK_VISIBLE_DEVICES="99")  # an index no machine has
    pkg_parent = str(Path(edgeveda_ffi.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _NO_DEVICE_SCRIPT, str(tiny_model_path)],
        capture_output=True, text=True, env=env, cwd=pkg_parent, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["available"] is False
    assert out["detected"] == int(Backend.CPU)
    assert out["code"] == "UNSUPPORTED_BACKEND"
    assert "Vulkan is compiled in but no Vulkan device was found" in out["details"]
    assert out["auto_tokens"] >= 1
