"""Issue 4: memory limit, MemoryPressureEvent callbacks, auto-unload,
load-progress callbacks, and the finalizer of a forgotten engine."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import edgeveda_ffi.engine.lifecycle as engine_mod
from edgeveda_ffi import (
    EdgeVeda,
    FinishReason,
    InitializationException,
    MemoryPressureEvent,
    ModelLoadException,
    NativeErrorCode,
)

REPO = Path(__file__).resolve().parents[1]


def _tiny(path: Path, **kw: Any) -> EdgeVeda:
    kw.setdefault("context_size", 256)
    kw.setdefault("num_threads", 1)
    return EdgeVeda(path, **kw)


def _in_thread(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Run fn in a thread; fail (instead of hanging the suite) if it deadlocks."""
    out: list[Any] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            err.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "deadlock: the call did not return"
    if err:
        raise err[0]
    return out[0] if out else None


# ------------------------------------------------------------------------------------------
# MemoryPressureEvent
# ------------------------------------------------------------------------------------------


def test_pressure_event_numbers(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path, auto_unload_on_memory_pressure=False) as engine:
        events: list[tuple[MemoryPressureEvent, int]] = []
        engine.on_memory_pressure(lambda ev: events.append((ev, threading.get_ident())))
        current = engine.memory_stats().current_bytes

        engine.set_memory_limit(current * 2)  # 50 %: no event
        assert events == []

        new_limit = current - 4096  # below the current use
        engine.set_memory_limit(new_limit)
        assert len(events) == 1
        ev, thread = events[0]
        assert isinstance(ev, MemoryPressureEvent)
        assert ev.current_bytes == engine.memory_stats().current_bytes == current
        assert ev.limit_bytes == new_limit == engine.memory_stats().limit_bytes
        assert ev.usage_ratio == pytest.approx(current / new_limit) and ev.usage_ratio > 1
        assert ev.is_critical and ev.is_warning
        assert thread == threading.get_ident()  # delivered in the calling thread

        # 95 % of the limit: pressure (>= 90 %), and nothing unloaded.
        engine.set_memory_limit(int(current / 0.95))
        assert len(events) == 2 and 0.9 <= events[1][0].usage_ratio < 1.0
        # Without auto-unload the engine keeps working over the limit.
        assert engine.is_valid
        assert engine.generate("hi", max_tokens=2).completion_tokens == 2
        engine.set_memory_limit(0)  # no limit: no event
        assert len(events) == 2


def test_pressure_at_end_of_generation(tiny_model_path: Path) -> None:
    """A limit set while another thread generates is checked when that thread's
    call ends, and the event is delivered there (a safe point). The other thread
    streams and holds still after its first piece until the limit is set, so the
    order does not depend on how fast the machine decodes."""
    with _tiny(tiny_model_path, context_size=2048, auto_unload_on_memory_pressure=False) as engine:
        events: list[tuple[MemoryPressureEvent, int]] = []
        engine.on_memory_pressure(lambda ev: events.append((ev, threading.get_ident())))
        started = threading.Event()
        limit_set = threading.Event()
        idents: list[int] = []

        def gen() -> int:
            idents.append(threading.get_ident())
            n = 0
            with engine.stream("Once upon a time", max_tokens=40, seed=1) as pieces:
                for _ in pieces:
                    n += 1
                    if n == 1:
                        started.set()
                        limit_set.wait(60)
            return n

        worker = threading.Thread(target=lambda: idents.append(gen()))
        worker.start()
        assert started.wait(60)
        current = engine.memory_stats().current_bytes
        engine.set_memory_limit(current - 1)
        limit_set.set()
        worker.join(60)
        assert not worker.is_alive() and idents[1] > 1  # it went on after the limit
        assert len(events) >= 1
        ev, thread = events[-1]
        assert ev.limit_bytes == current - 1 and ev.current_bytes == current
        assert thread == idents[0]  # the generating thread, not this one


def test_callback_that_raises(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path, auto_unload_on_memory_pressure=False) as engine:
        boom = RuntimeError("callback failed")
        calls = []

        def bad(ev: MemoryPressureEvent) -> None:
            calls.append(ev)
            raise boom

        engine.on_memory_pressure(bad)
        current = engine.memory_stats().current_bytes
        with pytest.raises(RuntimeError) as info:
            engine.set_memory_limit(current - 1)
        assert info.value is boom  # the exact exception, never lost in C
        assert len(calls) == 1
        # Still usable; the error was delivered once and is not raised again.
        assert engine.is_valid
        assert engine.generate("hi", max_tokens=2).completion_tokens == 2
        engine.memory_stats()
        engine.set_memory_limit(0)
        # KeyboardInterrupt-like BaseExceptions come through too.
        engine.remove_memory_pressure_callback(bad)

        def interrupt(ev: MemoryPressureEvent) -> None:
            raise KeyboardInterrupt

        engine.on_memory_pressure(interrupt)
        with pytest.raises(KeyboardInterrupt):
            engine.set_memory_limit(current - 1)
        engine.set_memory_limit(0)
        assert engine.generate("hi", max_tokens=1).completion_tokens == 1


def test_callback_raising_during_generate_reaches_that_call(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path, context_size=2048, auto_unload_on_memory_pressure=False) as engine:
        boom = ValueError("from the callback")

        def bad(ev: MemoryPressureEvent) -> None:
            raise boom

        engine.on_memory_pressure(bad)
        started = threading.Event()
        raised: list[BaseException] = []

        def gen() -> None:
            started.set()
            try:
                engine.generate("Once upon a time", max_tokens=1500, seed=1)
            except BaseException as exc:  # noqa: BLE001 - checked below
                raised.append(exc)

        worker = threading.Thread(target=gen)
        worker.start()
        started.wait()
        time.sleep(0.2)  # inside the 1500-token generation
        try:
            engine.set_memory_limit(engine.memory_stats().current_bytes - 1)
        except ValueError as exc:  # the generation had ended: the event came to this call
            assert exc is boom
            worker.join(60)
            pytest.skip("generation ended before the limit was set")
        worker.join(60)
        if not raised:  # the generation had already finished: the event came here
            pytest.skip("generation ended before the limit was set")
        assert raised[0] is boom


def test_callback_calls_back_into_engine(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path, auto_unload_on_memory_pressure=False) as engine:
        seen: list[Any] = []

        def reentrant(ev: MemoryPressureEvent) -> None:
            stats = engine.memory_stats()  # no deadlock
            seen.append((ev, stats))
            engine.set_memory_limit(0)  # lifts the limit from inside
            engine.remove_memory_pressure_callback(reentrant)  # and unregisters itself
            seen.append(engine.model_info.name)
            seen.append(engine.tokenize("hi", add_special=False))

        engine.on_memory_pressure(reentrant)
        current = engine.memory_stats().current_bytes
        _in_thread(lambda: engine.set_memory_limit(current - 1))
        ev, stats = seen[0]
        assert ev.current_bytes == stats.current_bytes == current
        assert seen[1] == "edgeveda-tiny-random" and seen[2]
        assert engine.memory_stats().limit_bytes == 0
        # Removed: a new breach does not call it again.
        _in_thread(lambda: engine.set_memory_limit(current - 1))
        assert len(seen) == 3
        assert _in_thread(lambda: engine.generate("hi", max_tokens=2)).completion_tokens == 2


def test_callback_generates_from_inside(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path, auto_unload_on_memory_pressure=False) as engine:
        out: list[str] = []
        remove = engine.on_memory_pressure(
            lambda ev: out.append(engine.generate("hi", max_tokens=2).text)
        )
        _in_thread(lambda: engine.set_memory_limit(engine.memory_stats().current_bytes - 1))
        assert len(out) == 1
        remove()
        remove()  # twice is fine
        _in_thread(lambda: engine.set_memory_limit(engine.memory_stats().current_bytes - 2))
        assert len(out) == 1


def test_callback_closes_engine(tiny_model_path: Path) -> None:
    engine = _tiny(tiny_model_path, auto_unload_on_memory_pressure=False)
    engine.on_memory_pressure(lambda ev: engine.close())
    _in_thread(lambda: engine.set_memory_limit(engine.memory_stats().current_bytes - 1))
    assert engine.closed
    assert not engine._finalizer.alive  # freed once the native call returned
    engine.close()


def test_several_callbacks(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path, auto_unload_on_memory_pressure=False) as engine:
        a: list[MemoryPressureEvent] = []
        b: list[MemoryPressureEvent] = []
        engine.on_memory_pressure(a.append)
        remove_b = engine.on_memory_pressure(b.append)
        engine.set_memory_limit(engine.memory_stats().current_bytes - 1)
        assert len(a) == len(b) == 1 and a[0] == b[0]
        remove_b()
        engine.set_memory_limit(engine.memory_stats().current_bytes - 2)
        assert len(a) == 2 and len(b) == 1


# ------------------------------------------------------------------------------------------
# auto_unload_on_memory_pressure
# ------------------------------------------------------------------------------------------


def test_auto_unload(tiny_model_path: Path) -> None:
    engine = _tiny(tiny_model_path)  # auto_unload is the default
    assert engine.config.auto_unload_on_memory_pressure
    events: list[tuple[MemoryPressureEvent, int]] = []
    engine.on_memory_pressure(lambda ev: events.append((ev, engine.memory_stats().current_bytes)))
    current = engine.memory_stats().current_bytes

    engine.set_memory_limit(int(current / 0.95))  # pressure, but within the limit
    assert len(events) == 1 and engine.is_valid

    engine.set_memory_limit(current - 1)  # over the limit: the event, then the unload
    assert len(events) == 2
    ev, seen_current = events[1]
    assert ev.current_bytes == seen_current == current  # the callback ran before the unload
    assert ev.limit_bytes == current - 1
    assert not engine.is_valid and not engine.closed
    st = engine.memory_stats()
    assert st.current_bytes == 0 and st.model_bytes == 0 and st.peak_bytes >= current

    for call in (
        lambda: engine.generate("hi", max_tokens=1),
        lambda: engine.stream("hi", max_tokens=1),
        lambda: engine.embed("hi"),
    ):
        with pytest.raises(InitializationException) as info:
            call()
        assert info.value.code is NativeErrorCode.CONTEXT_INVALID
        assert "unloaded" in (info.value.details or "")
    engine.close()
    engine.close()


def test_auto_unload_waits_for_active_stream(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path) as engine:
        events: list[MemoryPressureEvent] = []
        engine.on_memory_pressure(events.append)
        with engine.stream("hello", max_tokens=20, temperature=0) as s:
            first = next(s)
            engine.set_memory_limit(1000)
            rest = list(s)  # the stream runs to its end undisturbed
            assert first and len(rest) == 19
            assert s.stats.finish_reason is FinishReason.LENGTH
        assert len(events) >= 1 and events[-1].limit_bytes == 1000
        assert not engine.is_valid


# ------------------------------------------------------------------------------------------
# on_load_progress
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny", "smollm2"])
def test_load_progress(smollm2_path: Path, tiny_model_path: Path, model: str) -> None:
    path = tiny_model_path if model == "tiny" else smollm2_path
    values: list[float] = []
    threads: set[int] = set()

    def progress(p: float) -> None:
        values.append(p)
        threads.add(threading.get_ident())

    with _tiny(path, on_load_progress=progress) as engine:
        assert engine.is_valid
    assert len(values) >= 2
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values), "progress went backwards"
    assert values[-1] == 1.0
    assert threads == {threading.get_ident()}  # reported in the loading thread


def test_load_progress_cancel_and_raise(tiny_model_path: Path) -> None:
    calls: list[float] = []

    def cancel(p: float) -> bool:
        calls.append(p)
        return False

    with pytest.raises(ModelLoadException) as info:
        _tiny(tiny_model_path, on_load_progress=cancel)
    assert info.value.code is NativeErrorCode.MODEL_LOAD_FAILED
    assert "cancelled" in (info.value.details or "")
    assert str(tiny_model_path) in (info.value.details or "")
    assert len(calls) == 1  # the load stopped at the first report

    boom = LookupError("progress callback failed")

    def raiser(p: float) -> None:
        raise boom

    with pytest.raises(LookupError) as info2:
        _tiny(tiny_model_path, on_load_progress=raiser)
    assert info2.value is boom

    # Cancelling half-way through a larger model.
    seen: list[float] = []

    def half(p: float) -> bool:
        seen.append(p)
        return p < 0.5

    with pytest.raises(ModelLoadException, match="cancelled"):
        _tiny(tiny_model_path, on_load_progress=half)
    assert seen[-1] >= 0.5

    # Returning True or None continues.
    with _tiny(tiny_model_path, on_load_progress=lambda p: True) as engine:
        assert engine.is_valid


# ------------------------------------------------------------------------------------------
# Finalizer
# ------------------------------------------------------------------------------------------


@pytest.fixture
def free_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Count the real native frees (a spy around ``_free_context``, not a mock)."""
    calls: list[Any] = []
    real = engine_mod._free_context

    def spy(ctx: Any, boxes: list[Any]) -> None:
        calls.append(ctx)
        real(ctx, boxes)

    monkeypatch.setattr(engine_mod, "_free_context", spy)
    return calls


def test_finalizer_frees_forgotten_engine_once(
    tiny_model_path: Path, free_calls: list[Any]
) -> None:
    engine = _tiny(tiny_model_path)
    engine.on_memory_pressure(lambda ev: None)  # a registered callback handle too
    engine.generate("hi", max_tokens=1)
    fin = engine._finalizer
    del engine
    gc.collect()
    assert not fin.alive
    assert len(free_calls) == 1

    # In a reference cycle: freed by the cycle collector, once.
    engine = _tiny(tiny_model_path)
    engine.me = engine  # type: ignore[attr-defined]
    fin = engine._finalizer
    del engine
    gc.collect()
    assert not fin.alive and len(free_calls) == 2

    # close() then garbage collection: still once; close twice: once.
    engine = _tiny(tiny_model_path)
    engine.close()
    engine.close()
    assert len(free_calls) == 3
    del engine
    gc.collect()
    assert len(free_calls) == 3


def test_engine_left_open_at_exit(tiny_model_path: Path) -> None:
    """An engine (and a stream) still open when the interpreter exits: freed, no crash."""
    code = textwrap.dedent(
        """
        import sys
        from edgeveda_ffi import EdgeVeda
        e = EdgeVeda(sys.argv[1], context_size=256, num_threads=1)
        e.on_memory_pressure(lambda ev: None)
        s = e.stream("hello", max_tokens=50)
        next(s)
        print("OK", flush=True)
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tiny_model_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


# ------------------------------------------------------------------------------------------
# memory_cleanup
# ------------------------------------------------------------------------------------------


def test_memory_cleanup_frees_embedding_context_and_prompt_cache(tiny_model_path: Path) -> None:
    from edgeveda_ffi import EngineClosedException

    with _tiny(tiny_model_path) as eng:
        base = eng.memory_stats()
        eng.embed("a sentence to embed")
        with_embed = eng.memory_stats()
        assert with_embed.context_bytes > base.context_bytes  # the embedding context
        prompt = "the same prompt twice"
        eng.generate(prompt, max_tokens=2, temperature=0.0)
        assert eng.generate(prompt, max_tokens=2, temperature=0.0).stats.cached_tokens > 0

        after = eng.memory_cleanup()
        assert after == eng.memory_stats()
        assert after.context_bytes == base.context_bytes
        assert after.current_bytes == base.current_bytes
        assert after.model_bytes == with_embed.model_bytes  # the model stays loaded
        r = eng.generate(prompt, max_tokens=2, temperature=0.0)
        assert r.stats.cached_tokens == 0 and r.completion_tokens == 2
        assert len(eng.embed("again").embedding) > 0  # recreated on demand

        with eng.stream("a stream holds the context", max_tokens=4) as st:
            next(iter(st))
            with pytest.raises(InitializationException, match="stream is active") as ei:
                eng.memory_cleanup()
            assert ei.value.code == NativeErrorCode.CONTEXT_INVALID  # type: ignore[attr-defined]
        eng.memory_cleanup()  # fine again once the stream is closed
    with pytest.raises(EngineClosedException):
        eng.memory_cleanup()
