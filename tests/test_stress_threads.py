"""Issue 9: thread stress on one engine for a bounded time.

8 threads generate and stream on one engine (the tiny varied model) while
other threads cancel, change the memory limit (a pressure callback counts the
events) and read stats, model info and token counts. For EDGEVEDA_STRESS_SECONDS
(default 10 s): no deadlock (a faulthandler watchdog dumps every thread and
exits if the run does not end in time), no crash, every result well-formed
(counts within bounds, finish reasons that fit, stream pieces valid UTF-8 whose
join is the stream's text). A second test closes the engine under 8 busy threads.

    EDGEVEDA_STRESS_SECONDS=300 python -m pytest -q tests/test_stress_threads.py -s
"""

from __future__ import annotations

import faulthandler
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from edgeveda_ffi import (
    EdgeVeda,
    EngineClosedException,
    FinishReason,
    GenerateResult,
    InitializationException,
    NativeErrorCode,
)

SECONDS = float(os.environ.get("EDGEVEDA_STRESS_SECONDS", "10"))
GENERATORS = 8
PROMPTS = [f"{' '.join(['word'] * (i + 1))} number {i}" for i in range(GENERATORS)]


class Watchdog:
    """faulthandler.dump_traceback_later: on a deadlock, print every thread's stack
    and end the process (a hang would otherwise stall the whole test run)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> Watchdog:
        faulthandler.dump_traceback_later(self.seconds, exit=True, file=sys.__stderr__ or 2)
        return self

    def __exit__(self, *exc: Any) -> None:
        faulthandler.cancel_dump_traceback_later()


def _busy(exc: BaseException) -> bool:
    """One stream per engine: generate/stream fail with CONTEXT_INVALID while one runs."""
    return (
        isinstance(exc, InitializationException)
        and not isinstance(exc, EngineClosedException)
        and exc.code is NativeErrorCode.CONTEXT_INVALID
        and "stream is active" in (exc.details or "")
    )


def _check_result(r: GenerateResult, max_tokens: int, prompt_tokens: int) -> None:
    assert isinstance(r, GenerateResult) and isinstance(r.text, str)
    assert 0 <= r.completion_tokens <= max_tokens
    assert r.finish_reason in (FinishReason.LENGTH, FinishReason.STOP, FinishReason.CANCELLED)
    if r.finish_reason is FinishReason.LENGTH:
        assert r.completion_tokens == max_tokens
    if r.completion_tokens == 0:
        assert r.text == ""
    assert r.prompt_tokens == prompt_tokens  # this call's stats, not another thread's
    assert r.stats.prompt_ms >= 0 and r.stats.generation_ms >= 0


def _run(workers: Dict[str, Callable[[], None]], n: Dict[str, int]) -> List[BaseException]:
    errors: List[BaseException] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)

        return run

    threads = [
        threading.Thread(target=wrap(fn), name=f"{name}-{i}", daemon=True)
        for name, fn in workers.items()
        for i in range(n.get(name, 1))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 120)
        assert not t.is_alive(), f"{t.name} did not finish"
    return errors


@pytest.mark.slow
def test_eight_generators_with_cancel_limits_and_stats(tiny_varied_model_path: Path) -> None:
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def count(key: str, k: int = 1) -> None:
        with lock:
            counts[key] += k

    engine = EdgeVeda(
        tiny_varied_model_path,
        context_size=512,
        num_threads=1,
        auto_unload_on_memory_pressure=False,
    )
    with Watchdog(SECONDS + 240), engine:
        prompt_tokens = [len(engine.tokenize(p)) for p in PROMPTS]
        base = engine.memory_stats().current_bytes
        engine.on_memory_pressure(lambda ev: count("pressure events"))
        deadline = time.monotonic() + SECONDS
        ids = iter(range(GENERATORS))
        ids_lock = threading.Lock()

        def generator() -> None:
            with ids_lock:
                i = next(ids)
            rng = random.Random(i)
            while time.monotonic() < deadline:
                max_tokens = rng.randint(1, 24)
                try:
                    if rng.random() < 0.25:
                        with engine.stream(PROMPTS[i], max_tokens=max_tokens, seed=i) as s:
                            pieces = list(s)  # str pieces, decoded strictly: valid UTF-8
                            st = s.stats
                        assert all(isinstance(p, str) and p for p in pieces)
                        assert st.completion_tokens <= max_tokens
                        assert st.prompt_tokens == prompt_tokens[i]
                        assert st.finish_reason in (
                            FinishReason.LENGTH,
                            FinishReason.STOP,
                            FinishReason.CANCELLED,
                        )
                        count("streams")
                        count("tokens", st.completion_tokens)
                    else:
                        r = engine.generate(
                            PROMPTS[i],
                            max_tokens=max_tokens,
                            temperature=rng.choice([0.0, 0.8]),
                            seed=rng.randint(0, 1000),
                        )
                        _check_result(r, max_tokens, prompt_tokens[i])
                        count("generates")
                        count("tokens", r.completion_tokens)
                        if r.finish_reason is FinishReason.CANCELLED:
                            count("cancelled")
                except InitializationException as exc:
                    if not _busy(exc):
                        raise
                    count("busy (stream active)")
                    time.sleep(0.002)

        def canceller() -> None:
            rng = random.Random(100)
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(0.005, 0.2))
                engine.cancel()
                count("cancel calls")

        def limiter() -> None:
            rng = random.Random(200)
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(0.01, 0.1))
                # From no limit to just below the current use (pressure, no unload).
                limit = rng.choice([0, base * 4, int(base * 1.05), base - 1])
                engine.set_memory_limit(limit)
                count("limit changes")
            engine.set_memory_limit(0)

        def reader() -> None:
            while time.monotonic() < deadline:
                st = engine.memory_stats()
                assert st.current_bytes >= st.model_bytes > 0
                assert st.peak_bytes >= st.current_bytes
                assert engine.is_valid
                assert engine.model_info.num_layers > 0
                assert isinstance(engine.last_stats.completion_tokens, int)
                assert engine.detokenize(engine.tokenize("hello world", add_special=False)) == (
                    "hello world"
                )
                count("stat reads")
                time.sleep(0.002)

        t0 = time.monotonic()
        errors = _run(
            {"gen": generator, "cancel": canceller, "limit": limiter, "read": reader},
            {"gen": GENERATORS, "read": 2},
        )
        elapsed = time.monotonic() - t0
        if errors:
            raise errors[0]
        # The engine is intact afterwards.
        engine.set_memory_limit(0)
        r = engine.generate(PROMPTS[0], max_tokens=4, temperature=0)
        assert r.completion_tokens == 4 or r.finish_reason is FinishReason.STOP

    print(
        f"\nthread stress: {elapsed:.1f} s, {GENERATORS} generators + cancel/limit/2 readers: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    assert counts["generates"] + counts["streams"] >= GENERATORS
    assert counts["cancel calls"] > 0 and counts["limit changes"] > 0 and counts["stat reads"] > 0


@pytest.mark.slow
def test_close_under_eight_busy_threads(tiny_varied_model_path: Path) -> None:
    """close() while 8 threads generate: each call returns a result or raises
    EngineClosedException; the context is freed once, after the last call."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    with Watchdog(300):
        engine = EdgeVeda(tiny_varied_model_path, context_size=512, num_threads=1)
        started = threading.Barrier(GENERATORS + 1)

        def generator() -> None:
            started.wait()
            while True:
                try:
                    engine.generate("hello there", max_tokens=64)
                    key = "result"
                except EngineClosedException:
                    with lock:
                        outcomes["closed"] += 1
                    return
                with lock:
                    outcomes[key] += 1

        threads = [threading.Thread(target=generator, daemon=True) for _ in range(GENERATORS)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.5)
        engine.close()
        for t in threads:
            t.join(120)
            assert not t.is_alive(), "a generator did not end after close()"
        assert outcomes["closed"] == GENERATORS
        assert not engine._finalizer.alive  # freed, after the last in-flight call
