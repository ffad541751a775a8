"""The server's stream hand-off (``edgeveda_ffi.server.host.Handoff``): chunks
put by a real thread reach the event loop complete and in order, several per
take when they come faster than the interval, the end and an error without
waiting for the interval, and a chunk that comes while the loop waits wakes
it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, List

import pytest

pytest.importorskip("starlette")

from edgeveda_ffi.server.host import _END, Handoff  # noqa: E402


def _in_thread(fn: Any) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


async def _collect(h: Handoff) -> List[List[Any]]:
    batches = []
    while True:
        batch = await h.take()
        if not batch:
            return batches
        batches.append(batch)


def test_every_chunk_in_order_and_coalesced() -> None:
    async def main() -> List[List[Any]]:
        h = Handoff(asyncio.get_running_loop(), interval=0.05)

        def produce() -> None:
            for i in range(300):
                h.put(i)
                time.sleep(0.0005)
            h.put(_END)

        t = _in_thread(produce)
        batches = await asyncio.wait_for(_collect(h), 30)
        t.join()
        return batches

    batches = asyncio.run(main())
    assert [c for b in batches for c in b] == list(range(300))
    # 300 chunks over >= 0.15 s, one take per 0.05 s at the most after the first
    assert len(batches) < 100, len(batches)
    assert max(len(b) for b in batches) > 1


def test_the_end_and_errors_do_not_wait_for_the_interval() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        h = Handoff(loop, interval=3600)  # a paced take would wait an hour
        _in_thread(lambda: h.put("a")).join()
        assert await asyncio.wait_for(h.take(), 10) == ["a"]
        _in_thread(lambda: (h.put("b"), h.put(_END))).join()
        assert await asyncio.wait_for(h.take(), 10) == ["b"]
        assert await asyncio.wait_for(h.take(), 10) == []
        assert await h.take() == []  # ended stays ended

        h = Handoff(loop, interval=3600)
        assert await asyncio.wait_for(_take_after_put(h, "x"), 10) == ["x"]
        error = ValueError("engine failed")
        _in_thread(lambda: (h.put("y"), h.put(error))).join()
        assert await asyncio.wait_for(h.take(), 10) == ["y"]
        with pytest.raises(ValueError, match="engine failed"):
            await asyncio.wait_for(h.take(), 10)
        assert await h.take() == []

    asyncio.run(main())


async def _take_after_put(h: Handoff, item: Any) -> List[Any]:
    """take() while the loop waits, then a put() from another thread a little
    later: the put wakes it."""
    threading.Timer(0.05, h.put, args=(item,)).start()
    return await h.take()


def test_a_put_wakes_a_waiting_loop_unpaced() -> None:
    async def main() -> None:
        h = Handoff(asyncio.get_running_loop(), interval=3600)
        # unpaced takes (the chunks before the response starts) never wait
        # for the interval either
        for item in ("r", "s", "t"):
            threading.Timer(0.02, h.put, args=(item,)).start()
            assert await asyncio.wait_for(h.take(paced=False), 10) == [item]

    asyncio.run(main())


def test_the_cli_default_is_the_servers() -> None:
    from edgeveda_ffi.cli.serve_command import STREAM_INTERVAL_MS
    from edgeveda_ffi.server.host import STREAM_INTERVAL

    assert STREAM_INTERVAL_MS / 1000 == STREAM_INTERVAL
