"""The benchmarks run in the test command, once and small, so they cannot rot.

* every pytest-benchmark bench in ``benchmarks/`` once (``--benchmark-disable``:
  quick sizes, no timing loops);
* ``benchmarks.compare.main(["--quick", "--paired", "1", ...])``: one small
  round of every tool that is already built (it builds nothing in quick mode),
  one block of the paired mode (the tools as long-lived workers), and the curl
  vs ``ModelManager`` download on two small files, checked for the JSON it
  writes.

The real measurements are ``python -m benchmarks.compare`` (benchmarks/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("EDGEVEDA_TEST_INSTALLED") == "1",
        reason="the benchmarks are tools of the source checkout: they run from it, beside its "
        "own edgeveda_ffi, which would shadow the installed wheel (the source stage runs them)",
    ),
]


def test_pytest_benchmarks_run_once() -> None:
    pytest.importorskip("pytest_benchmark")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "benchmarks",
            "-q",
            "--benchmark-disable",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout, tail


def test_compare_quick(tmp_path: Path, smollm2_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks import compare

    out = tmp_path / "compare.json"
    args = ["--quick", "--paired", "1", "--model", str(smollm2_path), "--json", str(out)]
    if shutil.which("curl") is None:
        args.append("--no-download")
    assert compare.main(args) == 0
    res = json.loads(out.read_text())
    py = res["pooled"]["py_generate"]
    assert py["e2e_tok_s"]["median"] > 0
    assert py["decode_tok_s"]["median"] > 0
    assert res["pooled"]["py_stream"]["first_token_ms"]["median"] > 0
    assert py["call_ns:ev_is_valid(ctx)"]["median"] > 0
    assert res["ratios"]["stream_vs_generate"]["median"] > 0
    # the paired mode: one block, one sample per worker, ratios within the block
    paired = res["paired"]
    assert len(paired["blocks"]) == 1
    block = paired["blocks"][0]
    assert block["py_generate"]["e2e_tok_s"][0] > 0
    assert block["py_stream"]["first_token_ms"][0] > 0
    assert paired["ratios"]["stream_vs_generate"]["n"] == 1
    assert block["py_generate"]["pp32_tok_s"][0] > 0  # the --pp sizes (quick: 32), paired too
    if "llama-bench" in block:  # built by an earlier full run of compare.py
        assert block["llama-bench"]["pp32_tok_s"][0] > 0
    if (ROOT / "build" / "native-cpu" / "tests" / "ev_bench_c").is_file():
        assert block["ev_bench_c"]["decode_tok_s"][0] > 0
        assert paired["ratios"]["py_decode_vs_c"]["n"] == 1
    if shutil.which("curl"):
        for d in res["download"].values():
            assert d["ours_mb_s"]["median"] > 0
            assert d["curl_pipe_mb_s"]["median"] > 0
    # quick runs never overwrite the real results
    assert (
        not (ROOT / "build" / "bench" / "latest.json").exists()
        or json.loads((ROOT / "build" / "bench" / "latest.json").read_text())["config"]["quick"]
        is False
    )


def test_stream_gap_runs(smollm2_path: Path) -> None:
    """benchmarks/stream_gap.py: the per-piece time outside ev_stream_next,
    on the main thread and on a thread of its own, and lib restored after."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.stream_gap",
            "--model",
            str(smollm2_path),
            "--threads",
            "1",
            "--streams",
            "1",
            "--n-gen",
            "12",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    for where in ("main_thread", "own_thread"):
        r = out[where]
        assert r["pieces"] >= 5, out
        assert 0 < r["outside_native_us"] < 1e6 and r["native_ms"] > 0, out
        assert r["outside_native_us"] == pytest.approx(
            r["return_to_piece_us"] + r["piece_to_call_us"], rel=0.5
        )


def test_package_ab_runs(smollm2_path: Path) -> None:
    """benchmarks/package_ab.py stages the package of a git revision beside
    this checkout's extension (it refuses to run when the staged package is
    not the one imported) and reports after/before ratios of both kinds."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    if not head:
        pytest.skip("not a git checkout: package_ab stages a revision from git")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.package_ab",
            "--before",
            head,
            "--blocks",
            "2",
            "--n-gen",
            "8",
            "--threads",
            "1",
            "--model",
            str(smollm2_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    medians = out["after_over_before_median"]
    for key in ("generate_e2e_tok_s", "stream_e2e_tok_s", "stream_first_token_ms"):
        assert 0.2 < medians[key] < 5, out  # the same code on both sides


def test_thread_paths_runs(smollm2_path: Path, tmp_path: Path) -> None:
    """benchmarks/thread_paths.py: one round of every calling-thread path, both settings of the
    extra buffer types, and the JSON that compare.py --cpu-rows tabulates."""
    from benchmarks import _cpu_rows

    results = {}
    for mode in ("on", "off"):
        out = tmp_path / f"tp-{mode}.json"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.thread_paths",
                "--model",
                str(smollm2_path),
                "--threads",
                "1",
                "--rounds",
                "1",
                "--cpu-extra-buffers",
                mode,
                "--json",
                str(out),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        r = json.loads(out.read_text())
        assert set(r["median_tok_s"]) == {
            "main",
            "app thread",
            "new thread",
            "executor",
            "astream",
            "engine B, own thread",
        }
        assert all(v > 0 for v in r["median_tok_s"].values()), r
        assert r["ratio_to_main"]["main"] == 1.0
        assert r["idle_cpu_per_s"] >= 0
        results[mode] = r
    tables = _cpu_rows.tables({"pooled": {}, "thread_paths": results})
    assert len(tables) == 1 and len(tables[0][2]) == 7  # six paths + the idle row


@pytest.mark.parametrize("client", ["openai", "sse"])
def test_server_vs_inprocess_runs(smollm2_path: Path, client: str) -> None:
    """benchmarks/server_vs_inprocess.py: one small round through a real
    ``edgeveda serve`` (the openai client, or the SSE lines read with its
    httpx) and in process, ratios printed as JSON."""
    pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.server_vs_inprocess",
            "--model",
            str(smollm2_path),
            "--rounds",
            "1",
            "--n-gen",
            "12",
            "--client",
            client,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["client"] == client
    for side in ("server", "in_process"):
        assert out[side]["n"] >= 2 and out[side]["ttft_ms"] > 0 and out[side]["tok_s"] > 0, out
    assert out["ratio_server_over_in_process"]["total_time"] > 0
    whole = out["complete"]
    assert whole["server_total_ms"] > 0 and whole["in_process_total_ms"] > 0, out
    assert whole["paired_ratio_median"]["total_time"] > 0


def test_server_vs_inprocess_against_llama_server(smollm2_path: Path) -> None:
    """``--llama-server``: llama.cpp's own server as a third side of the round,
    with its medians and the paired ratios against it."""
    pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    exe = ROOT / "build" / "llama-tools" / "bin" / "llama-server"
    if not exe.is_file():
        pytest.skip(
            "llama-server is not built here: `python -m benchmarks.server_vs_inprocess "
            "--llama-server build` builds it from the pinned llama.cpp (minutes)"
        )
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.server_vs_inprocess", "--model", str(smollm2_path)]
        + ["--rounds", "1", "--n-gen", "12", "--llama-server", str(exe)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    peer = json.loads(proc.stdout)["llama_server"]
    assert peer["streamed"]["n"] >= 2 and peer["streamed"]["tok_s"] > 0, peer
    assert peer["whole"]["total_ms"] > 0
    for ratios in (peer["paired_over_in_process"], peer["server_over_llama_server"]):
        assert all(v > 0 for v in ratios.values()), ratios
