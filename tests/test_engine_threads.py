"""Issue 4: threads, cancel and Ctrl-C.

8 Python threads sharing one engine, cancel from another thread, one stream at
a time, the GIL released during native calls, and SIGINT during a generate or
a stream in the main thread of a real subprocess.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgeveda_ffi import (
    EdgeVeda,
    FinishReason,
    GenerateResult,
    InitializationException,
    NativeErrorCode,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def long_engine(tiny_model_path: Path) -> Any:
    """The tiny model with its whole 2048-token context: long generations for cancelling."""
    engine = EdgeVeda(tiny_model_path, context_size=2048, num_threads=1)
    yield engine
    engine.close()


def _run_threads(n: int, target: Any) -> list[Any]:
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return results


def test_eight_threads_share_one_engine(tiny_varied_model_path: Path) -> None:
    prompts = [("word " * (i + 1)).strip() + f" number {i}" for i in range(8)]
    with EdgeVeda(tiny_varied_model_path, context_size=256, num_threads=1) as engine:
        # Without the prompt cache every call starts cold, so each result must equal the
        # same call made alone, however the 8 threads interleave.
        engine.set_prompt_cache(False)
        expected = [engine.generate(p, max_tokens=12, temperature=0).text for p in prompts]
        token_counts = [len(engine.tokenize(p)) for p in prompts]

        def work(i: int) -> list[GenerateResult]:
            return [engine.generate(prompts[i], max_tokens=12, temperature=0) for _ in range(3)]

        results = _run_threads(8, work)
        for i, rs in enumerate(results):
            for r in rs:
                assert isinstance(r, GenerateResult)
                assert r.text == expected[i]
                assert r.completion_tokens == 12 and r.finish_reason is FinishReason.LENGTH
                # The stats are this thread's own call's, not another thread's.
                assert r.prompt_tokens == token_counts[i]

        # Mixed work from 8 threads: generate, stream, embed, tokenize, memory stats.
        engine.set_prompt_cache(True)

        def busy_retry(fn: Any) -> Any:
            # One stream per engine: while another thread streams, generate and stream
            # fail with CONTEXT_INVALID ("a stream is active"); retry then.
            while True:
                try:
                    return fn()
                except InitializationException as exc:
                    assert exc.code is NativeErrorCode.CONTEXT_INVALID
                    assert "stream is active" in (exc.details or "")
                    time.sleep(0.005)

        def stream_text(prompt: str) -> str:
            with engine.stream(prompt, max_tokens=6) as s:
                return s.text()

        def mixed(i: int) -> str:
            kind = i % 4
            if kind == 0:
                return str(busy_retry(lambda: engine.generate(prompts[i], max_tokens=6).text))
            if kind == 1:
                return str(busy_retry(lambda: stream_text(prompts[i])))
            if kind == 2:
                assert engine.embed(prompts[i]).dimensions == 64
                return "embed"
            assert engine.memory_stats().current_bytes > 0
            return engine.detokenize(engine.tokenize(prompts[i], add_special=False))

        for i, out in enumerate(_run_threads(8, mixed)):
            assert isinstance(out, str)
            if i % 4 == 3:
                assert out == prompts[i]


def test_cancel_generate_from_another_thread(long_engine: EdgeVeda) -> None:
    timer = threading.Timer(0.3, long_engine.cancel)
    t0 = time.monotonic()
    timer.start()
    r = long_engine.generate("Once upon a time", max_tokens=1900, temperature=0.8, seed=1)
    elapsed = time.monotonic() - t0
    timer.join()
    assert r.finish_reason is FinishReason.CANCELLED
    assert 0 < r.completion_tokens < 1900
    assert isinstance(r.text, str) and r.text  # the partial text
    assert elapsed < 0.3 + 1.0
    # Usable at once, and a cancel does not leak into the next call.
    r2 = long_engine.generate("Hello", max_tokens=4)
    assert r2.finish_reason is FinishReason.LENGTH and r2.completion_tokens == 4


def test_cancel_stream_from_another_thread(long_engine: EdgeVeda) -> None:
    for cancel in ("stream", "engine"):
        with long_engine.stream("Once upon a time", max_tokens=1900, seed=2) as s:
            canceller = s.cancel if cancel == "stream" else long_engine.cancel
            timer = threading.Timer(0.3, canceller)
            t0 = time.monotonic()
            timer.start()
            pieces = list(s)
            elapsed = time.monotonic() - t0
            timer.join()
            assert pieces
            assert s.stats.finish_reason is FinishReason.CANCELLED, cancel
            assert s.stats.completion_tokens < 1900
            assert elapsed < 0.3 + 1.0


def test_cancel_without_generation_is_harmless(tiny_engine: EdgeVeda) -> None:
    tiny_engine.cancel()
    r = tiny_engine.generate("hi", max_tokens=3)
    assert r.finish_reason is FinishReason.LENGTH and r.completion_tokens == 3


def test_two_streams_at_once(tiny_engine: EdgeVeda) -> None:
    first = tiny_engine.stream("one", max_tokens=20)
    next(first)
    with pytest.raises(InitializationException) as info:
        tiny_engine.stream("two", max_tokens=20)
    assert info.value.code is NativeErrorCode.CONTEXT_INVALID
    assert "stream is active" in (info.value.details or "")

    # The same from another thread.
    def other(_: int) -> str:
        try:
            tiny_engine.stream("three", max_tokens=2)
        except InitializationException as exc:
            return str(exc)
        return "no error"

    assert "stream is active" in _run_threads(1, other)[0]
    first.close()
    with tiny_engine.stream("two", max_tokens=3) as second:
        assert second.text()


def test_other_threads_run_during_generate(long_engine: EdgeVeda) -> None:
    """The GIL is released during the native call: a Python counter thread advances."""
    counter = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    try:
        for where in ("worker thread", "main thread"):
            seen: dict[str, float] = {}

            def gen(seen: dict[str, float] = seen) -> None:
                before = counter[0]
                t0 = time.monotonic()
                r = long_engine.generate("Once upon a time", max_tokens=1200, seed=3)
                seen["elapsed"] = time.monotonic() - t0
                seen["advanced"] = counter[0] - before
                assert r.completion_tokens == 1200

            if where == "worker thread":
                _run_threads(1, lambda _: gen())
            else:
                gen()  # through the Ctrl-C-aware path
            assert seen["elapsed"] > 0.2, "generation too short to show anything"
            # A call holding the GIL would freeze the counter for the whole call.
            assert seen["advanced"] >= 20, (where, seen)
    finally:
        stop.set()
        t.join()


def test_memory_stats_and_cancel_return_at_once_during_generate(long_engine: EdgeVeda) -> None:
    timings: list[float] = []

    def poll() -> None:
        time.sleep(0.1)
        t0 = time.monotonic()
        long_engine.memory_stats()
        timings.append(time.monotonic() - t0)
        long_engine.cancel()

    t = threading.Thread(target=poll)
    t.start()
    r = long_engine.generate("Once upon a time", max_tokens=1900, seed=4)
    t.join()
    assert r.finish_reason is FinishReason.CANCELLED
    assert timings and timings[0] < 0.1


# ------------------------------------------------------------------------------------------
# Ctrl-C
# ------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    # Python leaves SIGINT ignored when it starts with it ignored (a background
    # job of a non-interactive shell); the default is what a terminal user has.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from edgeveda_ffi import EdgeVeda
    engine = EdgeVeda(sys.argv[1], context_size=2048, num_threads=1)
    mode = sys.argv[2]
    print("READY", flush=True)
    n = 0
    try:
        if mode == "generate":
            print("GO", flush=True)
            engine.generate("Once upon a time", max_tokens=1900, seed=1)
        else:
            for piece in engine.stream("Once upon a time", max_tokens=1900, seed=1):
                n += 1
                if n == 1:
                    print("GO", flush=True)
        print("FINISHED", flush=True)
    except KeyboardInterrupt:
        print("INTERRUPTED", time.monotonic(), n, flush=True)
    r = engine.generate("Hello", max_tokens=5, temperature=0)
    print("AFTER", r.completion_tokens, r.finish_reason.value, flush=True)
    with engine.stream("Hello", max_tokens=3) as s:
        print("STREAM", len(s.text()) > 0, flush=True)
    engine.close()
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
@pytest.mark.parametrize("mode", ["generate", "stream"])
def test_ctrl_c(tiny_model_path: Path, mode: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tiny_model_path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        assert proc.stdout.readline().strip() == "GO"
        time.sleep(0.5)  # well inside the generation (1900 tokens take seconds)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().split()
        received = time.monotonic()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert line and line[0] == "INTERRUPTED", (line, err)
    # KeyboardInterrupt within about a token (allow a busy machine some slack).
    assert float(line[1]) - sent < 1.0, float(line[1]) - sent
    assert received - sent < 1.5
    assert proc.returncode == 0, err
    lines = out.split("\n")
    assert "AFTER 5 length" in lines, out
    assert "STREAM True" in lines, out


def test_main_thread_generations_share_one_worker_thread(tiny_engine: EdgeVeda) -> None:
    """From the main thread, generate runs on one long-lived worker (one OpenMP
    master for every call, see edgeveda_ffi/engine/worker.py), not a thread per call;
    from any other thread it runs in that thread, with no hand-off."""
    from edgeveda_ffi.engine import worker as _runner

    assert threading.current_thread() is threading.main_thread()
    seen: list[int] = []
    real_submit = _runner.submit

    def spy(fn: Any, *rest: Any) -> Any:
        def wrapped() -> Any:
            seen.append(threading.get_ident())
            return fn()

        return real_submit(wrapped, *rest)

    def gen() -> int:
        return int(tiny_engine.generate("hello", max_tokens=2, temperature=0.0).completion_tokens)

    _runner.submit = spy
    try:
        before = threading.active_count()
        for _ in range(5):
            assert gen() > 0
        assert threading.active_count() <= before + 1  # at most the worker, started once
        other: list[int] = []
        t = threading.Thread(target=lambda: other.append(gen()))
        t.start()
        t.join(60)
        assert other and other[0] > 0
    finally:
        _runner.submit = real_submit
    assert len(seen) == 5 and len(set(seen)) == 1  # the other thread did not hand off
    assert seen[0] != threading.get_ident()
    worker = _runner._worker
    assert worker is not None and worker.is_alive() and worker.name == "edgeveda-worker"
    assert worker.ident == seen[0]


def test_runner_job_wait_and_outcome() -> None:
    """The worker's jobs: wait() times out while the call runs, returns True
    (every time) once it has ended, and outcome() gives the value or re-raises."""
    from edgeveda_ffi.engine import worker as _runner

    gate = threading.Event()
    job = _runner.submit(lambda: gate.wait(30) and 42)
    assert job.wait(0.05) is False and not job.finished
    gate.set()
    assert job.wait(30) is True and job.wait() is True and job.wait(0) is True
    assert job.finished and job.outcome() == 42

    def boom() -> None:
        raise ValueError("from the worker")

    failing = _runner.submit(boom)
    assert failing.wait(30)
    with pytest.raises(ValueError, match="from the worker"):
        failing.outcome()
    # the worker survives a failing job
    name = _runner.submit(lambda: threading.current_thread().name)
    assert name.wait(30) and name.outcome() == "edgeveda-worker"
    assert _runner._worker is not None and _runner._worker.is_alive()


def test_job_cancelled_before_it_starts_never_runs() -> None:
    """A queued job that is cancelled does not run: its outcome raises
    JobCancelled, and its cancel function is not called for a call that never began."""
    from edgeveda_ffi.engine import worker

    gate = threading.Event()
    blocker = worker.submit(lambda: gate.wait(30))
    ran: list[str] = []
    cancels: list[str] = []
    queued = worker.submit(lambda: ran.append("ran"), lambda: cancels.append("cancel"))
    queued.cancel()
    gate.set()
    assert blocker.wait(30) and queued.wait(30)
    with pytest.raises(worker.JobCancelled):
        queued.outcome()
    assert ran == [] and cancels == ["cancel"]


def test_run_async_cancel_cancels_the_job_and_waits_for_it() -> None:
    """A task awaiting run_async that is cancelled cancels the job (its cancel
    function runs) and re-raises CancelledError only after the call returned."""
    from edgeveda_ffi.engine import worker

    stop = threading.Event()
    events: list[str] = []

    def slow() -> str:
        stop.wait(30)
        events.append("returned")
        return "done"

    async def main() -> None:
        task = asyncio.ensure_future(worker.run_async(slow, stop.set))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        events.append("cancelled seen")

    asyncio.run(main())
    assert events == ["returned", "cancelled seen"]
    # from the main thread, run() hands the call to the worker too
    assert threading.current_thread() is threading.main_thread()
    assert worker.run(lambda: threading.current_thread().name, lambda: None) == "edgeveda-worker"
