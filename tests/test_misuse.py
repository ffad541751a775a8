"""Issue 9: API misuse never crashes; it raises a typed error or is a documented no-op.

- every public method and property of ``EdgeVeda`` after ``close()`` (found by
  introspection, so a new method cannot be forgotten), and of ``TokenStream``
  after its engine closed;
- closing twice, in any order; a stream freed after its engine (Python and raw C);
- a pressure callback that unregisters itself, or closes the engine, from inside;
- ``fork()`` after a model is loaded (see docs/safety.md for what is safe).

Freed/NULL handles at the C level: native/tests/test_api_guards.c.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from edgeveda_ffi import (
    EdgeVeda,
    EngineClosedException,
    GenerationException,
    InitializationException,
    MemoryPressureEvent,
    NativeErrorCode,
    TokenStream,
)
from edgeveda_ffi.engine.bindings import ffi, lib

MSGS = [{"role": "user", "content": "hi"}]


def _tiny(path: Path, **kw: Any) -> EdgeVeda:
    kw.setdefault("context_size", 256)
    kw.setdefault("num_threads", 1)
    return EdgeVeda(path, **kw)


def _in_thread(fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run fn in a daemon thread: a deadlock fails the test instead of hanging the suite."""
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


def _astream_first(engine: EdgeVeda) -> Any:
    async def go() -> Any:
        async for piece in engine.astream("hi", max_tokens=2):
            return piece
        return None

    return asyncio.run(go())


# How to call each public member of EdgeVeda. After close() every one of them
# raises EngineClosedException, except the documented ones in AFTER_CLOSE_OK.
CALLS: Dict[str, Callable[[EdgeVeda], Any]] = {
    "generate": lambda e: e.generate("hi", max_tokens=2),
    "stream": lambda e: e.stream("hi", max_tokens=2),
    "astream": _astream_first,
    "chat": lambda e: e.chat(MSGS, max_tokens=2),
    "chat_session": lambda e: e.chat_session().send("hi", max_tokens=2),
    "apply_chat_template": lambda e: e.apply_chat_template(MSGS),
    "embed": lambda e: e.embed("hi"),
    "tokenize": lambda e: e.tokenize("hi"),
    "detokenize": lambda e: e.detokenize([1, 2]),
    "memory_stats": lambda e: e.memory_stats(),
    "memory_cleanup": lambda e: e.memory_cleanup(),
    "set_memory_limit": lambda e: e.set_memory_limit(0),
    "on_memory_pressure": lambda e: e.on_memory_pressure(lambda ev: None),
    "reset": lambda e: e.reset(),
    "set_prompt_cache": lambda e: e.set_prompt_cache(False),
    "last_stats": lambda e: e.last_stats,
    "model_info": lambda e: e.model_info,
    "buffer_types": lambda e: e.buffer_types,
    "create_completion": lambda e: e.create_completion("hi", max_tokens=2, stream=True),
    "create_chat_completion": lambda e: e.create_chat_completion(MSGS, max_tokens=2),
    "create_embedding": lambda e: e.create_embedding("hi"),
}

# Documented to work after close: close (idempotent), cancel (no-op), closed /
# is_valid (report it), remove_memory_pressure_callback (no-op), from_config
# (a constructor), and the plain attributes.
AFTER_CLOSE_OK: Dict[str, Callable[[EdgeVeda], Any]] = {
    "close": lambda e: e.close(),
    "cancel": lambda e: e.cancel(),
    "closed": lambda e: e.closed,
    "is_valid": lambda e: e.is_valid,
    "remove_memory_pressure_callback": lambda e: e.remove_memory_pressure_callback(print),
    "from_config": None,  # type: ignore[dict-item]
    "config": lambda e: e.config,
    "defaults": lambda e: e.defaults,
}


def _public_members(cls: type) -> set[str]:
    return {n for n, _ in inspect.getmembers(cls) if not n.startswith("_")}


def test_every_public_member_is_listed(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path) as engine:
        members = _public_members(EdgeVeda) | {n for n in vars(engine) if not n.startswith("_")}
    unlisted = members - set(CALLS) - set(AFTER_CLOSE_OK)
    assert not unlisted, f"add these to CALLS or AFTER_CLOSE_OK in {__file__}: {sorted(unlisted)}"


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "used-before-close"])
def test_every_method_after_close_raises_engine_closed(tiny_model_path: Path, warm: bool) -> None:
    engine = _tiny(tiny_model_path)
    if warm:  # caches (model_info) and registrations exist before close
        for call in CALLS.values():
            r = call(engine)
            if isinstance(r, TokenStream) or inspect.isgenerator(r):
                r.close()  # frees the native stream before the next call
    engine.close()
    for name, call in CALLS.items():
        with pytest.raises(EngineClosedException, match="closed") as info:
            r = call(engine)
            pytest.fail(f"{name} after close returned {r!r}")
        assert isinstance(info.value, InitializationException), name
        assert "closed" in str(info.value), name
    # the documented exceptions to the rule
    assert engine.closed and not engine.is_valid
    engine.cancel()
    engine.close()
    engine.remove_memory_pressure_callback(print)
    assert engine.config.model_path == str(tiny_model_path)


def test_close_twice_and_mixed_with_context_manager(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path) as engine:
        engine.close()
        engine.close()
    engine.close()
    assert engine.closed
    assert not engine._finalizer.alive
    del engine
    gc.collect()  # the finalizer does not run a second time


def test_close_from_many_threads_at_once(tiny_model_path: Path) -> None:
    engine = _tiny(tiny_model_path)
    barrier = threading.Barrier(6)

    def closer() -> None:
        barrier.wait()
        engine.close()

    threads = [threading.Thread(target=closer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert engine.closed and not engine._finalizer.alive


# ------------------------------------------------------------------------------------------
# Freeing in the wrong order
# ------------------------------------------------------------------------------------------


def test_stream_after_engine_close(tiny_model_path: Path) -> None:
    engine = _tiny(tiny_model_path)
    stream = engine.stream("hello", max_tokens=50, temperature=0, token_info=True)
    next(stream)
    engine.close()
    # The stream ends; its remaining methods raise typed errors or are no-ops.
    assert stream.closed
    assert list(stream) == []
    with pytest.raises(StopIteration):
        next(stream)
    assert stream.text() == ""
    with pytest.raises(GenerationException, match="closed"):
        stream.token_info()
    with pytest.raises(GenerationException, match="closed"):
        _ = stream.stats
    stream.cancel()
    stream.close()
    stream.close()
    covered = {"cancel", "close", "closed", "stats", "text", "token_info"}
    assert _public_members(TokenStream) <= covered, "cover the new TokenStream members here"


def test_stream_dropped_after_engine_dropped(tiny_model_path: Path) -> None:
    """Both left to the garbage collector, in either order: each native object freed once."""
    for drop_engine_first in (True, False):
        engine = _tiny(tiny_model_path)
        stream = engine.stream("hello", max_tokens=50, temperature=0)
        next(stream)
        if drop_engine_first:
            del engine
            gc.collect()  # the stream holds the engine: nothing is freed yet
            assert next(stream)
            del stream
        else:
            del stream
            gc.collect()
            del engine
        gc.collect()


def test_engine_closed_while_another_thread_iterates(tiny_model_path: Path) -> None:
    engine = _tiny(tiny_model_path, context_size=1024)
    stream = engine.stream("hello", max_tokens=1000, temperature=0)
    got: list[str] = []
    started = threading.Event()

    def consume() -> None:
        for piece in stream:
            got.append(piece)
            started.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert started.wait(60)
    _in_thread(engine.close)
    t.join(60)
    assert not t.is_alive(), "the iterating thread did not end"
    assert got and len(got) < 1000 and stream.closed


def test_native_stream_freed_after_its_context(tiny_model_path: Path) -> None:
    """Raw C order: ev_free(ctx) first, then use and free the stream (the core keeps
    the shared state alive; the stream reports CONTEXT_INVALID or STREAM_ENDED)."""
    c = ffi.new("ev_config*")
    lib.ev_config_default(c)
    p = ffi.new("char[]", os.fsencode(tiny_model_path))
    c.model_path = p
    c.context_size = 256
    c.num_threads = 1
    err = ffi.new("ev_error_t*")
    ctx = lib.ev_init(c, err)
    assert ctx != ffi.NULL, err[0]
    stream = lib.ev_generate_stream(ctx, b"hello", ffi.NULL, err)
    assert stream != ffi.NULL
    first = lib.ev_stream_next(stream, err)
    assert first != ffi.NULL
    lib.ev_free_string(first)
    lib.ev_free(ctx)
    assert lib.ev_stream_next(stream, err) == ffi.NULL
    assert err[0] in (NativeErrorCode.CONTEXT_INVALID, NativeErrorCode.STREAM_ENDED)
    assert not lib.ev_stream_has_next(stream)
    lib.ev_stream_cancel(stream)
    info = ffi.new("ev_stream_token_info*")
    lib.ev_stream_get_token_info(stream, info)  # any code; must not crash
    lib.ev_stream_free(stream)


# ------------------------------------------------------------------------------------------
# Callbacks that unregister themselves or close the engine
# ------------------------------------------------------------------------------------------


def _breach(engine: EdgeVeda) -> None:
    engine.set_memory_limit(engine.memory_stats().current_bytes - 1)


def test_pressure_callback_unregisters_itself(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path, auto_unload_on_memory_pressure=False) as engine:
        calls: list[MemoryPressureEvent] = []
        other: list[MemoryPressureEvent] = []
        remove_holder: list[Callable[[], None]] = []

        def once(ev: MemoryPressureEvent) -> None:
            calls.append(ev)
            remove_holder[0]()  # unregister from inside, via the returned function
            remove_holder[0]()  # twice is a no-op

        remove_holder.append(engine.on_memory_pressure(once))
        engine.on_memory_pressure(other.append)
        _in_thread(lambda: _breach(engine))
        assert len(calls) == 1 and len(other) == 1  # the other callback still ran this round
        engine.set_memory_limit(0)
        _in_thread(lambda: _breach(engine))
        assert len(calls) == 1 and len(other) == 2
        # The engine works on.
        engine.set_memory_limit(0)
        assert engine.generate("hi", max_tokens=2).completion_tokens == 2


@pytest.mark.parametrize("where", ["main-thread", "other-thread", "generate"])
def test_callback_closes_engine_from_inside(tiny_model_path: Path, where: str) -> None:
    engine = _tiny(tiny_model_path, context_size=1024, auto_unload_on_memory_pressure=False)
    seen: list[MemoryPressureEvent] = []

    def closer(ev: MemoryPressureEvent) -> None:
        seen.append(ev)
        engine.close()
        engine.close()

    engine.on_memory_pressure(closer)
    if where == "generate":
        # A limit set while a generation runs is checked when that call ends, in the
        # generating thread, while the call still holds the context: close() there
        # must defer the free to the end of the call.
        started = threading.Event()

        def gen() -> Any:
            started.set()
            try:
                return engine.generate("Once upon a time", max_tokens=300, seed=1)
            except EngineClosedException:
                return None

        worker = threading.Thread(target=gen, daemon=True)
        worker.start()
        assert started.wait(30)
        import time

        time.sleep(0.2)
        try:
            _breach(engine)
        except EngineClosedException:
            pass  # the generation had already ended and the callback ran here
        worker.join(60)
        assert not worker.is_alive(), "deadlock: the generation did not return"
    elif where == "other-thread":
        _in_thread(lambda: _breach(engine))
    else:
        # The main thread itself (a deadlock here would hang; the watchdog of
        # _in_thread is not available, so the call is bounded by pytest's run).
        _breach(engine)
    assert seen and engine.closed
    assert not engine._finalizer.alive  # freed once the native call returned
    with pytest.raises(EngineClosedException):
        engine.generate("hi")


def test_callback_raises_after_closing(tiny_model_path: Path) -> None:
    engine = _tiny(tiny_model_path, auto_unload_on_memory_pressure=False)

    def bad(ev: MemoryPressureEvent) -> None:
        engine.close()
        raise RuntimeError("user bug")

    engine.on_memory_pressure(bad)
    with pytest.raises(RuntimeError, match="user bug"):
        _in_thread(lambda: _breach(engine))
    assert engine.closed and not engine._finalizer.alive


# ------------------------------------------------------------------------------------------
# fork() after load (docs/safety.md)
# ------------------------------------------------------------------------------------------

fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _fork(child: Callable[[], int], timeout: float = 120.0) -> int:
    """Run child() in a forked process, return its exit status; a hang fails the test."""
    import select
    import signal
    import time
    import warnings

    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        code = 3
        try:
            code = child()
        except BaseException as exc:  # noqa: BLE001
            os.write(w, repr(exc).encode()[:400])
            code = 4
        finally:
            os._exit(code)
    os.close(w)
    deadline = time.monotonic() + timeout
    msg = b""
    while True:
        ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            pytest.fail("the forked child hung")
        chunk = os.read(r, 4096)
        if not chunk:
            break
        msg += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"child killed by signal {os.WTERMSIG(status)}: {msg!r}"
    assert not msg, msg.decode(errors="replace")
    return os.WEXITSTATUS(status)


@fork_only
def test_fork_child_that_only_exits(tiny_model_path: Path) -> None:
    engine = _tiny(tiny_model_path)
    before = engine.generate("hi", max_tokens=4, temperature=0).text
    # os._exit: no finalizers in the child (the documented way).
    assert _fork(lambda: 0) == 0

    # sys.exit in the child: Python's exit runs the atexit hooks and the engine's
    # finalizer there, which frees the child's copy of the context; the parent's
    # engine is untouched.
    def exits_normally() -> int:
        import subprocess

        return subprocess.call([sys.executable, "-c", "pass"])  # the child can run programs

    assert _fork(exits_normally) == 0
    assert engine.generate("hi", max_tokens=4, temperature=0).text == before
    engine.close()


@fork_only
@pytest.mark.parametrize("threads", [1, 2])
def test_fork_child_makes_its_own_engine(tiny_model_path: Path, threads: int) -> None:
    engine = _tiny(tiny_model_path, num_threads=threads)
    expected = engine.generate("hello", max_tokens=6, temperature=0).text

    def child() -> int:
        with EdgeVeda(tiny_model_path, context_size=256, num_threads=threads) as mine:
            text = mine.generate("hello", max_tokens=6, temperature=0).text
        return 0 if text == expected else 5

    assert _fork(child) == 0
    assert engine.generate("hello", max_tokens=6, temperature=0).text == expected
    engine.close()


@fork_only
def test_fork_child_cannot_use_inherited_engine(tiny_model_path: Path) -> None:
    """In the child the parent's engine is closed for good: every use raises
    EngineClosedException; close() and the finalizer touch nothing native."""
    engine = _tiny(tiny_model_path)
    engine.generate("hi", max_tokens=2)
    stream = engine.stream("hello", max_tokens=20)
    next(stream)

    def child() -> int:
        calls: list[Callable[[], Any]] = [
            lambda: engine.generate("hi", max_tokens=2),
            lambda: next(stream),
        ]
        for call in calls:
            try:
                call()
                return 6
            except EngineClosedException as exc:
                if "another process" not in str(exc):
                    return 7
        assert not engine.is_valid
        engine.cancel()
        stream.close()
        engine.close()
        return 0

    assert _fork(child) == 0
    assert next(stream)  # the parent's stream and engine are untouched
    stream.close()
    assert engine.generate("hi", max_tokens=2).completion_tokens == 2
    engine.close()


FORK_WHILE_BUSY = r"""
import os, sys, threading, time
from edgeveda_ffi import EdgeVeda
engine = EdgeVeda(sys.argv[1], context_size=2048, num_threads=1)
stream_engine = EdgeVeda(sys.argv[1], context_size=2048, num_threads=1)
stream = stream_engine.stream("Once upon a time", max_tokens=1500)
started = threading.Event()

def work():
    started.set()
    engine.generate("Once upon a time", max_tokens=1500)

def pull():
    for _ in stream:
        pass

for fn in (work, pull):
    threading.Thread(target=fn, daemon=True).start()
started.wait()
time.sleep(0.5)  # both threads inside native calls, holding the engines' locks
pid = os.fork()
if pid == 0:
    sys.exit(0)  # a normal exit: the finalizers of both engines and the stream run
deadline = time.time() + 60
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("exit", os.waitstatus_to_exitcode(status))
        break
    time.sleep(0.1)
else:
    os.kill(pid, 9)
    print("child hung")
engine.cancel()
stream.cancel()
"""


@fork_only
def test_fork_while_other_threads_generate_child_exits_normally(tiny_model_path: Path) -> None:
    """The hang this guards against: the child's exit ran the finalizer, whose
    ev_free waited for a context lock held by a parent thread that the child
    does not have."""
    import subprocess

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.environ.get("EDGEVEDA_PKG_ROOT") or root
    proc = subprocess.run(
        [sys.executable, "-c", FORK_WHILE_BUSY, str(tiny_model_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exit 0" in proc.stdout, (proc.stdout, proc.stderr[-2000:])
