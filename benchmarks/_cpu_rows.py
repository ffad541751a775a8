"""The rows of ``compare.py --cpu-rows``: the CPU's extra buffer types on and off, and decode
speed from every kind of calling thread.

- Extra buffers: llama-bench with ``--repack 0`` and our runner with
  ``EDGEVEDA_CPU_EXTRA_BUFFERS=off`` join the rounds beside the default rows (keys with the
  suffix ``_nr``), so AMX / repacked rows and plain-CPU rows come from one build and one run.
- Thread paths: ``benchmarks.thread_paths`` in a fresh process, with extra buffers on and off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

Samples = Dict[str, List[float]]

ROOT = Path(__file__).resolve().parent.parent


def off_env() -> Dict[str, str]:
    return dict(os.environ, EDGEVEDA_CPU_EXTRA_BUFFERS="off")


def thread_paths(a: Any) -> Dict[str, Any]:
    """{"on": result, "off": result} of benchmarks.thread_paths (see there)."""
    out: Dict[str, Any] = {}
    for mode in ("on", "off"):
        with tempfile.TemporaryDirectory() as tmp:
            js = Path(tmp) / "tp.json"
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.thread_paths",
                "--model",
                a.model,
                "--threads",
                str(a.threads),
                "--rounds",
                str(max(3, a.rounds)),
                "--cpu-extra-buffers",
                mode,
                "--json",
                str(js),
            ]
            print("[compare] " + " ".join(cmd), file=sys.stderr, flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
            out[mode] = json.loads(js.read_text())
    return out


def _med(vals: Optional[List[float]]) -> Optional[float]:
    if not vals:
        return None
    s = sorted(vals)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _f(x: Optional[float], fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def tables(res: Dict[str, Any]) -> List[Tuple[str, List[str], List[List[str]]]]:
    """(caption, header, rows) for the text and markdown reports."""
    out: List[Tuple[str, List[str], List[List[str]]]] = []
    pooled: Dict[str, Dict[str, Any]] = res.get("pooled", {})
    if any(k.endswith("_nr") for k in pooled):
        metrics = [
            m
            for m in ("pp128_tok_s", "pp512_tok_s", "decode_tok_s")
            if m in pooled.get("llama-bench", {}) or m in pooled.get("py_generate", {})
        ]
        rows: List[List[str]] = []

        def value(tool: str, metric: str) -> Optional[float]:
            s = pooled.get(tool, {}).get(metric)
            return s.get("median") if isinstance(s, dict) else None

        for metric in metrics:
            for label, suffix in (("on", ""), ("off", "_nr")):
                lb = value("llama-bench" + suffix, metric)
                py = value("py_generate" + suffix, metric)
                rows.append(
                    [metric, label, _f(lb), _f(py), _f(py / lb if py and lb else None, "{:.3f}")]
                )
        out.append(
            (
                "CPU extra buffer types (AMX, repacked weights) on and off, same build, same run",
                ["metric", "extra buffers", "llama-bench", "Python", "Python / llama-bench"],
                rows,
            )
        )
    tp = res.get("thread_paths")
    if tp:
        names = list(tp["on"]["median_tok_s"])
        rows = []
        for name in names:
            row = [name]
            for mode in ("on", "off"):
                r = tp[mode]
                row += [_f(r["median_tok_s"][name]), _f(r["ratio_to_main"][name], "{:.2f}")]
            rows.append(row)
        rows.append(
            [
                "idle CPU after a request (CPU-s/s)",
                _f(tp["on"]["idle_cpu_per_s"], "{:.3f}"),
                "",
                _f(tp["off"]["idle_cpu_per_s"], "{:.3f}"),
                "",
            ]
        )
        out.append(
            (
                "Decode tok/s by calling thread (core timings, greedy, 64 tokens)",
                ["calling thread", "on: tok/s", "on: x main", "off: tok/s", "off: x main"],
                rows,
            )
        )
    return out


def extra_runs(
    a: Any,
    lb: Optional[Path],
    run_llama_bench: Callable[..., Samples],
    ours: Callable[..., Dict[str, Samples]],
) -> List[Tuple[str, Callable[[], Dict[str, Samples]]]]:
    """The rounds' extra entries: llama-bench --repack 0 and our runner with extra buffers off."""
    runs: List[Tuple[str, Callable[[], Dict[str, Samples]]]] = []
    if lb:
        runs.append(
            ("llama-bench_nr", lambda: {"llama-bench_nr": run_llama_bench(lb, a, repack=False)})
        )
    runs.append(("python_nr", lambda: ours(1.0, "_nr", env=off_env())))
    return runs
