"""``edgeveda serve`` against the in-process API, in the same run.

    python -m benchmarks.server_vs_inprocess [--model M] [--threads 1] [--rounds 5] [--n-gen 128]
                                             [--client openai|sse] [--llama-server PATH|build]

Each round streams one ``--n-gen``-token completion through the server (the
official ``openai`` client, ``stream=True``, over HTTP on 127.0.0.1) and one
through ``EdgeVeda.create_completion(stream=True)`` in this process, then asks
for the same completion whole (no ``stream``) both ways; each pair alternates
which side goes first by round, so machine drift and order effects hit both
alike. The server is a
``python -m edgeveda_ffi serve`` subprocess with the same model and threads.
Per side: the median time to the first text (TTFT), pieces per second after
it, and the whole request (``complete``: the whole request of the
completion asked for whole); then the ratios server / in-process of those
medians and the median of the per-round ratios (1.0 = no overhead; the
issue's budget is < 1.05 on a 128-token completion), and the load average:
on a busy 2-vCPU machine the server side has more processes competing for
the cores (the client, the event loop), which shows as overhead. ``cpu_s`` is
the CPU time both processes (this one, with the client or the in-process
engine, and the server) spent during the request: what the server path costs
in work, which the machine's noise moves much less than wall time. Prints JSON.

``--llama-server`` adds llama.cpp's own server (C++, built from the pinned
source by ``build``) as a third side of every round, on the same model,
threads and context, through the same client: ``llama_server`` in the output
has its medians, its ratios to the same in-process baseline (what streaming
over HTTP costs on this machine with no Python on the server side) and ours
over it (``server_over_llama_server``).

``--client sse`` streams through the server with the HTTP client the
``openai`` package itself uses (httpx), reading the ``data:`` lines without
building the openai package's per-chunk objects: the server's own share of
the streamed overhead, apart from the client's parsing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

PROMPT = "Here is a long story about a robot who learns to paint. Once upon a time,"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _default_model() -> str:
    from edgeveda_ffi import ModelManager

    return str(ModelManager().ensure())


def _timed(chunks: Iterable[Any], t0: float) -> Dict[str, float]:
    """TTFT, pieces/s after the first, and total time of a completion stream."""
    first: Optional[float] = None
    pieces = 0
    for chunk in chunks:
        text = chunk["choices"][0]["text"] if isinstance(chunk, dict) else chunk.choices[0].text
        if text:
            pieces += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    assert first is not None, "no text"
    rate = (pieces - 1) / (end - first) if pieces > 1 and end > first else 0.0
    return {"ttft_ms": (first - t0) * 1e3, "tok_s": rate, "total_ms": (end - t0) * 1e3, "n": pieces}


def _start_server(model: str, threads: int, ctx: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeveda_ffi", "serve", "--model", model, "--port", str(port)]
        + ["--threads", str(threads), "--ctx-size", str(ctx)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    return proc, f"http://127.0.0.1:{port}/v1"


def _start_llama_server(
    exe: Path, model: str, threads: int, ctx: int
) -> tuple[subprocess.Popen[bytes], str]:
    """llama.cpp's own server (C++) on the same model, threads and context, one slot."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(exe), "-m", model, "--host", "127.0.0.1", "--port", str(port)]
        + ["-t", str(threads), "-c", str(ctx), "-np", "1", "--no-webui", "--log-disable"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}/v1"


def _wait_ready(client: Any, proc: subprocess.Popen[bytes], timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            return str(client.models.list().data[0].id)
        except Exception:  # noqa: BLE001 - not listening yet, or 503 while loading
            time.sleep(0.1)
    raise TimeoutError("the server did not become ready")


def _http_module() -> Any:
    """The HTTP client package the installed openai package is built on."""
    for name in ("httpx2", "httpx"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise RuntimeError("neither httpx2 nor httpx is installed (the openai package needs one)")


def _sse_texts(http: Any, url: str, body: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """The completion chunks of an SSE stream, each ``data:`` line parsed
    with json (what any SSE client must do at least)."""
    with http.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                yield json.loads(line[6:])


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process pid so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_of(fn: Any, server_pids: List[int]) -> tuple[Any, float]:
    """fn()'s result and the CPU seconds this process and the servers spent meanwhile."""
    c0, s0 = time.process_time(), sum(_proc_cpu_s(pid) for pid in server_pids)
    out = fn()
    return out, (time.process_time() - c0) + (sum(_proc_cpu_s(pid) for pid in server_pids) - s0)


def _median(rows: List[Dict[str, float]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _side(rows: List[Dict[str, float]]) -> Dict[str, float]:
    keys = [k for k in ("ttft_ms", "tok_s", "total_ms", "n", "cpu_s") if k in rows[0]]
    return {k: round(_median(rows, k), 3) for k in keys}


def _paired(key: str, a_rows: List[Dict[str, float]], b_rows: List[Dict[str, float]]) -> float:
    # per-round ratios first: both halves of a round saw the same machine
    return round(statistics.median(a[key] / b[key] for a, b in zip(a_rows, b_rows)), 4)


def run(
    model: str,
    threads: int,
    rounds: int,
    n_gen: int,
    ctx: int = 2048,
    client_kind: str = "openai",
    llama_server: Optional[Path] = None,
) -> Dict[str, Any]:
    from openai import OpenAI

    from edgeveda_ffi import EdgeVeda

    kw: Dict[str, Any] = dict(max_tokens=n_gen, temperature=0)
    http = _http_module().Client(timeout=120) if client_kind == "sse" else None

    def through(client: Any, base_url: str, model_id: str) -> tuple[Any, Any]:
        """(streamed, whole) request functions through one server."""

        def streamed() -> Dict[str, float]:
            t0 = time.perf_counter()
            if http is not None:
                body = dict(model=model_id, prompt=PROMPT, stream=True, **kw)
                return _timed(_sse_texts(http, f"{base_url}/completions", body), t0)
            stream = client.completions.create(model=model_id, prompt=PROMPT, stream=True, **kw)
            return _timed(stream, t0)

        def whole() -> Dict[str, float]:
            t0 = time.perf_counter()
            out = client.completions.create(model=model_id, prompt=PROMPT, **kw)
            assert out.usage is not None and out.usage.completion_tokens > 0
            return {"total_ms": (time.perf_counter() - t0) * 1e3}

        return streamed, whole

    procs: List[subprocess.Popen[bytes]] = []
    try:
        proc, base_url = _start_server(model, threads, ctx)
        procs.append(proc)
        client = OpenAI(base_url=base_url, api_key="none", max_retries=0)
        sides: Dict[str, tuple[Any, Any]] = {
            "server": through(client, base_url, _wait_ready(client, proc))
        }
        if llama_server is not None:
            lproc, lbase = _start_llama_server(llama_server, model, threads, ctx)
            procs.append(lproc)
            lclient = OpenAI(base_url=lbase, api_key="none", max_retries=0)
            sides["llama_server"] = through(lclient, lbase, _wait_ready(lclient, lproc))
        with EdgeVeda(model, num_threads=threads, context_size=ctx) as engine:

            def local_streamed() -> Dict[str, float]:
                t0 = time.perf_counter()
                return _timed(engine.create_completion(PROMPT, stream=True, **kw), t0)

            def local_whole() -> Dict[str, float]:
                t0 = time.perf_counter()
                out = engine.create_completion(PROMPT, **kw)
                assert out["usage"]["completion_tokens"] > 0
                return {"total_ms": (time.perf_counter() - t0) * 1e3}

            sides["in_process"] = (local_streamed, local_whole)
            names = list(sides)
            for streamed, _ in sides.values():
                streamed()  # one warm-up each (first-call costs, prompt cache)
            pids = [p.pid for p in procs]
            rows: Dict[str, List[Dict[str, float]]] = {}
            for r in range(rounds):
                # rotate which side goes first, so an order effect hits all alike
                order = names[r % len(names) :] + names[: r % len(names)]
                for kind in (0, 1):
                    for name in order:
                        row, cpu = _cpu_of(sides[name][kind], pids)
                        rows.setdefault(f"{name}/{('streamed', 'whole')[kind]}", []).append(
                            {**row, "cpu_s": cpu}
                        )
    finally:
        for proc in procs:
            _stop(proc)

    served, local = rows["server/streamed"], rows["in_process/streamed"]
    whole_s, whole_l = rows["server/whole"], rows["in_process/whole"]
    s, i = _side(served), _side(local)
    result: Dict[str, Any] = {
        "model": os.path.basename(model),
        "threads": threads,
        "client": client_kind,
        "rounds": rounds,
        "n_gen": n_gen,
        "server": s,
        "in_process": i,
        "ratio_server_over_in_process": {
            "ttft": round(s["ttft_ms"] / i["ttft_ms"], 4),
            "tok_s": round(s["tok_s"] / i["tok_s"], 4) if i["tok_s"] else None,
            "total_time": round(s["total_ms"] / i["total_ms"], 4),
        },
        "paired_ratio_median": {
            "ttft": _paired("ttft_ms", served, local),
            "tok_s": _paired("tok_s", served, local),
            "total_time": _paired("total_ms", served, local),
            "cpu_seconds": _paired("cpu_s", served, local),
        },
        "complete": {
            "server_total_ms": round(_median(whole_s, "total_ms"), 3),
            "in_process_total_ms": round(_median(whole_l, "total_ms"), 3),
            "server_cpu_s": round(_median(whole_s, "cpu_s"), 3),
            "in_process_cpu_s": round(_median(whole_l, "cpu_s"), 3),
            "paired_ratio_median": {
                "total_time": _paired("total_ms", whole_s, whole_l),
                "cpu_seconds": _paired("cpu_s", whole_s, whole_l),
            },
        },
    }
    if llama_server is not None:
        peer, peer_whole = rows["llama_server/streamed"], rows["llama_server/whole"]
        result["llama_server"] = {
            "streamed": _side(peer),
            "whole": _side(peer_whole),
            # llama.cpp's C++ server against the same in-process baseline: what
            # streaming over HTTP costs here without any Python on the server side
            "paired_over_in_process": {
                "streamed_total_time": _paired("total_ms", peer, local),
                "streamed_tok_s": _paired("tok_s", peer, local),
                "whole_total_time": _paired("total_ms", peer_whole, whole_l),
            },
            # our server against llama.cpp's, both through the same client
            "server_over_llama_server": {
                "streamed_total_time": _paired("total_ms", served, peer),
                "streamed_ttft": _paired("ttft_ms", served, peer),
                "whole_total_time": _paired("total_ms", whole_s, peer_whole),
                "streamed_cpu_seconds": _paired("cpu_s", served, peer),
            },
        }
    result["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return result


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="GGUF path (default: the default model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n-gen", type=int, default=128)
    ap.add_argument(
        "--client",
        choices=("openai", "sse"),
        default="openai",
        help="stream through the openai client (default) or read the SSE lines with its httpx",
    )
    ap.add_argument(
        "--llama-server",
        metavar="PATH|build",
        default=None,
        help="also stream through llama.cpp's own llama-server (C++), same model and threads: "
        "a path, or 'build' to build it from the pinned llama.cpp into build/llama-tools",
    )
    args = ap.parse_args(argv)
    model = args.model or _default_model()
    peer: Optional[Path] = None
    if args.llama_server == "build":
        from benchmarks._tools import ensure_llama_server

        peer = ensure_llama_server(build=True)
    elif args.llama_server:
        peer = Path(args.llama_server)
    result = run(
        model, args.threads, args.rounds, args.n_gen, client_kind=args.client, llama_server=peer
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
