"""The extension's type stub (edgeveda_ffi/_native.pyi) matches the header it
is generated from and the compiled extension it describes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from edgeveda_ffi.engine.bindings import lib

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "edgeveda_ffi" / "_native.pyi"


def _stub_lib_names() -> set[str]:
    tree = ast.parse(STUB.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_Lib")
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    names |= {
        n.target.id
        for n in cls.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }
    return names


def test_stub_is_current_with_the_header() -> None:
    rc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_native_stub.py"), "--check"]
    ).returncode
    assert rc == 0, "edgeveda_ffi/_native.pyi is stale: run python scripts/gen_native_stub.py"


def test_stub_names_every_function_of_the_extension_and_no_other() -> None:
    stub = _stub_lib_names()
    real = {n for n in dir(lib) if n.startswith(("ev_", "_ev_"))}
    assert stub == real, (sorted(stub - real), sorted(real - stub))
    assert len(real) > 40
