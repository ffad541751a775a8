"""Issue 4: streaming — whole UTF-8 characters, pieces == the blocking result,
token info, freeing the native stream when a loop is left, asyncio."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from edgeveda_ffi import EdgeVeda, FinishReason, InitializationException, StreamPiece, TokenStream

REPLACEMENT = "\ufffd"


def _stream_and_blocking(engine: EdgeVeda, prompt: str, **kw: Any) -> tuple[list[str], str]:
    """The streamed pieces and the blocking text for the same params, both from a cold
    cache (a warm prompt cache changes batch shapes, so floats, so greedy ties)."""
    engine.reset()
    blocking = engine.generate(prompt, **kw).text
    engine.reset()
    pieces = list(engine.stream(prompt, **kw))
    return pieces, blocking


def _check_pieces(pieces: list[str], blocking: str) -> None:
    assert pieces, "nothing was streamed"
    for piece in pieces:
        assert isinstance(piece, str) and piece
        # Whole characters: every piece is valid UTF-8 on its own (no lone surrogates,
        # nothing split), so it encodes and decodes back unchanged.
        assert piece.encode("utf-8").decode("utf-8") == piece
    joined = "".join(pieces)
    assert joined == blocking
    # Streaming introduced no replacement characters the blocking result lacks.
    assert joined.count(REPLACEMENT) == blocking.count(REPLACEMENT)


def _utf8_lengths(text: str) -> set[int]:
    return {len(c.encode("utf-8")) for c in text}


def test_multibyte_real_model(smollm2_engine: EdgeVeda) -> None:
    """SmolLM2 asked (greedily) to echo accents, CJK and an emoji."""
    prompt = "Echo: café 日本語 🎉\nEcho: café 日本語 🎉\nEcho: café 日本語 🎉\nEcho:"
    pieces, blocking = _stream_and_blocking(smollm2_engine, prompt, max_tokens=24, temperature=0)
    _check_pieces(pieces, blocking)
    assert REPLACEMENT not in blocking
    # 2-, 3- and 4-byte characters all came through.
    assert {2, 3, 4} <= _utf8_lengths(blocking), blocking
    assert "日本語" in blocking and "🎉" in blocking and "é" in blocking
    # A multi-token character (🎉 is 3 byte tokens) arrives as one piece, never split.
    assert len(smollm2_engine.tokenize("🎉", add_special=False)) > 1
    assert any("🎉" in p for p in pieces)


MULTIBYTE_GRAMMAR = "root ::= item{30}\nitem ::= [日語東京🎉😀🚀éñ]"


@pytest.mark.parametrize("kw", [{"temperature": 0}, {"temperature": 1.0, "seed": 3}])
def test_multibyte_byte_tokens_tiny(tiny_varied_engine: EdgeVeda, kw: dict[str, Any]) -> None:
    """The random model forced (by grammar) to emit characters that SmolLM2's tokenizer
    only has as 2-3 byte tokens each: pieces are still whole characters."""
    pieces, blocking = _stream_and_blocking(
        tiny_varied_engine, "x", grammar=MULTIBYTE_GRAMMAR, max_tokens=200, **kw
    )
    _check_pieces(pieces, blocking)
    assert {2, 3} <= _utf8_lengths(blocking)
    # llama.cpp's grammar does not check UTF-8 continuation bytes, so a random model may
    # complete a 4-byte character with an invalid byte; the core then emits U+FFFD (as
    # many in the blocking result). Everything else is one of the allowed characters.
    assert set(blocking) <= set("日語東京🎉😀🚀éñ" + REPLACEMENT)


@pytest.mark.parametrize("seed", [7, 11])
def test_random_byte_tokens_tiny(tiny_varied_engine: EdgeVeda, seed: int) -> None:
    """Free sampling at a high temperature: random tokens, byte tokens among them."""
    kw = dict(max_tokens=120, temperature=5.0, top_k=0, top_p=1.0, seed=seed)
    pieces, blocking = _stream_and_blocking(tiny_varied_engine, "日本語 café 🎉", **kw)
    _check_pieces(pieces, blocking)


def test_token_info(tiny_varied_engine: EdgeVeda) -> None:
    pieces = list(
        tiny_varied_engine.stream(
            "hello", max_tokens=8, temperature=0, confidence_threshold=0.5, token_info=True
        )
    )
    assert pieces and all(isinstance(p, StreamPiece) for p in pieces)
    indices = [p.info.token_index for p in pieces]
    assert indices == sorted(indices) and indices[-1] <= 8
    for p in pieces:
        assert str(p) == p.text
        assert 0.0 <= p.info.confidence <= 1.0
        assert 0.0 <= p.info.avg_confidence <= 1.0
        assert isinstance(p.info.needs_cloud_handoff, bool)
    # A random model is unsure of everything: below 0.5 after >= 3 tokens.
    assert pieces[-1].info.needs_cloud_handoff


def test_stream_stats_and_text(tiny_engine: EdgeVeda) -> None:
    with tiny_engine.stream("hello", max_tokens=6, temperature=0) as s:
        assert isinstance(s, TokenStream) and iter(s) is s
        text = s.text()
        st = s.stats
        assert st.completion_tokens == 6 and st.finish_reason is FinishReason.LENGTH
        assert st.prompt_tokens == len(tiny_engine.tokenize("hello"))
        assert text
    assert s.closed


def test_break_frees_native_stream(tiny_engine: EdgeVeda) -> None:
    for i, _piece in enumerate(tiny_engine.stream("hello", max_tokens=200, temperature=0)):
        if i == 2:
            break
    # Immediately usable: no "a stream is active".
    assert tiny_engine.generate("hi", max_tokens=2).completion_tokens == 2
    for _piece in tiny_engine.stream("hello", max_tokens=200):
        break
    second = tiny_engine.stream("again", max_tokens=3)
    assert len(list(second)) >= 1
    second.close()

    # The same with an exception leaving the loop, and with a ``with`` block.
    with pytest.raises(RuntimeError):
        for _piece in tiny_engine.stream("hello", max_tokens=200):
            raise RuntimeError("leave the loop")
    assert tiny_engine.generate("hi", max_tokens=1).completion_tokens == 1
    with tiny_engine.stream("hello", max_tokens=200) as s:
        next(s)
    assert s.closed
    s.close()  # idempotent
    assert tiny_engine.generate("hi", max_tokens=1).completion_tokens == 1


def test_forgotten_stream_freed_by_gc(tiny_engine: EdgeVeda) -> None:
    s = tiny_engine.stream("hello", max_tokens=200)
    next(s)
    cycle: list[Any] = [s]
    cycle.append(cycle)  # only the cycle collector can free it
    del s, cycle
    gc.collect()
    assert tiny_engine.generate("hi", max_tokens=1).completion_tokens == 1


# ------------------------------------------------------------------------------------------
# asyncio
# ------------------------------------------------------------------------------------------


def test_astream_does_not_block_event_loop(smollm2_engine: EdgeVeda) -> None:
    prompt = "Write a long story about a dragon who learns to bake bread."

    async def main() -> tuple[list[str], list[float], float, float]:
        ticks: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        t0 = time.monotonic()
        pieces = [p async for p in smollm2_engine.astream(prompt, max_tokens=40, temperature=0)]
        t1 = time.monotonic()
        done.set()
        await task
        return pieces, ticks, t0, t1

    smollm2_engine.reset()
    pieces, ticks, t0, t1 = asyncio.run(main())
    smollm2_engine.reset()
    blocking = smollm2_engine.generate(prompt, max_tokens=40, temperature=0).text
    assert "".join(pieces) == blocking
    during = [t for t in ticks if t0 <= t <= t1]
    elapsed = t1 - t0
    # The ticker ran throughout: many ticks, and never a long silence (one blocking
    # native call in the loop would stall it for the whole generation).
    assert len(during) >= 10, (len(during), elapsed)
    gaps = [b - a for a, b in zip([t0, *during], [*during, t1])]
    assert max(gaps) < max(0.5, elapsed / 3), (max(gaps), elapsed)


def test_astream_early_exit_frees_stream(tiny_engine: EdgeVeda) -> None:
    async def main() -> list[str]:
        got = []
        agen = tiny_engine.astream("hello", max_tokens=200)
        async for piece in agen:
            got.append(piece)
            if len(got) == 3:
                break
        await agen.aclose()
        return got

    assert len(asyncio.run(main())) == 3
    assert tiny_engine.generate("hi", max_tokens=1).completion_tokens == 1


def test_astream_errors_surface(tiny_engine: EdgeVeda) -> None:
    async def main() -> None:
        with tiny_engine.stream("hold the engine", max_tokens=50) as s:
            next(s)
            async for _ in tiny_engine.astream("hi"):
                pass

    with pytest.raises(InitializationException, match="stream is active"):
        asyncio.run(main())


def test_cancelling_astream_task_frees_stream(long_tiny: EdgeVeda) -> None:
    async def main() -> int:
        got: list[str] = []
        first = asyncio.Event()

        async def consume() -> None:
            async for piece in long_tiny.astream("hello", max_tokens=1500):
                got.append(piece)
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(got)

    t0 = time.monotonic()
    n = asyncio.run(main())
    assert 1 <= n < 1500
    assert time.monotonic() - t0 < 5
    # The native stream was cancelled and freed with the task.
    assert long_tiny.generate("hi", max_tokens=1).completion_tokens == 1


@pytest.fixture(scope="module")
def long_tiny(tiny_model_path: Any) -> Any:
    engine = EdgeVeda(tiny_model_path, context_size=2048, num_threads=1)
    yield engine
    engine.close()


# ---- leaving an astream early frees the native stream before the next call ----


def test_astream_break_frees_stream_at_once(tiny_engine: EdgeVeda) -> None:
    """A plain ``break`` (no aclose): the next call on the engine starts at once."""

    async def main() -> int:
        for _ in range(3):
            got = 0
            async for _piece in tiny_engine.astream("hello", max_tokens=200):
                got += 1
                if got == 2:
                    break
            # the very next call, in the same loop iteration: no "stream is active"
            r = tiny_engine.generate("hi", max_tokens=1)
            assert r.completion_tokens == 1
        return got

    assert asyncio.run(main()) == 2


def test_astream_exception_in_body_frees_stream(tiny_engine: EdgeVeda) -> None:
    async def main() -> None:
        with pytest.raises(LookupError):
            async for _piece in tiny_engine.astream("hello", max_tokens=200):
                raise LookupError("client went away")
        async for _piece in tiny_engine.astream("hi", max_tokens=2):
            pass

    asyncio.run(main())
    assert tiny_engine.generate("hi", max_tokens=1).completion_tokens == 1


def test_astream_task_cancel_frees_stream_before_next_call(long_tiny: EdgeVeda) -> None:
    async def main() -> None:
        first = asyncio.Event()

        async def consume() -> None:
            async for _piece in long_tiny.astream("hello", max_tokens=1500):
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # right after the cancelled task: the engine takes a new stream
        pieces = [p async for p in long_tiny.astream("hi", max_tokens=3)]
        assert pieces

    asyncio.run(main())


def test_astream_dropped_iterator_frees_stream(tiny_engine: EdgeVeda) -> None:
    async def main() -> None:
        it = tiny_engine.astream("hello", max_tokens=200)
        assert isinstance(await it.__anext__(), str)
        del it  # garbage: freed now, not when the loop shuts down
        assert tiny_engine.generate("hi", max_tokens=1).completion_tokens == 1

    asyncio.run(main())


def test_astream_async_with_and_aclose(tiny_engine: EdgeVeda) -> None:
    async def main() -> None:
        async with tiny_engine.astream("hello", max_tokens=200) as it:
            async for _piece in it:
                break
        assert tiny_engine.generate("hi", max_tokens=1).completion_tokens == 1
        it2 = tiny_engine.astream("hello", max_tokens=200)
        await it2.aclose()  # before the first piece: nothing was started
        await it2.aclose()  # idempotent
        assert [p async for p in it2] == []

    asyncio.run(main())


def test_stream_break_and_exception_free_stream(tiny_engine: EdgeVeda) -> None:
    for piece in tiny_engine.stream("hello", max_tokens=200):
        assert piece
        break
    assert tiny_engine.generate("hi", max_tokens=1).completion_tokens == 1
    with pytest.raises(LookupError):
        for _piece in tiny_engine.stream("hello", max_tokens=200):
            raise LookupError("consumer failed")
    assert tiny_engine.generate("hi", max_tokens=1).completion_tokens == 1


def _example_stream_server() -> Any:
    """examples/asyncio_stream.py's StreamServer, loaded from the file."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / "asyncio_stream.py"
    spec = importlib.util.spec_from_file_location("asyncio_stream_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.StreamServer


def test_example_server_client_disconnect_then_queued_requests(long_tiny: EdgeVeda) -> None:
    """The examples/asyncio_stream.py pattern: a client that disconnects mid-stream
    cancels its generation (the server's ``drain`` raises inside ``async for``), and
    the requests queued behind it are served."""
    server_cls = _example_stream_server()

    async def request(port: int, max_tokens: int, hang_up_after: int = 0) -> Tuple[int, bool]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /generate?prompt=hello&max_tokens={max_tokens} HTTP/1.1\r\n\r\n".encode()
        )
        await writer.drain()
        pieces, done = 0, False
        async for raw in reader:
            line = raw.decode()
            if line.startswith("event: done"):
                done = True
            elif line.startswith("data: "):
                pieces += 1
                if hang_up_after and pieces >= hang_up_after:
                    break
        writer.transport.abort()  # a client that goes away without a goodbye
        return pieces, done

    async def main() -> List[Tuple[int, bool]]:
        app = server_cls(long_tiny, 16)
        server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            first = asyncio.create_task(request(port, 1500, hang_up_after=3))
            await asyncio.sleep(0)  # the first request takes the lock first
            queued = [asyncio.create_task(request(port, 8)) for _ in range(2)]
            return [await first] + [await t for t in queued]

    t0 = time.monotonic()
    results = asyncio.run(main())
    assert results[0][0] >= 3 and not results[0][1]  # hung up before the end
    for pieces, done in results[1:]:
        assert done and pieces >= 1, results
    assert time.monotonic() - t0 < 60
    assert long_tiny.generate("hi", max_tokens=1).completion_tokens == 1
