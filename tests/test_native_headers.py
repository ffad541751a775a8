"""The C core is written against llama.cpp's public headers only (issue 16).

Every ``#include "..."`` of the core (native/src, native/include) must be one
of our own headers or a header of llama.cpp's public include folders
(``include/``, ``ggml/include/``). llama.cpp's staging header ``src/llama-ext.h``
is read by one file, native/llama_ext/llama_memory_rows.cpp, which is compiled
into the llama target and gives the core a C function instead
(llama_memory_rows.h says why).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "native"
OURS = [NATIVE / "include", NATIVE / "src", NATIVE / "llama_ext", NATIVE / "tests"]
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def _llama_cpp_dir() -> Path:
    """The pinned llama.cpp source, as the build found it (no fetch here)."""
    override = os.environ.get("EDGEVEDA_LLAMA_CPP_DIR")
    if override:
        return Path(override)
    sys.path.insert(0, str(ROOT))
    try:
        import build_native
    finally:
        sys.path.remove(str(ROOT))
    path = build_native.pinned_source_dir(build_native.read_lock())
    if not (path / "include" / "llama.h").is_file():
        pytest.skip(f"the pinned llama.cpp source is not unpacked at {path} (no build ran here)")
    return path


def _includes(folders: List[Path]) -> Dict[str, Set[str]]:
    found: Dict[str, Set[str]] = {}
    for folder in folders:
        for path in sorted(folder.glob("*")):
            if path.suffix in (".h", ".c", ".cpp"):
                for name in INCLUDE.findall(path.read_text(encoding="utf-8")):
                    found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_core_includes_only_its_own_and_llama_cpp_public_headers() -> None:
    src = _llama_cpp_dir()
    public = {p.name for d in (src / "include", src / "ggml" / "include") for p in d.glob("*.h")}
    ours = {p.name for d in OURS for p in d.glob("*.h")}
    private = {p.name for p in (src / "src").glob("*.h")}
    private |= {p.name for p in (src / "ggml" / "src").rglob("*.h")}
    assert "llama-ext.h" in private and "llama.h" in public  # the sets mean what they say

    used = _includes([NATIVE / "include", NATIVE / "src", NATIVE / "tests"])
    assert "llama.h" in used and "llama_memory_rows.h" in used
    bad = {name: sorted(files) for name, files in used.items() if name not in public | ours}
    assert not bad, f"headers that are neither ours nor llama.cpp's public ones: {bad}"
    assert not (set(used) & (private - public)), "the core includes a private llama.cpp header"


def test_only_the_llama_ext_shim_reads_the_staging_header() -> None:
    shim = _includes([NATIVE / "llama_ext"])
    assert shim.get("llama-ext.h") == {"native/llama_ext/llama_memory_rows.cpp"}
    everything = _includes([NATIVE / "include", NATIVE / "src", NATIVE / "tests"])
    assert "llama-ext.h" not in everything
