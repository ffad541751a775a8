"""One measurement procedure for every Python binding (stdlib only).

``benchmarks/_run_ours.py`` (edgeveda_ffi) and ``benchmarks/_run_peer.py``
(llama-cpp-python, run inside its own virtual environment) wrap their library
in an *adapter* and call :func:`run_suite`, so both are timed by the same code,
on the same prompts, with the same token counts. The result is one JSON object
on stdout, read by ``benchmarks/compare.py``.

Adapter (duck-typed):

* ``load() -> None`` loads the model (timed here); ``close()`` frees it.
* ``tokenize(text) -> list[int]`` as generation tokenizes (BOS when the model
  asks, special tokens parsed); ``detokenize(ids) -> str``.
* ``process(text)``: prompt processing only (no token sampled), prompt cache off.
* ``generate(text, n) -> int``: greedy completion of at most n tokens from an
  empty cache; returns the tokens generated.
* ``stream(text, n) -> iterator[str]``: the same as pieces; ``last_count()``
  returns its token count after the iterator is exhausted.
* ``trivial_calls() -> {name: (stmt, globals)}``: trivial native calls whose
  cost per call is measured with ``timeit`` (the first is the headline one).
"""

from __future__ import annotations

import gc
import json
import math
import statistics
import sys
import time
import timeit
from typing import Any, Callable, Dict, List, Sequence

#: The generation prompt (the same text as native/tests/bench_c.c's default).
DEFAULT_PROMPT = (
    "The history of computing is a story of people who wanted machines to do their arithmetic. "
    "Tell it from the abacus to the microprocessor, with names and dates."
)

#: Filler for prompts of an exact token count (the same as bench_c.c's).
FILLER = (
    "In the morning the market opened early, and the traders compared the prices of grain, wool, "
    "salt and timber with those of the week before. A river ran beside the square; boats came down "
    "from the hills with apples, cheese and cut stone, and went back up with cloth and iron tools. "
)


def summary(values: Sequence[float]) -> Dict[str, Any]:
    """Median, spread and the raw samples of one measurement."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None, "stdev": None, "values": []}
    return {
        "n": len(vals),
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "stdev": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "values": vals,
    }


def prompt_of_tokens(
    tokenize: Callable[[str], List[int]], detokenize: Callable[[List[int]], str], n: int
) -> str:
    """A text that tokenizes to exactly ``n`` tokens (or the closest found)."""
    base = FILLER * (n // 20 + 2)
    # a BOS the tokenizer adds (the same first id for different texts) is
    # added again when the cut is tokenized: cut the text without it
    extra = 1 if tokenize("hello")[0] == tokenize("world")[0] else 0
    body = tokenize(base)[extra:]
    best, best_n = "", -1
    for d in range(16):
        for k in (n - extra - d, n - extra + d):
            if k <= 0 or k > len(body):
                continue
            text = detokenize(body[:k])
            c = len(tokenize(text))
            if c == n:
                return text
            if best_n < 0 or abs(c - n) < abs(best_n - n):
                best, best_n = text, c
    return best


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure_generate(adapter: Any, prompt: str, n_gen: int) -> Dict[str, Any]:
    """One blocking generation: tokens, end-to-end tok/s, and the library's
    own decode tok/s when it reports one (``last_decode_tok_s``)."""
    t0 = time.perf_counter()
    n = adapter.generate(prompt, n_gen)
    wall = time.perf_counter() - t0
    out: Dict[str, Any] = {"tokens": n, "e2e_tok_s": n / wall}
    core = getattr(adapter, "last_decode_tok_s", None)
    if core is not None:
        out["decode_tok_s"] = core()
    return out


def measure_stream(adapter: Any, prompt: str, n_gen: int) -> Dict[str, Any]:
    """One stream: tokens, end-to-end tok/s, first-token ms (call to the first
    piece in hand) and decode tok/s (pieces after the first / their time)."""
    t0 = time.perf_counter()
    first = last = None
    for _piece in adapter.stream(prompt, n_gen):
        last = time.perf_counter()
        if first is None:
            first = last
    wall = time.perf_counter() - t0
    n = adapter.last_count()
    out: Dict[str, Any] = {"tokens": n, "e2e_tok_s": n / wall}
    if first is not None:
        out["first_token_ms"] = (first - t0) * 1e3
    if first is not None and last is not None and last > first and n > 1:
        out["decode_tok_s"] = (n - 1) / (last - first)
    return out


def serve(adapter: Any, args: Any) -> None:
    """Paired mode (``compare.py --paired``): load once, then answer one
    measurement per line on stdin (``generate``, ``stream``, or ``pp``: one
    prompt processing of each ``--pp`` size, as ``pp<N>_tok_s``; ``quit`` or
    EOF ends) with one JSON line on stdout. The caller alternates tools
    sample by sample, so neighbouring samples of different tools share the
    machine's conditions."""
    gc.disable()
    try:
        adapter.load()
        adapter.generate(args.prompt, 8)  # warm-up
        pp_texts = {n: prompt_of_tokens(adapter.tokenize, adapter.detokenize, n) for n in args.pp}
        emit({"ready": True})
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "pp":
                pp_out = {}
                for n, text in pp_texts.items():
                    got = len(adapter.tokenize(text))
                    pp_out[f"pp{n}_tok_s"] = got / _time(lambda t=text: adapter.process(t))
                emit(pp_out)
            elif cmd == "generate":
                emit(measure_generate(adapter, args.prompt, args.n_gen))
            elif cmd == "stream":
                emit(measure_stream(adapter, args.prompt, args.n_gen))
            elif cmd in ("", "quit"):
                break
            else:
                emit({"error": f"unknown command {cmd!r}"})
            gc.collect()  # between samples, never inside one
    finally:
        gc.enable()
        adapter.close()


def run_suite(adapter: Any, args: Any) -> Dict[str, Any]:
    """Measure load, trivial call, pp, generate, stream and first token."""
    reps = max(1, int(args.reps))
    out: Dict[str, Any] = {"reps": reps, "threads": args.threads, "n_gen": args.n_gen}
    gc.disable()  # no collector pauses inside a timed region
    try:
        # load: one warm-up (page cache), then reps timed loads; the last stays open
        adapter.load()
        loads = []
        for _ in range(max(1, int(args.load_reps))):
            adapter.close()
            loads.append(_time(adapter.load) * 1e3)
        out["load_ms"] = summary(loads)

        n_calls = int(getattr(args, "calls", 200_000))
        calls: Dict[str, Any] = {}
        for name, (stmt, env) in adapter.trivial_calls().items():
            timer = timeit.Timer(stmt, globals=env)
            calls[name] = summary(
                [min(timer.repeat(repeat=5, number=n_calls)) / n_calls * 1e9 for _ in range(3)]
            )
        out["calls_ns"] = calls

        prompt = args.prompt
        out["prompt_tokens"] = len(adapter.tokenize(prompt))
        adapter.generate(prompt, 8)  # warm-up

        pp: Dict[str, Any] = {}
        for n in args.pp:
            text = prompt_of_tokens(adapter.tokenize, adapter.detokenize, n)
            got = len(adapter.tokenize(text))

            def process(t: str = text) -> None:
                adapter.process(t)

            samples = [got / _time(process) for _ in range(reps)]
            pp[str(n)] = {"tokens": got, "tok_s": summary(samples)}
        out["pp"] = pp

        gen_e2e, gen_tokens, gen_decode = [], [], []
        st_e2e, st_tokens, st_decode, st_first = [], [], [], []
        for _ in range(reps):
            # generate and stream alternate, so drift hits both alike
            g = measure_generate(adapter, prompt, args.n_gen)
            gen_tokens.append(g["tokens"])
            gen_e2e.append(g["e2e_tok_s"])
            if "decode_tok_s" in g:
                gen_decode.append(g["decode_tok_s"])
            st = measure_stream(adapter, prompt, args.n_gen)
            st_tokens.append(st["tokens"])
            st_e2e.append(st["e2e_tok_s"])
            if "first_token_ms" in st:
                st_first.append(st["first_token_ms"])
            if "decode_tok_s" in st:
                st_decode.append(st["decode_tok_s"])
        out["generate"] = {
            "tokens": gen_tokens,
            "e2e_tok_s": summary(gen_e2e),
            "decode_tok_s": summary(gen_decode),
        }
        out["stream"] = {
            "tokens": st_tokens,
            "e2e_tok_s": summary(st_e2e),
            "decode_tok_s": summary(st_decode),
            "first_token_ms": summary(st_first),
        }
    finally:
        gc.enable()
        adapter.close()
    return out


def add_common_args(parser: Any) -> None:
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--load-reps", type=int, default=3)
    parser.add_argument("--n-gen", type=int, default=128)
    parser.add_argument("--pp", default="128,512", help="prompt sizes in tokens, comma-separated")
    parser.add_argument("--repeat-penalty", type=float, default=1.0)
    parser.add_argument("--context-size", type=int, default=2048)
    parser.add_argument("--prompt-file", default=None)
    parser.add_argument("--calls", type=int, default=200_000, help="timeit calls per sample")
    parser.add_argument(
        "--serve", action="store_true", help="paired mode: one measurement per stdin line"
    )


def finish_args(args: Any) -> Any:
    args.pp = [int(x) for x in str(args.pp).split(",") if x.strip()]
    if args.prompt_file:
        with open(args.prompt_file, encoding="utf-8") as f:
            args.prompt = f.read()
    else:
        args.prompt = DEFAULT_PROMPT
    return args


def emit(result: Dict[str, Any]) -> None:
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
