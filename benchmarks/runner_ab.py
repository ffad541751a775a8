"""Before/after of the generate thread, in one run (benchmarks/README.md, Targets).

    python -m benchmarks.runner_ab [--blocks 8] [--procs 3] [--threads 2] [--model M]

*after*: this checkout (``EdgeVeda.generate`` from the main thread runs on the
long-lived worker of ``edgeveda_ffi/engine/worker.py``). *before*: the same worker
process with the previous ``_interruptible`` (a new thread per call) patched in.
``--procs`` worker processes of each (a process keeps a speed of its own on
this VM) plus the C loop (``ev_bench_c --serve``), sampled in paired blocks as
``compare.py --paired`` does. Prints the per-block ratios as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))


def _old_interruptible(self: Any, fn: Callable[[], Any], ctx: Any) -> Any:
    """EdgeVeda._interruptible before _runner (Ctrl-C handling left out)."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    result: List[Any] = []
    error: List[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            error.append(exc)

    worker = threading.Thread(target=run, name="edgeveda-generate", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.25)
    if error:
        raise error[0]
    return result[0]


def serve_before(argv: List[str]) -> int:
    import edgeveda_ffi.engine as engine

    engine.EdgeVeda._interruptible = _old_interruptible  # type: ignore[method-assign]
    from benchmarks import _run_ours

    return _run_ours.main(argv)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--serve-before":
        return serve_before(argv[1:])
    from benchmarks import _harness, compare
    from benchmarks._paired import Worker

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--procs", type=int, default=3)
    p.add_argument("--threads", type=int, default=compare.default_threads())
    p.add_argument("--n-gen", type=int, default=128)
    p.add_argument("--model", default=None)
    a = p.parse_args(argv)
    model = a.model or str(compare.default_model())
    prompt_file = compare.OUT_DIR / "prompt.txt"
    prompt_file.parent.mkdir(parents=True, exist_ok=True)
    prompt_file.write_text(_harness.DEFAULT_PROMPT, encoding="utf-8")
    ev_c = compare.ensure_ev_bench_c(build=True)
    common = ["--threads", str(a.threads), "--n-gen", str(a.n_gen)]
    args = ["--model", model, *common, "--prompt-file", str(prompt_file), "--serve"]
    py = sys.executable
    workers: Dict[str, Worker] = {}
    try:
        for k in range(a.procs):
            workers[f"after{k}"] = Worker(
                f"after{k}", [py, "-m", "benchmarks._run_ours", *args], cwd=ROOT
            )
            workers[f"before{k}"] = Worker(
                f"before{k}", [py, "-m", "benchmarks.runner_ab", "--serve-before", *args], cwd=ROOT
            )
        if ev_c:
            workers["c"] = Worker(
                "c",
                [ev_c, "-m", model, "-t", str(a.threads), "-n", str(a.n_gen),
                 "--prompt-file", prompt_file, "--load-reps", "0", "--serve"],
            )  # fmt: skip
        steps = [(n, "generate") for n in workers] + [(n, "stream") for n in workers if n != "c"]
        rows: List[Dict[str, Dict[str, Any]]] = []
        for i in range(a.blocks):
            k = i % len(steps)
            order = steps[k:] + steps[:k]
            if i % 2:
                order = order[::-1]
            rows.append({f"{n}:{c}": workers[n].sample(c) for n, c in order})
    finally:
        for w in workers.values():
            w.close()

    def mean_of(kind: str, cmd: str, row: Dict[str, Dict[str, Any]]) -> float:
        vals = [row[f"{kind}{k}:{cmd}"]["decode_tok_s"] for k in range(a.procs)]
        return float(statistics.mean(vals))

    def ratio(
        num: Callable[[Dict[str, Any]], float], den: Callable[[Dict[str, Any]], float]
    ) -> Any:
        return compare.summarize([num(r) / den(r) for r in rows])

    out: Dict[str, Any] = {
        "blocks": a.blocks,
        "procs": a.procs,
        "threads": a.threads,
        "after/before generate decode": ratio(
            lambda r: mean_of("after", "generate", r), lambda r: mean_of("before", "generate", r)
        ),
        "after stream / after generate decode": ratio(
            lambda r: mean_of("after", "stream", r), lambda r: mean_of("after", "generate", r)
        ),
        "before stream / before generate decode": ratio(
            lambda r: mean_of("before", "stream", r), lambda r: mean_of("before", "generate", r)
        ),
    }
    if ev_c:
        out["after generate / C loop decode"] = ratio(
            lambda r: mean_of("after", "generate", r), lambda r: r["c:generate"]["decode_tok_s"]
        )
        out["before generate / C loop decode"] = ratio(
            lambda r: mean_of("before", "generate", r), lambda r: r["c:generate"]["decode_tok_s"]
        )
    for v in out.values():
        if isinstance(v, dict):
            v.pop("values", None)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
