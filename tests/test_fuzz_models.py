"""Corrupt model files through ev_init (issue 9): a quick seeded batch of the
fuzzer (tests/fuzz/gguf_fuzz.py; the full 10,000-case run is its own command)
and the saved regression cases. Each case runs in a watched worker process, so
a crash or hang fails the test instead of killing pytest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

import gguf_fuzz  # noqa: E402

QUICK_CASES = 120


@pytest.fixture(scope="module")
def base_bytes(tiny_model_path: Path) -> bytes:
    return tiny_model_path.read_bytes()


def _assert_clean(counts: dict, failures: list) -> None:
    assert not failures, f"{len(failures)} failing cases, first: {json.dumps(failures[0])[:800]}"
    assert set(counts) <= {"loaded", "rejected"}


def test_scan_finds_the_structure(base_bytes: bytes) -> None:
    f = gguf_fuzz.scan(base_bytes)
    assert f.kv_end > 24 and f.ti_end > f.kv_end and len(f.dims) >= 2 * len(f.t_type) // 2
    assert len(f.t_type) == len(f.t_offset) > 10


def test_mutations_are_deterministic(base_bytes: bytes) -> None:
    f = gguf_fuzz.scan(base_bytes)
    assert gguf_fuzz.generate_cases(50, 3, f) == gguf_fuzz.generate_cases(50, 3, f)


@pytest.mark.slow
def test_quick_fuzz_batch_never_crashes(base_bytes: bytes) -> None:
    f = gguf_fuzz.scan(base_bytes)
    cases = gguf_fuzz.generate_cases(QUICK_CASES, 20261125, f)
    counts, failures = gguf_fuzz.run_cases(cases, base_bytes, timeout=60)
    _assert_clean(counts, failures)
    assert counts.get("rejected", 0) > QUICK_CASES // 2  # the mutations do break files


def test_regression_cases(base_bytes: bytes) -> None:
    cases = []
    for path in sorted((Path(gguf_fuzz.REGRESSIONS)).glob("*.json")):
        cases += json.loads(path.read_text())
    assert cases
    counts, failures = gguf_fuzz.run_cases(cases, base_bytes, timeout=60)
    _assert_clean(counts, failures)
    assert counts.get("rejected", 0) == len(cases)  # each once broke a load
