"""The package's shape (issue 16): small modules, no import cycles, and the
command line, the examples and the benchmarks on the public API only."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "edgeveda_ffi"
#: What outside code may import: the package itself, its errors, and the raw
#: binding (one typed function per C function, as PyNaCl's nacl.bindings).
PUBLIC = {"edgeveda_ffi", "edgeveda_ffi.errors", "edgeveda_ffi.engine.bindings"}
#: The optional server (extra [server]) is public too: ``edgeveda serve`` runs
#: it, and its ``create_app`` can be mounted in another ASGI application.
PUBLIC_SERVER = "edgeveda_ffi.server"


def _modules() -> Dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, top_level_only: bool) -> Iterator[str]:
    """Absolute names of the package modules ``module`` imports (at import
    time when ``top_level_only``: not in functions or TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(nodes: List[ast.stmt]) -> Iterator[ast.stmt]:
        for n in nodes:
            if isinstance(n, ast.If) and _is_type_checking(n):
                if not top_level_only:
                    yield from visit(n.body)
                continue
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if not top_level_only:
                    yield from (c for c in ast.walk(n) if isinstance(c, ast.stmt))
                continue
            if isinstance(n, (ast.If, ast.Try, ast.With)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(n, field, []):
                        yield from visit(
                            getattr(child, "body", [child])
                            if isinstance(child, ast.ExceptHandler)
                            else [child]
                        )
                continue
            yield n

    for n in visit(tree.body):
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = package.split(".")
                base = base[: len(base) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module or ""
            if target.startswith("edgeveda_ffi"):
                yield target
                for alias in n.names:  # "from . import worker" names a module
                    yield f"{target}.{alias.name}"
        elif isinstance(n, ast.Import):
            for alias in n.names:
                if alias.name.startswith("edgeveda_ffi"):
                    yield alias.name


def test_no_module_over_500_lines() -> None:
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_no_import_cycles() -> None:
    mods = _modules()
    graph: Dict[str, Set[str]] = {
        m: {t for t in _imports(m, p, top_level_only=True) if t in mods and t != m}
        for m, p in mods.items()
    }
    # a package's __init__ is imported before its modules: an edge to a parent
    # package is not a cycle through the child
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    state: Dict[str, int] = {}
    stack: List[str] = []
    cycles: List[Tuple[str, ...]] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(tuple(stack[stack.index(t) :] + [t]))
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)
    assert not cycles, cycles
    assert len(graph) > 30  # the walk saw the package


def test_cli_uses_only_the_public_api() -> None:
    mods = _modules()
    bad = {}
    for m, p in mods.items():
        if not m.startswith("edgeveda_ffi.cli"):
            continue
        outside = {
            t
            for t in _imports(m, p, top_level_only=False)
            if t in mods
            and not t.startswith("edgeveda_ffi.cli")
            and t not in PUBLIC
            and t != PUBLIC_SERVER
        }
        if outside:
            bad[m] = sorted(outside)
    assert not bad, bad


def _outside_imports(path: Path) -> Set[str]:
    tree = ast.parse(path.read_text())
    names: Set[str] = set()
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.ImportFrom)
            and not n.level
            and (n.module or "").startswith("edgeveda_ffi")
        ):
            names.add(n.module or "")
        elif isinstance(n, ast.Import):
            names |= {a.name for a in n.names if a.name.startswith("edgeveda_ffi")}
    return names


def test_examples_and_benchmarks_use_only_the_public_api() -> None:
    files = sorted((ROOT / "examples").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    bad = {str(f.relative_to(ROOT)): sorted(_outside_imports(f) - PUBLIC) for f in files}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, bad
    assert len(files) > 10


def test_server_uses_only_the_public_api() -> None:
    mods = _modules()
    bad = {}
    for m, p in mods.items():
        if not m.startswith(PUBLIC_SERVER):
            continue
        outside = {
            t
            for t in _imports(m, p, top_level_only=False)
            if t in mods and not t.startswith(PUBLIC_SERVER) and t not in PUBLIC
        }
        if outside:
            bad[m] = sorted(outside)
    assert not bad, bad
    assert any(m.startswith(PUBLIC_SERVER + ".") for m in mods)


def test_pure_parts_import_without_the_extension() -> None:
    """errors, results, the JSON-schema compiler and the model manager load with
    the compiled extension missing; the engine names then fail with the clear
    ImportError of engine/extension.py."""
    import subprocess
    import sys

    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "edgeveda_ffi._native":
            raise ImportError("blocked for the test")
        return None
sys.meta_path.insert(0, Block())
import edgeveda_ffi
from edgeveda_ffi import ModelManager, MemoryStats, NativeErrorCode, schema_to_gbnf
from edgeveda_ffi.models import DEFAULT_MODEL_ID
assert schema_to_gbnf({"type": "boolean"})
assert MemoryStats(1, 1, 2, 1, 0).usage_ratio == 0.5
assert "_native" not in sys.modules and "edgeveda_ffi._native" not in sys.modules
try:
    edgeveda_ffi.EdgeVeda
except ImportError as exc:
    assert "pip install" in str(exc), exc
    print("clear ImportError")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clear ImportError"
