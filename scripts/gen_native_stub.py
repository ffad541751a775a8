"""Write ``edgeveda_ffi/_native.pyi``, the type stub of the cffi extension,
from ``native/include/edge_veda.h`` (one source of truth; run after the header
changes: ``python scripts/gen_native_stub.py``; tests/test_native_stub.py
fails while the stub is stale)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "native" / "include" / "edge_veda.h"
STUB = ROOT / "edgeveda_ffi" / "_native.pyi"

_INT = {"int", "int32_t", "int64_t", "uint32_t", "size_t", "ev_error_t", "ev_backend_t"}


def declarations(header: str) -> list[tuple[str, str, list[str]]]:
    """``(return type, name, [parameter, ...])`` of every EV_API function."""
    text = re.sub(r"/\*.*?\*/", " ", header, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    out = []
    for m in re.finditer(r"EV_API\s+([^;(]*?)\b(ev_\w+)\s*\(([^)]*)\)\s*;", text):
        ret = " ".join(m.group(1).split())
        params = [" ".join(p.split()) for p in m.group(3).split(",")]
        if params == ["void"]:
            params = []
        out.append((ret, m.group(2), params))
    return out


def py_type(c_type: str, returned: bool) -> str:
    t = c_type.replace("const ", "").strip()
    if "*" in t or t in ("ev_context", "ev_stream") or t.endswith("_callback"):
        return "_CData"
    if t in _INT:
        return "int"
    if t == "bool":
        return "bool"
    if t in ("float", "double"):
        return "float"
    if t == "void":
        return "None"
    raise SystemExit(f"no Python type for C type {c_type!r}")


def param_name(param: str) -> str:
    return re.findall(r"\w+", param)[-1]


def param_type(param: str) -> str:
    return param[: param.rindex(param_name(param))].strip()


def render(decls: list[tuple[str, str, list[str]]]) -> str:
    lines = [
        '"""Type stub of ``edgeveda_ffi._native``, the cffi extension of',
        "``native/include/edge_veda.h`` (written by scripts/gen_native_stub.py from",
        'the header; pointers and handles are cffi ``CData``)."""',
        "",
        "from typing import Any",
        "",
        "_CData = Any",
        "",
        "class _FFI:",
        "    NULL: _CData",
        "    def new(self, cdecl: str, init: Any = ...) -> _CData: ...",
        "    def string(self, cdata: _CData, maxlen: int = ...) -> bytes: ...",
        "    def unpack(self, cdata: _CData, length: int) -> Any: ...",
        "    def new_handle(self, obj: object) -> _CData: ...",
        "    def from_handle(self, handle: _CData) -> Any: ...",
        "    def def_extern(self, name: str = ..., error: Any = ..., onerror: Any = ...)"
        " -> Any: ...",
        "    def __getattr__(self, name: str) -> Any: ...",
        "",
        "class _Lib:",
        "    # the extension's own: the header version it was built from",
        "    def ev_py_header_version(self) -> _CData: ...",
        "    # extern \"Python\" callbacks (edgeveda_ffi/engine/callbacks.py)",
        "    _ev_py_pressure: _CData",
        "    _ev_py_load_progress: _CData",
        "    _ev_py_log: _CData",
    ]
    for ret, name, params in decls:
        args = ", ".join(f"{param_name(p)}: {py_type(param_type(p), False)}" for p in params)
        sep = ", " if args else ""
        lines.append(f"    def {name}(self{sep}{args}) -> {py_type(ret, True)}: ...")
    lines += ["", "ffi: _FFI", "lib: _Lib", ""]
    return "\n".join(lines)


def formatted(text: str) -> str:
    """``text`` as ``ruff format`` writes it (the project's formatter, from the
    [test] extra), so the stub passes the lint as generated."""
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(STUB), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return out.stdout


def main() -> int:
    text = formatted(render(declarations(HEADER.read_text())))
    if "--check" in sys.argv:
        return 0 if STUB.exists() and STUB.read_text() == text else 1
    STUB.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
