"""The tools that ``compare.py`` measures with, located or built on first use: ``ev_bench_c``
(our C loop over the static core, via ``build_native.py``), llama-bench and ``llama_ref`` from
the pinned llama.cpp (in ``build/llama-tools``), and llama-cpp-python from its sdist (in
``build/peer-venv``); and llama.cpp's llama-server for ``server_vs_inprocess.py``. With
``build=False`` each returns what is already there, or None.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Tuple

from benchmarks._common import BENCH, BUILD, LLAMA_TOOLS, PEER_VENV, PEER_VERSION, ROOT, _run, log


def _build_native() -> Any:
    spec = importlib.util.spec_from_file_location("_ev_build_native", ROOT / "build_native.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ensure_ev_bench_c(build: bool) -> Optional[Path]:
    """native/tests/bench_c.c built against the static core (build/native-cpu)."""
    out = BUILD / "native-cpu"
    exe = out / "tests" / "ev_bench_c"
    if not build:
        return exe if exe.is_file() else None
    # build_native.py configures with the C tests on and builds them (incremental)
    _run([sys.executable, ROOT / "build_native.py"], "build_native.py", cwd=ROOT)
    return exe if exe.is_file() else None


def _llama_libs(out: Path) -> List[Path]:
    libs = []
    for name in ("libllama.a", "libggml.a", "libggml-cpu.a", "libggml-base.a"):
        found = sorted(out.rglob(name))
        if not found:
            raise RuntimeError(f"{name} not found under {out}")
        libs.append(found[0])
    return libs


#: Written in the build folder's stamp with the source: a folder configured
#: otherwise (before llama-server was built there) is configured anew.
_TOOLS_CONFIG = "tools+server-without-ui"


def _llama_tools_source() -> Path:
    """The pinned llama.cpp with the core's patches, configured into build/llama-tools."""
    bn = _build_native()
    src: Path = bn.patched_source(bn.llama_cpp_dir(), "cpu")  # with the AMX patch, as the core
    stamp = LLAMA_TOOLS / ".edgeveda-source"
    if stamp.is_file() and stamp.read_text() == f"{src}\n{_TOOLS_CONFIG}\n":
        return src
    if LLAMA_TOOLS.exists():  # built from another tree: CMake refuses a new -S for an old -B
        shutil.rmtree(LLAMA_TOOLS)
    log(f"configuring llama.cpp's tools from {src} into {LLAMA_TOOLS}")
    _run(
        [
            "cmake",
            "-S",
            src,
            "-B",
            LLAMA_TOOLS,
            "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DGGML_NATIVE=ON",
            "-DLLAMA_BUILD_TOOLS=ON",
            "-DLLAMA_BUILD_COMMON=ON",
            "-DLLAMA_OPENSSL=OFF",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_SERVER=ON",
            # the server without its web UI: no npm, no download of prebuilt assets
            "-DLLAMA_BUILD_UI=OFF",
            "-DLLAMA_USE_PREBUILT_UI=OFF",
            "-DLLAMA_BUILD_APP=OFF",
            "-DLLAMA_BUILD_IS_DEV=OFF",
            "-DGGML_BACKEND_DL=OFF",
        ],
        "configuring llama.cpp",
    )
    stamp.write_text(f"{src}\n{_TOOLS_CONFIG}\n")
    return src


def _build_llama_target(target: str) -> None:
    log(f"building {target} in {LLAMA_TOOLS} (a few minutes the first time)")
    _run(
        ["cmake", "--build", LLAMA_TOOLS, "--target", target]
        + ["--parallel", str(os.cpu_count() or 2)],
        f"building {target}",
    )


def ensure_llama_server(build: bool) -> Optional[Path]:
    """llama.cpp's own llama-server (C++, without its web UI) from the pinned source, in
    build/llama-tools."""
    exe = LLAMA_TOOLS / "bin" / "llama-server"
    if not build:
        return exe if exe.is_file() else None
    _llama_tools_source()
    _build_llama_target("llama-server")  # incremental: nothing to do when it is up to date
    return exe


def ensure_llama_tools(build: bool) -> Tuple[Optional[Path], Optional[Path]]:
    """llama-bench and llama_ref from the pinned llama.cpp, in build/llama-tools."""
    bench = LLAMA_TOOLS / "bin" / "llama-bench"
    ref = LLAMA_TOOLS / "bin" / "llama_ref"
    ref_src = BENCH / "native" / "llama_ref.c"
    if not build:
        return (bench if bench.is_file() else None), (ref if ref.is_file() else None)
    src = _llama_tools_source()
    _build_llama_target("llama-bench")  # incremental: nothing to do when it is up to date
    libs = _llama_libs(LLAMA_TOOLS)
    newest_input = max(f.stat().st_mtime for f in [ref_src, *libs])
    if not ref.is_file() or ref.stat().st_mtime < newest_input:
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"
        _run(
            [
                cc,
                "-O2",
                "-std=gnu11",
                "-march=native",
                f"-I{src / 'include'}",
                f"-I{src / 'ggml' / 'include'}",
                ref_src,
                *libs,
                "-lstdc++",
                "-fopenmp",
                "-lm",
                "-lpthread",
                "-o",
                ref,
            ],
            "building llama_ref",
        )
    return bench, ref


def _peer_ok() -> bool:
    py = PEER_VENV / "bin" / "python"
    if not py.is_file():
        return False
    probe = subprocess.run(
        [str(py), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip() == PEER_VERSION


def ensure_peer(build: bool) -> Optional[Path]:
    """llama-cpp-python 0.3.36 from its sdist (the same hash as native/llama.cpp.lock)."""
    py = PEER_VENV / "bin" / "python"
    if _peer_ok():
        return py
    if not build:
        return None
    lock = _build_native().read_lock()
    if lock["package"] != "llama-cpp-python" or lock["version"] != PEER_VERSION:
        raise RuntimeError(
            f"native/llama.cpp.lock pins {lock['package']} {lock['version']}, "
            f"not llama-cpp-python {PEER_VERSION}"
        )
    log(
        f"building llama-cpp-python {PEER_VERSION} into {PEER_VENV} "
        "(from source with -DGGML_NATIVE=ON; takes minutes, once)"
    )
    if not py.is_file():
        _run([sys.executable, "-m", "venv", PEER_VENV], "creating the peer venv")
    _run(
        [
            py,
            "-m",
            "pip",
            "install",
            "-q",
            "numpy>=1.20",
            "typing-extensions>=4.5",
            "diskcache>=5.6.1",
            "jinja2>=2.11.3",
        ],
        "installing the peer's dependencies",
    )
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"llama-cpp-python=={PEER_VERSION} --hash=sha256:{lock['sha256']}\n")
        env = dict(os.environ)
        env["CMAKE_ARGS"] = "-DGGML_NATIVE=ON"
        env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(os.cpu_count() or 2)
        _run(
            [
                py,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--no-binary",
                "llama-cpp-python",
                "--require-hashes",
                "-r",
                req,
            ],
            "building llama-cpp-python",
            env=env,
        )
    if not _peer_ok():
        raise RuntimeError("llama-cpp-python installed but does not import")
    return py
