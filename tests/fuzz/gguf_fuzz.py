"""Model-file fuzzer: corrupt GGUF files through ``ev_init``, from Python.

Every case is a list of mutations of the tiny test model (truncations in each
region, bit flips, huge counts/lengths/dimensions, wrong types), generated
deterministically from (seed, index). Each case is loaded by a worker
process; the parent watches it, so a crash (signal), an abort or a hang is
caught and the case recorded. A case passes when the load either fails with
``ModelLoadException`` carrying a message, or succeeds (a harmless mutation)
and the engine then generates a few tokens without crashing.

    python tests/fuzz/gguf_fuzz.py --cases 10000 [--seed 1] [--jobs 2]

Failing cases are written as JSON mutation lists (no binary is committed);
keep them in tests/fuzz/regressions/*.json, which tests/test_fuzz_models.py
replays on every run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
# Where the workers import edgeveda_ffi from (scripts/sanitize.sh points it at
# the sanitizer build's staged package).
PKG_ROOT = Path(os.environ.get("EDGEVEDA_PKG_ROOT") or ROOT)
REGRESSIONS = HERE / "regressions"

Mutation = List[Any]  # ["trunc", n] | ["flip", off, bit] | ["u32", off, v] | ["u64", off, v]

_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


@dataclass
class Fields:
    """Offsets of the structural fields of a well-formed GGUF file."""

    size: int
    header_u64: List[int] = field(default_factory=list)  # tensor count, kv count
    version: int = 4
    kv_start: int = 24
    kv_end: int = 0
    ti_end: int = 0
    str_len: List[int] = field(default_factory=list)  # u64 string lengths (keys, names)
    kv_type: List[int] = field(default_factory=list)  # u32 value types
    arr_type: List[int] = field(default_factory=list)  # u32 array element types
    arr_len: List[int] = field(default_factory=list)  # u64 array lengths
    n_dims: List[int] = field(default_factory=list)  # u32
    dims: List[int] = field(default_factory=list)  # u64
    t_type: List[int] = field(default_factory=list)  # u32 ggml types
    t_offset: List[int] = field(default_factory=list)  # u64 data offsets


def scan(buf: bytes) -> Fields:
    f = Fields(size=len(buf), header_u64=[8, 16])
    pos = 24
    n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)

    def u32(p: int) -> int:
        return int(struct.unpack_from("<I", buf, p)[0])

    def u64(p: int) -> int:
        return int(struct.unpack_from("<Q", buf, p)[0])

    for _ in range(n_kv):
        f.str_len.append(pos)
        pos += 8 + u64(pos)
        f.kv_type.append(pos)
        t = u32(pos)
        pos += 4
        if t == _STRING:
            # a sample of value lengths, not all 49k token strings
            pos += 8 + u64(pos)
        elif t == _ARRAY:
            f.arr_type.append(pos)
            et = u32(pos)
            f.arr_len.append(pos + 4)
            n = u64(pos + 4)
            pos += 12
            if et == _STRING:
                for i in range(n):
                    if i < 4:
                        f.str_len.append(pos)
                    pos += 8 + u64(pos)
            else:
                pos += _SCALAR[et] * n
        else:
            pos += _SCALAR[t]
    f.kv_end = pos
    for _ in range(n_tensors):
        f.str_len.append(pos)
        pos += 8 + u64(pos)
        f.n_dims.append(pos)
        nd = u32(pos)
        pos += 4
        for d in range(nd):
            f.dims.append(pos + 8 * d)
        pos += 8 * nd
        f.t_type.append(pos)
        f.t_offset.append(pos + 4)
        pos += 12
    f.ti_end = pos
    return f


_U64_SPECIAL = [
    0,
    1,
    2,
    0x7F,
    0xFFFF,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**40,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
]
_U32_SPECIAL = [0, 1, 2, 3, 4, 5, 8, 9, 13, 30, 39, 40, 64, 255, 2**31, 2**32 - 1]


def make_case(f: Fields, rng: random.Random) -> List[Mutation]:
    """One case: 1–3 mutations, biased to the structure."""
    muts: List[Mutation] = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        kind = rng.random()
        if kind < 0.18:
            region = rng.choice(("header", "kv", "ti", "data"))
            lo, hi = {
                "header": (0, 24),
                "kv": (24, f.kv_end),
                "ti": (f.kv_end, f.ti_end),
                "data": (f.ti_end, f.size),
            }[region]
            muts.append(["trunc", rng.randrange(lo, max(lo + 1, hi))])
        elif kind < 0.45:
            group = rng.choice(("header", "str_len", "arr_len", "dims", "t_offset"))
            offs = f.header_u64 if group == "header" else getattr(f, group)
            if not offs:
                continue
            v = rng.choice(_U64_SPECIAL) if rng.random() < 0.8 else rng.getrandbits(64)
            muts.append(["u64", rng.choice(offs), v])
        elif kind < 0.7:
            group = rng.choice(("kv_type", "arr_type", "n_dims", "t_type", "version"))
            offs = [4] if group == "version" else getattr(f, group)
            if not offs:
                continue
            v = rng.choice(_U32_SPECIAL) if rng.random() < 0.8 else rng.getrandbits(32)
            muts.append(["u32", rng.choice(offs), v])
        else:
            region = rng.random()
            if region < 0.4:
                off = rng.randrange(0, f.ti_end)  # anywhere in the metadata
            elif region < 0.7:
                off = rng.randrange(f.kv_end, f.ti_end)  # tensor infos
            else:
                off = rng.randrange(f.ti_end, f.size)  # tensor data
            muts.append(["flip", off, rng.randrange(8)])
    return muts or [["flip", rng.randrange(0, f.ti_end), rng.randrange(8)]]


def apply(buf: bytes, muts: Sequence[Mutation]) -> bytes:
    b = bytearray(buf)
    for m in muts:
        op = m[0]
        if op == "trunc":
            del b[int(m[1]) :]
        elif op == "flip" and m[1] < len(b):
            b[int(m[1])] ^= 1 << int(m[2])
        elif op == "u32" and m[1] + 4 <= len(b):
            struct.pack_into("<I", b, int(m[1]), int(m[2]) & 0xFFFFFFFF)
        elif op == "u64" and m[1] + 8 <= len(b):
            struct.pack_into("<Q", b, int(m[1]), int(m[2]) & 0xFFFFFFFFFFFFFFFF)
    return bytes(b)


# --------------------------------------------------------------------------- worker


def worker_main() -> int:
    """Read JSON lines {path}, load each, answer one JSON line per case."""
    sys.path.insert(0, str(PKG_ROOT))
    # Answers go to a private copy of stdout; fd 1 itself goes to stderr, so
    # whatever the native code prints (ggml's abort backtrace, printf) cannot
    # be mistaken for an answer.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import edgeveda_ffi as ev

    for line in sys.stdin:
        req = json.loads(line)
        out: Dict[str, Any]
        try:
            with ev.EdgeVeda(req["path"], context_size=64, num_threads=1, batch_size=64) as llm:
                r = llm.generate("Hi", max_tokens=2, temperature=0)
                out = {"status": "loaded", "text_len": len(r.text)}
        except ev.ModelLoadException as exc:
            out = {"status": "rejected", "message": str(exc)}
            if not exc.details:
                out = {"status": "bad", "error": "ModelLoadException without a message"}
        except BaseException as exc:  # noqa: BLE001 - any other type is a finding
            out = {"status": "bad", "error": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(out) + "\n")
        answers.flush()
    return 0


class Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(PKG_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("GGML_NO_BACKTRACE", "1")  # an abort would start gdb, for seconds
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def run(self, path: str, timeout: float) -> Dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps({"path": path}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"status": "crash", "error": f"worker died (exit {self.proc.wait()})"}
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select(
                [self.proc.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            if not ready:
                self.proc.kill()
                self.proc.wait()
                return {"status": "hang", "error": f"no answer within {timeout} s"}
            line = self.proc.stdout.readline()
            if not line:
                rc = self.proc.wait()
                return {"status": "crash", "error": f"worker died (exit {rc})"}
            try:
                return json.loads(line)  # type: ignore[no-any-return]
            except ValueError:
                continue  # not an answer (cannot happen with the fd redirect; be safe)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def base_model(out_dir: Path) -> Path:
    sys.path.insert(0, str(TESTS))
    import model_factory

    smol = model_factory.require_smollm2()
    return model_factory.materialize_tiny_model(out_dir, smollm2_path=smol)


def run_cases(
    cases: Sequence[List[Mutation]], base: bytes, timeout: float = 30.0, progress: bool = False
) -> Tuple[Dict[str, int], List[Dict[str, Any]]]:
    counts: Dict[str, int] = {}
    failures: List[Dict[str, Any]] = []
    worker = Worker()
    with tempfile.TemporaryDirectory(prefix="gguf-fuzz-") as tmp:
        path = os.path.join(tmp, "case.gguf")
        t0 = time.time()
        for i, muts in enumerate(cases):
            with open(path, "wb") as fh:
                fh.write(apply(base, muts))
            if not worker.alive():
                worker = Worker()
            res = worker.run(path, timeout)
            st = res["status"]
            counts[st] = counts.get(st, 0) + 1
            if st not in ("loaded", "rejected"):
                failures.append({"index": i, "mutations": muts, **res})
                if st in ("crash", "hang"):
                    worker = Worker()
            if progress and (i + 1) % 500 == 0:
                print(
                    f"  {i + 1}/{len(cases)} cases, {time.time() - t0:.0f} s, {counts}", flush=True
                )
    worker.close()
    return counts, failures


def generate_cases(n: int, seed: int, fields: Fields) -> List[List[Mutation]]:
    rng = random.Random(seed)
    return [make_case(fields, rng) for _ in range(n)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per case before it is a hang"
    )
    ap.add_argument(
        "--save-failures", type=Path, default=None, help="write failing cases here (JSON)"
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main()
    with tempfile.TemporaryDirectory() as tmp:
        base_path = base_model(Path(tmp))
        base = base_path.read_bytes()
    fields = scan(base)
    cases = generate_cases(args.cases, args.seed, fields)
    t0 = time.time()
    counts, failures = run_cases(cases, base, args.timeout, progress=True)
    dt = time.time() - t0
    print(
        json.dumps(
            {
                "cases": len(cases),
                "seed": args.seed,
                "seconds": round(dt, 1),
                "counts": counts,
                "failures": len(failures),
            }
        )
    )
    for f in failures[:20]:
        print("FAIL", json.dumps(f))
    if failures and args.save_failures:
        args.save_failures.write_text(json.dumps([f["mutations"] for f in failures], indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
