"""The AMX tile-config patch (native/patches/ggml-amx-tile-config.patch, docs/safety.md).

GCC < 14 implements ``_tile_loadconfig()`` as an asm that names 8 of the config's 64 bytes as
read (PR target/114098), so at -O3 it drops the stores filling ggml's tile config and every
batch of >= 2 tokens crashed on AMX CPUs. (a) the patch applies once to the pinned source and
is skipped where applied; (b) the assembly of the real ``mmq.cpp`` keeps the stores with the
patch and, under a compiler with the bug, loses them without it (any x86-64 machine with g++);
(c) a prompt of several tokens runs through the AMX path on a CPU with AMX.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Set

import pytest

ROOT = Path(__file__).resolve().parent.parent
BARRIER = '__asm__ __volatile__("" : : "m"(tc) : "memory");'


def _load_build_native():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_ev_build_native", ROOT / "build_native.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bn = _load_build_native()


class Mmq(NamedTuple):
    src: Path  # the llama.cpp tree the build uses (the pinned source)
    path: Path  # its ggml/src/ggml-cpu/amx/mmq.cpp
    text: str
    patched: str  # text with the patch applied by build_native.apply_patch


@pytest.fixture(scope="module")
def mmq() -> Mmq:
    src = bn.llama_cpp_dir()
    path = src / bn._read_patch(bn.AMX_PATCH)[0]
    text = path.read_text(encoding="utf-8")
    return Mmq(src, path, text, bn.apply_patch(text, bn.AMX_PATCH) or "")


# --------------------------------------------------------------------------------------------
# (a) the patch and how build_native.py applies it
# --------------------------------------------------------------------------------------------


def test_patch_applies_once_to_the_pinned_source(mmq: Mmq) -> None:
    rel, before, after = bn._read_patch(bn.AMX_PATCH)
    assert rel == "ggml/src/ggml-cpu/amx/mmq.cpp"
    text, patched = mmq.text, mmq.patched
    assert text.count(before) == 1 and BARRIER not in text
    assert patched.count(BARRIER) == 1 and patched.count(after) == 1
    # The barrier sits right before the intrinsic, after every store to tc.
    assert re.search(
        r"tc\.colsb\[7\] = 64;\n\n#if defined\(__GNUC__\)\n.*\n.*\n    "
        + re.escape(BARRIER)
        + r"\n#endif\n    _tile_loadconfig\(&tc\);",
        patched,
    )
    assert bn.apply_patch(patched, bn.AMX_PATCH) is None  # applied already: skipped
    assert bn.source_patches(mmq.src, "cpu") == [bn.AMX_PATCH]  # every backend gets it


def _tree(root: Path, mmq_text: str) -> Path:
    (root / "include").mkdir(parents=True)
    (root / "include" / "llama.h").write_text("/* stand-in */\n")
    path = root / bn._read_patch(bn.AMX_PATCH)[0]
    path.parent.mkdir(parents=True)
    path.write_text(mmq_text)
    return root


def test_patched_copy_leaves_the_source_alone(
    mmq: Mmq, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for an EDGEVEDA_LLAMA_CPP_DIR tree: patched into a copy, idempotent, strict context."""
    monkeypatch.setenv("EDGEVEDA_CACHE_DIR", str(tmp_path / "cache"))
    src = _tree(tmp_path / "llama.cpp", mmq.text)
    rel = bn._read_patch(bn.AMX_PATCH)[0]
    before = (src / rel).stat()

    dst = bn.patched_source(src, "cpu")
    assert dst.parent == tmp_path / "cache" and dst.name.endswith("-amx-tile-config")
    assert (dst / rel).read_text() == mmq.patched
    assert (src / rel).read_text() == mmq.text and (src / rel).stat().st_ino == before.st_ino
    assert (dst / "include" / "llama.h").stat().st_ino == (
        src / "include" / "llama.h"
    ).stat().st_ino
    mtime = (dst / rel).stat().st_mtime_ns
    assert bn.patched_source(src, "cpu") == dst and (dst / rel).stat().st_mtime_ns == mtime

    # A tree that has the barrier already is built as it is.
    done = _tree(tmp_path / "patched", mmq.patched)
    assert bn.patched_source(done, "cpu") == done

    # A llama.cpp whose context no longer matches stops the build.
    changed = mmq.text.replace("tc.rows[7] = 16;", "tc.rows[7] = 8;")
    with pytest.raises(bn.BuildError, match="found 0 times, expected once"):
        bn.patched_source(_tree(tmp_path / "changed", changed), "cpu")


# --------------------------------------------------------------------------------------------
# (b) the assembly: the stores before ldtilecfg
# --------------------------------------------------------------------------------------------

_ZEROING = re.compile(r"v?p?xor[a-z]*$")
_STORE_DST = re.compile(r"(-?\d*)\((%\w+)\)$")
_BLOCK_LABEL = re.compile(r"\.L\d+:|\.LFB\d+:|[A-Za-z_][\w$.]*:")  # not .LVL/.LBB (-g)
_PALETTE, _COLSB, _ROWS = {0}, set(range(16, 32)), set(range(48, 56))  # tiles 0-7


def _family(reg: str) -> str:
    """%al/%eax/%rax -> a, %xmm3/%zmm3 -> v3, %r8d -> r8 (one name per physical register)."""
    reg = reg.lstrip("%")
    m = re.fullmatch(r"[xyz]mm(\d+)", reg)
    if m:
        return "v" + m.group(1)
    m = re.fullmatch(r"(r\d+)[dwb]?|[re]?([a-d])[xlh]|[re]?(si|di|bp|sp)l?", reg)
    return next(g for g in m.groups() if g) if m else reg


def _width(mnemonic: str, src: str) -> int:
    if mnemonic in ("movq", "vmovq", "movd", "vmovd"):
        return 8 if mnemonic.endswith("q") else 4
    m = re.match(r"%([xyz])mm", src)
    if m:
        return {"x": 16, "y": 32, "z": 64}[m.group(1)]
    return {"b": 1, "w": 2, "l": 4, "q": 8}.get(mnemonic[-1], 0)


def config_stores(asm: str) -> List[Dict[str, Set[int]]]:
    """For each ``ldtilecfg``: the config bytes stored in its basic block, and the non-zero ones.

    The zero-initialisation (``tc = {}``: a store of a register cleared by a ``xor`` idiom, or
    of ``$0``) counts as stored but not as non-zero, so rows/colsb must be stored by their own
    instructions.
    """
    lines = [ln.split("#", 1)[0].strip() for ln in asm.splitlines()]
    found = []
    for i, line in enumerate(lines):
        if not line.startswith("ldtilecfg"):
            continue
        m = re.fullmatch(r"ldtilecfg\s+(-?\d*)\((%\w+)\)", line)
        assert m, f"unexpected ldtilecfg operand: {line!r}"
        cfg, base = int(m.group(1) or 0), m.group(2)
        start = i
        while start > 0 and not _BLOCK_LABEL.fullmatch(lines[start - 1]):
            start -= 1
        zero_regs: Set[str] = set()
        stored: Dict[int, bool] = {}
        for ln in lines[start:i]:
            parts = ln.split(None, 1)
            if len(parts) < 2 or parts[0].startswith("."):
                continue  # labels, directives, instructions without operands
            mnemonic = parts[0]
            ops = [o.strip() for o in re.split(r",(?![^(]*\))", parts[1])]  # not inside (...)
            dst = _STORE_DST.fullmatch(ops[-1])
            if dst and dst.group(2) == base and mnemonic.startswith(("mov", "vmov")):
                off, width = int(dst.group(1) or 0) - cfg, _width(mnemonic, ops[0])
                zero = ops[0] == "$0" or _family(ops[0]) in zero_regs
                for byte in range(max(off, 0), min(off + width, 64)):
                    stored[byte] = not zero
            elif ops[-1].startswith("%"):
                reg = _family(ops[-1])
                if _ZEROING.match(mnemonic) and {_family(o) for o in ops} == {reg}:
                    zero_regs.add(reg)
                else:
                    zero_regs.discard(reg)
        found.append({"stored": set(stored), "nonzero": {b for b, nz in stored.items() if nz}})
    return found


def _compiler_has_pr114098(cxx: str, flags: List[str]) -> bool:
    """Whether this compiler's _tile_loadconfig is the narrow asm of GCC < 14."""
    proc = subprocess.run(
        [cxx, *flags, "-E", "-x", "c++", "-"],
        input="#include <immintrin.h>\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return re.search(r'__asm__\s+volatile\s*\(\s*"ldtilecfg', proc.stdout) is not None


# The flags the AMX code is built with: ggml's native build on Sapphire Rapids, and the
# wheel's sapphirerapids CPU variant (GGML_CPU_ALL_VARIANTS: ggml/src/CMakeLists.txt).
_ARCH_FLAGS = {
    "native": ["-march=sapphirerapids"],
    "wheel-variant": [
        "-msse4.2", "-mf16c", "-mfma", "-mbmi2", "-mavx", "-mavx2", "-mavx512f", "-mavx512cd",
        "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mavx512vbmi", "-mavx512vnni",
        "-mavx512bf16", "-mamx-tile", "-mamx-int8",
    ],
}  # fmt: skip


@pytest.fixture(
    scope="module",
    params=[(c, a) for c in ("g++", "clang++") for a in _ARCH_FLAGS],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def assembly(
    request: pytest.FixtureRequest, mmq: Mmq, tmp_path_factory: pytest.TempPathFactory
) -> Dict[str, Optional[str]]:
    """mmq.cpp compiled at -O3 with its includes and defines, by each compiler the README
    supports (GCC, Clang) and with each set of AMX flags (the native build's, the wheel
    variant's): patched, and unpatched when the compiler has the bug (None if not).
    """
    compiler, arch_name = request.param
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("needs an x86-64 machine (the AMX code is x86-only)")
    cxx = shutil.which(compiler)
    if cxx is None:
        pytest.skip(
            f"needs {compiler} (apt-get install {'clang' if 'clang' in compiler else 'g++'})"
        )
    arch = _ARCH_FLAGS[arch_name]
    if subprocess.run([cxx, *arch, "-E", "-x", "c++", os.devnull], capture_output=True).returncode:
        pytest.skip(f"{compiler} does not know {' '.join(arch)} (GCC >= 11, Clang >= 12 do)")
    ggml = mmq.path.parents[3]  # <src>/ggml
    flags = [
        *arch,
        "-O3",
        "-DNDEBUG",
        "-std=gnu++17",
        "-fPIC",
        "-fopenmp",
        "-DGGML_USE_CPU_REPACK",
        "-DGGML_USE_LLAMAFILE",
        "-DGGML_USE_OPENMP",
        "-D_GNU_SOURCE",
        "-D_XOPEN_SOURCE=600",
        f"-I{ggml / 'src' / 'ggml-cpu' / 'amx'}",  # the patched text comes from stdin
        f"-I{ggml / 'src'}",
        f"-I{ggml / 'src' / 'ggml-cpu'}",
        f"-I{ggml / 'include'}",
    ]
    macros = subprocess.run(
        [cxx, *arch, "-dM", "-E", "-x", "c++", os.devnull], capture_output=True, text=True
    ).stdout
    if "__AMX_INT8__" not in macros:
        pytest.skip(
            f"{compiler} does not define __AMX_INT8__ for these flags (Clang 14 spells it "
            "__AMXINT8__), so ggml compiles no AMX code with it: nothing to miscompile"
        )
    omp = subprocess.run(
        [cxx, "-fopenmp", "-E", "-x", "c++", "-"], input=b"#include <omp.h>\n", capture_output=True
    )
    if omp.returncode != 0:  # no OpenMP runtime for this compiler: ggml builds without it
        flags = [f for f in flags if f not in ("-fopenmp", "-DGGML_USE_OPENMP")]
    out = tmp_path_factory.mktemp("amx-asm")
    sources = {"patched": "-"}
    if _compiler_has_pr114098(cxx, arch):
        sources["unpatched"] = str(mmq.path)  # the real file as it is
    jobs = {  # in parallel: ~7 s each
        name: subprocess.Popen(
            [cxx, *flags, "-S", "-o", str(out / f"{name}.s"), "-x", "c++", source],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, source in sources.items()
    }
    asm: Dict[str, Optional[str]] = {"unpatched": None}
    for name, job in jobs.items():
        _, err = job.communicate(mmq.patched if name == "patched" else "", timeout=300)
        assert job.returncode == 0, f"{name}: {err[-3000:]}"
        asm[name] = (out / f"{name}.s").read_text()
    return asm


def test_patched_assembly_stores_the_whole_config(assembly: Dict[str, Optional[str]]) -> None:
    sites = config_stores(assembly["patched"] or "")
    assert sites, "no ldtilecfg in the patched mmq.cpp: is the AMX code compiled in?"
    for site in sites:
        assert site["stored"] == set(range(64)), f"config bytes not stored: {site}"
        missing = (_PALETTE | _COLSB | _ROWS) - site["nonzero"]
        assert not missing, f"no store of config bytes {sorted(missing)} before ldtilecfg"


def test_unpatched_assembly_loses_rows_and_colsb(assembly: Dict[str, Optional[str]]) -> None:
    """The bug the patch fixes, shown with this compiler (GCC < 14)."""
    if assembly["unpatched"] is None:
        pytest.skip(
            "this compiler implements _tile_loadconfig with a builtin (Clang, GCC >= 14): it "
            "has no PR 114098 to show; only the patched build is checked"
        )
    sites = config_stores(assembly["unpatched"])
    assert sites
    for site in sites:
        assert not (_COLSB | _ROWS) <= site["nonzero"], (
            "the unpatched build keeps the rows/colsb stores: this compiler does not show "
            "PR 114098 after all, so the assembly test cannot tell that the patch works"
        )


def test_config_stores_parser() -> None:
    """The checker itself, on the two sequences GCC 12 emits for ggml_tile_config_init()."""
    head = "\tvpxor\t%xmm0, %xmm0, %xmm0\n\tvmovdqa64\t%zmm0, 192(%rsp)\n\tmovb\t$1, 192(%rsp)\n"
    tail = "#APP\n\tldtilecfg\t192(%rsp)\n#NO_APP\n"
    bad = config_stores(".L1:\n" + head + tail)
    assert bad == [{"stored": set(range(64)), "nonzero": {0}}]
    good = config_stores(
        ".L1:\n" + head + "\tmovq\t.LC38(%rip), %rax\n\tvmovdqa\t.LC39(%rip), %xmm0\n"
        "\tmovq\t%rax, 240(%rsp)\n\tvmovdqa\t%xmm0, 208(%rsp)\n" + tail
    )
    assert good[0]["nonzero"] == _PALETTE | _COLSB | _ROWS


# --------------------------------------------------------------------------------------------
# (c) at run time, on a CPU with AMX
# --------------------------------------------------------------------------------------------


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return {"amx_tile", "amx_int8"} <= set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return False


_RUN = """
import logging, sys
from edgeveda_ffi import EdgeVeda
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
logging.getLogger("edgeveda_ffi.llama").setLevel(logging.INFO)
with EdgeVeda(sys.argv[1], context_size=256, num_threads=2) as engine:
    r = engine.generate("The quick brown fox jumps over the lazy dog. Then the dog",
                        max_tokens=4, temperature=0)
    assert r.prompt_tokens >= 2 and r.completion_tokens == 4, r
    print(repr(r.text))
"""


@pytest.mark.smollm2
@pytest.mark.skipif(not _cpu_has_amx(), reason="CPU has no AMX (amx_tile/amx_int8 flags absent)")
def test_prompt_batch_runs_through_amx(smollm2_path: Path) -> None:
    """A 2+ token batch: the AMX kernels with the tile config (a crash before the patch)."""
    env = {k: v for k, v in os.environ.items() if k != "EDGEVEDA_CPU_EXTRA_BUFFERS"}
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, str(smollm2_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode} (-11 = SIGSEGV, -4 = SIGILL: the tile config was not loaded)\n"
        f"{proc.stderr[-3000:]}"
    )
    if "AMX model buffer size" not in proc.stderr:
        pytest.skip("ran, but llama.cpp put no weights in an AMX buffer (AMX not compiled in?)")
