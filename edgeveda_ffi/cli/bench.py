"""``edgeveda bench``: prompt and generation speed and first-token time.

Each measured run starts from an empty KV cache (the prompt cache is off), so
the whole prompt is processed every time. The numbers come from the core's
own timings (``ev_generation_stats``), as llama.cpp's llama-bench does:

* prompt tok/s      prompt tokens / prompt processing time
* generation tok/s  (generated tokens - 1) / time from the first token to the end
* first token ms    from the call's start to the first token's text

The median of ``repetitions`` runs is reported, after one warm-up run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .common import EXIT_OK, CliError, human_bytes

__all__ = ["run_bench", "run_compare", "make_prompt"]

_FILLER = (
    "The history of computing is a story of machines that became smaller, faster and cheaper, "
    "and of people who found new uses for each generation of them. "
)


def make_prompt(engine: Any, n_tokens: int) -> str:
    """Text of about ``n_tokens`` tokens for this model's tokenizer."""
    text = _FILLER
    toks: List[int] = engine.tokenize(text, add_special=False, parse_special=False)
    while len(toks) < n_tokens:
        text += text
        toks = engine.tokenize(text, add_special=False, parse_special=False)
    return str(engine.detokenize(toks[:n_tokens]))


def _median(values: List[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def run_bench(
    path: Path,
    config_kwargs: Dict[str, Any],
    prompt_tokens: int,
    gen_tokens: int,
    repetitions: int,
    *,
    as_json: bool,
    write: Callable[[str], None],
) -> int:
    """Load the model, measure, print a table (or JSON); returns the exit code."""
    from .. import EdgeVeda

    cfg = dict(config_kwargs)
    needed = prompt_tokens + gen_tokens + 8
    if "context_size" not in cfg and needed > 2048:
        cfg["context_size"] = needed
    t0 = time.perf_counter()
    with EdgeVeda(path, **cfg) as engine:
        load_ms = (time.perf_counter() - t0) * 1000
        engine.set_prompt_cache(False)
        prompt = make_prompt(engine, prompt_tokens)
        engine.generate(prompt[:200], max_tokens=2, temperature=0)  # warm-up
        runs: List[Dict[str, Any]] = []
        for _ in range(repetitions):
            st = engine.generate(prompt, max_tokens=gen_tokens, temperature=0).stats
            processed = st.prompt_tokens - st.cached_tokens
            runs.append(
                {
                    "prompt_tokens": processed,
                    "prompt_ms": st.prompt_ms,
                    "prompt_tps": processed / (st.prompt_ms / 1000) if st.prompt_ms > 0 else None,
                    "generated_tokens": st.completion_tokens,
                    "generation_ms": st.generation_ms,
                    "generation_tps": st.tokens_per_second,
                    "first_token_ms": st.first_token_ms,
                }
            )
        info = engine.model_info
        mem = engine.memory_stats()
        threads = engine.config.num_threads
        backend = engine.config.backend.name.lower()
    result = {
        "model": str(path),
        "model_name": info.name,
        "model_size_bytes": path.stat().st_size,
        "backend": backend,
        "threads": threads or "auto",
        "load_ms": load_ms,
        "memory_bytes": mem.current_bytes,
        "repetitions": repetitions,
        "prompt_tokens": runs[0]["prompt_tokens"],
        "generated_tokens": _median([float(r["generated_tokens"]) for r in runs]),
        "prompt_tps": _median([r["prompt_tps"] for r in runs]),
        "generation_tps": _median([r["generation_tps"] for r in runs]),
        "first_token_ms": _median([r["first_token_ms"] for r in runs]),
        "runs": runs,
    }
    if as_json:
        write(json.dumps(result, indent=2) + "\n")
        return EXIT_OK

    def fmt(v: Optional[float], unit: str) -> str:
        return "n/a" if v is None else f"{v:,.1f} {unit}"

    gen = result["generated_tokens"]
    rows = [
        ("model", f"{info.name} ({human_bytes(result['model_size_bytes'])}) {path}"),
        (
            "setup",
            f"backend {backend}, threads {result['threads']}, load {load_ms:,.0f} ms, "
            f"memory {human_bytes(mem.current_bytes)}",
        ),
        ("prompt", f"{fmt(result['prompt_tps'], 'tok/s')}  ({result['prompt_tokens']} tokens)"),
        (
            "generation",
            f"{fmt(result['generation_tps'], 'tok/s')}  ({gen:.0f} tokens)"
            if gen is not None
            else "n/a",
        ),
        ("first token", fmt(result["first_token_ms"], "ms")),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        write(f"{k:<{width}}  {v}\n")
    write(
        f"(median of {repetitions} run{'s' if repetitions != 1 else ''} after a warm-up; "
        "the prompt cache is off)\n"
    )
    return EXIT_OK


def run_compare(path: Path, extra: List[str]) -> int:
    """``python -m benchmarks.compare --model PATH ...`` in the current folder.

    ``benchmarks/`` is part of the source tree, not of the installed package,
    so this runs it as its own program from a source checkout's top folder
    rather than importing it.
    """
    if not (Path.cwd() / "benchmarks" / "compare.py").is_file():
        raise CliError(
            "bench --compare runs benchmarks/compare.py of the edgeveda-ffi source tree: "
            "run it from the top folder of a source checkout"
        )
    cmd = [sys.executable, "-m", "benchmarks.compare", "--model", str(path), *extra]
    return subprocess.call(cmd)
