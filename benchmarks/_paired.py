"""Paired mode of ``compare.py`` (``--paired N``): the speed ratios, sample by sample.

On a shared VM the speed of one 2-second generation moves by ±20 % from one
minute to the next (the host, not us). Rounds of whole tool runs (30 s each)
still leave that drift between the tools of one round. Here every tool is a
long-lived worker that has loaded the model once and answers one measurement
per request, and the coordinator asks each tool for one sample in turn: a
*block* is one sample of every tool, taken back to back within seconds, in an
order that rotates from block to block. Ratios are computed within each block
and the median over blocks is reported, so slow drift cancels out.

Workers (one process each, all loaded at the same time, idle ones blocked on
stdin):

* ``ev_bench_c --serve`` and ``llama_ref --serve`` (C): ``generate``;
* ``benchmarks._run_ours --serve`` (our binding) and ``_run_peer.py --serve``
  (llama-cpp-python, in its venv): ``generate`` and ``stream``, timed by
  ``_harness.measure_generate`` / ``measure_stream``;
* ``llama-bench`` cannot serve: each block runs it once (``-p 128,512 -n N
  -r 1``: its own warm-up and load outside the timed runs), and our worker
  answers ``pp`` (the same prompt sizes through ``EdgeVeda.generate`` with
  ``max_tokens=0``) in the same block, so the pp ratios are paired too.

Each block has the structure of one round of ``compare.py`` (tool -> metric ->
samples), so ``compute_ratios`` applies unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

Samples = Dict[str, List[float]]


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Worker:
    """A tool process that answers one JSON line per command line."""

    def __init__(self, name: str, cmd: Sequence[Any], cwd: Optional[Path] = None) -> None:
        self.name = name
        _log(f"paired worker {name}: {' '.join(str(c) for c in cmd)}")
        self.proc = subprocess.Popen(
            [str(c) for c in cmd],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"{name} did not start: {ready}")

    def _read(self) -> Dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                raise RuntimeError(f"paired worker {self.name} exited (code {code})")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)  # type: ignore[no-any-return]

    def sample(self, command: str) -> Dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        out = self._read()
        if "error" in out:
            raise RuntimeError(f"{self.name}: {out['error']}")
        return out

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _as_samples(d: Dict[str, Any]) -> Samples:
    keys = ["decode_tok_s", "e2e_tok_s", "first_token_ms", "tokens"]
    keys += [k for k in d if k.startswith("pp") and k.endswith("_tok_s")]
    return {k: [float(d[k])] for k in keys if d.get(k) is not None}


def llama_bench_sample(exe: Path, a: Any, pp: Sequence[int] = ()) -> Samples:
    """One llama-bench run (one load, its own warm-up): tg ``a.n_gen`` and,
    when ``pp`` is given, prompt processing of each size, one repetition each."""
    cmd = [
        str(exe), "-m", a.model, "-t", str(a.threads), "-p", ",".join(str(n) for n in pp) or "0",
        "-n", str(a.n_gen), "-r", "1", "-o", "json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, text=True, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-bench failed: {proc.stderr[-2000:]}")
    out: Samples = {}
    for row in json.loads(proc.stdout):
        n_prompt, n_gen = row.get("n_prompt", 0), row.get("n_gen", 0)
        if n_prompt == 0 and n_gen > 0:
            out["decode_tok_s"] = [float(x) for x in row["samples_ts"]]
        elif n_prompt > 0 and n_gen == 0:
            out[f"pp{n_prompt}_tok_s"] = [float(x) for x in row["samples_ts"]]
    if "decode_tok_s" not in out:
        raise RuntimeError("llama-bench printed no tg row")
    return out


def run_blocks(
    a: Any,
    prompt_file: Path,
    root: Path,
    ev_c: Optional[Path],
    llama_bench: Optional[Path],
    llama_ref: Optional[Path],
    peer_python: Optional[Path],
    peer_script: Path,
) -> List[Dict[str, Samples]]:
    """``a.paired`` blocks of one sample per tool; returns them as rounds."""
    common = ["-t", str(a.threads), "-n", str(a.n_gen), "--prompt-file", str(prompt_file)]
    py_args = [
        "--model", a.model, "--threads", str(a.threads), "--n-gen", str(a.n_gen),
        "--prompt-file", str(prompt_file), "--repeat-penalty", "1.0", "--serve",
        "--pp", ",".join(str(n) for n in a.pp),
    ]  # fmt: skip
    workers: Dict[str, Worker] = {}
    steps: List[Tuple[str, Callable[[], Samples]]] = []
    try:
        if ev_c:
            workers["ev_bench_c"] = Worker(
                "ev_bench_c", [ev_c, "-m", a.model, *common, "--load-reps", "0", "--serve"]
            )
        if llama_ref:
            workers["llama_ref"] = Worker(
                "llama_ref", [llama_ref, "-m", a.model, *common, "--load-reps", "0", "--serve"]
            )
        workers["ours"] = Worker(
            "ours", [sys.executable, "-m", "benchmarks._run_ours", *py_args], cwd=root
        )
        if peer_python:
            workers["peer"] = Worker("peer", [peer_python, peer_script, *py_args], cwd=root)

        def step(worker: str, *commands: str) -> Callable[[], Samples]:
            def sample() -> Samples:
                out: Samples = {}
                for command in commands:
                    out.update(_as_samples(workers[worker].sample(command)))
                return out

            return sample

        if llama_bench:
            lb = llama_bench
            steps.append(("llama-bench", lambda: llama_bench_sample(lb, a, a.pp)))
        if "llama_ref" in workers:
            steps.append(("llama_ref", step("llama_ref", "generate")))
        if "ev_bench_c" in workers:
            steps.append(("ev_bench_c", step("ev_bench_c", "generate")))
        # prompt processing (each --pp size) then a generation, as llama-bench does
        steps.append(("py_generate", step("ours", *(["pp"] if a.pp else []), "generate")))
        steps.append(("py_stream", step("ours", "stream")))
        if "peer" in workers:
            steps.append(("peer_generate", step("peer", "generate")))
            steps.append(("peer_stream", step("peer", "stream")))

        blocks: List[Dict[str, Samples]] = []
        for i in range(a.paired):
            k = i % len(steps)
            order = steps[k:] + steps[:k]
            if (i // len(steps)) % 2 == 1:  # and every other cycle runs backwards
                order = order[::-1]
            block: Dict[str, Samples] = {}
            for tool, fn in order:
                block[tool] = fn()
            blocks.append(block)
            if (i + 1) % 5 == 0 or i + 1 == a.paired:
                _log(f"paired: {i + 1}/{a.paired} blocks (load {os.getloadavg()[0]:.2f})")
        return blocks
    finally:
        for w in workers.values():
            w.close()
