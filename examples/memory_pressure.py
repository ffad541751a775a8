"""Memory pressure: a budget planner, a pressure handler, and recovering from an unload.

    python examples/memory_pressure.py

1. Fit a budget: try context sizes from large to small with ``memory_limit_bytes``
   set; the core checks model + context against the limit *before* allocating,
   so a context that does not fit fails fast with ``MemoryException``.
2. Handle pressure: ``on_memory_pressure`` receives a ``MemoryPressureEvent``
   when use reaches 90 % of the limit, in the thread doing the work, with no
   lock held, so the handler may call the engine (here: ``memory_stats()`` and
   shorter answers from then on).
3. Recover: a limit below current use unloads the model
   (``auto_unload_on_memory_pressure``); later calls raise
   ``InitializationException`` until the application loads it again, smaller.

Byte counts are llama.cpp's own buffers (weights, KV cache, compute), not process RSS.
--model takes a model id or a GGUF file (default: $EDGEVEDA_MODEL, else the default model).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from edgeveda_ffi import (
    DEFAULT_MODEL_ID,
    EdgeVeda,
    InitializationException,
    MemoryException,
    MemoryPressureEvent,
    ModelManager,
)

MiB = 1024 * 1024


def mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


def fit_budget(path: Path, budget: int, threads: int) -> Optional[EdgeVeda]:
    """The engine with the largest context that fits ``budget`` bytes, or None."""
    for ctx in (4096, 2048, 1024, 512, 256):
        try:
            llm = EdgeVeda(path, context_size=ctx, memory_limit_bytes=budget, num_threads=threads)
        except MemoryException as exc:
            print(f"  context {ctx:>4}: does not fit ({exc.details})")
            continue
        print(f"  context {ctx:>4}: fits, {mib(llm.memory_stats().current_bytes)} in use")
        return llm
    return None


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("EDGEVEDA_MODEL", DEFAULT_MODEL_ID))
    parser.add_argument("--threads", type=int, default=0, help="0 = auto")
    parser.add_argument("--max-tokens", type=int, default=24)
    args = parser.parse_args(argv)
    path = ModelManager().resolve(args.model)

    # What does this model need? Measure one small context to set an example budget.
    with EdgeVeda(path, context_size=512, num_threads=args.threads) as probe:
        small = probe.memory_stats()
    budget = int(small.current_bytes * 1.1)
    print(f"1. budget {mib(budget)} (model {mib(small.model_bytes)}):")
    llm = fit_budget(path, budget, args.threads)
    if llm is None:
        print("nothing fits the budget")
        return 1

    with llm:
        max_tokens = args.max_tokens
        events: List[MemoryPressureEvent] = []

        def on_pressure(event: MemoryPressureEvent) -> None:
            nonlocal max_tokens
            events.append(event)
            level = "critical" if event.is_critical else "warning" if event.is_warning else "info"
            print(
                f"  pressure ({level}): {mib(event.current_bytes)} of {mib(event.limit_bytes)} "
                f"= {event.usage_ratio:.0%}; now {mib(llm.memory_stats().current_bytes)}"
            )
            max_tokens = max(8, max_tokens // 2)  # shed load: shorter answers from now on

        llm.on_memory_pressure(on_pressure)
        current = llm.memory_stats().current_bytes
        print("2. lower the limit to 95 % headroom:")
        llm.set_memory_limit(int(current / 0.95))
        answer = llm.chat(
            [{"role": "user", "content": "Say hello."}], max_tokens=max_tokens, temperature=0
        )
        print(f"  still answering (max_tokens now {max_tokens}): {answer.text.strip()!r}")

        print("3. a limit below current use unloads the model:")
        llm.set_memory_limit(current // 2)
        print(f"  is_valid: {llm.is_valid}")
        try:
            llm.generate("Hello", max_tokens=4)
        except InitializationException as exc:
            print(f"  generate -> {type(exc).__name__}: {exc.message} ({exc.details})")
    print(f"  {len(events)} pressure event(s) delivered")

    with EdgeVeda(path, context_size=256, num_threads=args.threads) as smaller:
        text = smaller.chat(
            [{"role": "user", "content": "Say hello."}], max_tokens=args.max_tokens, temperature=0
        ).text
        print(
            f"  reloaded with context 256 ({mib(smaller.memory_stats().current_bytes)}): "
            f"{text.strip()!r}"
        )
    return 0 if events else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
