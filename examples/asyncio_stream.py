"""Server-side streaming with asyncio: Server-Sent Events from ``EdgeVeda.astream``.

    python examples/asyncio_stream.py                  # demo: server + one client, then exit
    python examples/asyncio_stream.py --serve 8000     # serve until Ctrl-C, then:
    curl -N 'http://127.0.0.1:8000/generate?prompt=Tell+me+a+joke&max_tokens=64'

``astream`` computes each piece in a worker thread, so the event loop keeps
serving (the demo counts the loop's ticks during the generation). One
generation runs per engine at a time, so requests queue on an asyncio.Lock.
A client that disconnects cancels its generation: leaving the ``async for``
closes the stream.

Only the standard library besides edgeveda_ffi; --model takes a model id or a
GGUF file (default: $EDGEVEDA_MODEL, else the default model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qs, quote_plus, urlsplit

from edgeveda_ffi import DEFAULT_MODEL_ID, EdgeVeda, ModelManager


class StreamServer:
    """A minimal HTTP/1.1 server: ``GET /generate?prompt=...&max_tokens=N`` → text/event-stream."""

    def __init__(self, llm: EdgeVeda, default_max_tokens: int) -> None:
        self.llm = llm
        self.default_max_tokens = default_max_tokens
        self.lock = asyncio.Lock()  # one stream per engine

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await reader.readline()).decode("latin-1").split()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # skip the headers
            url = urlsplit(request[1]) if len(request) >= 2 else None
            if url is None or request[0] != "GET" or url.path != "/generate":
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            query = parse_qs(url.query)
            prompt = query.get("prompt", ["Hello!"])[0]
            max_tokens = int(query.get("max_tokens", [str(self.default_max_tokens)])[0])
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
            )
            async with self.lock:
                text = self.llm.apply_chat_template([{"role": "user", "content": prompt}])
                async for piece in self.llm.astream(text, max_tokens=max_tokens, temperature=0.7):
                    writer.write(f"data: {json.dumps(piece)}\n\n".encode())
                    await writer.drain()  # a gone client raises here: the stream is cancelled
                stats = self.llm.last_stats
            done = {"tokens": stats.completion_tokens, "finish_reason": stats.finish_reason.value}
            writer.write(f"event: done\ndata: {json.dumps(done)}\n\n".encode())
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def client(port: int, prompt: str, max_tokens: int) -> Tuple[str, Dict[str, Any]]:
    """Read one SSE response and print the pieces as they arrive."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = f"/generate?prompt={quote_plus(prompt)}&max_tokens={max_tokens}"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    status = (await reader.readline()).decode().strip()
    assert status.endswith("200 OK"), status
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    pieces: List[str] = []
    done: Dict[str, Any] = {}
    event = "message"
    async for raw in reader:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: ") :])
            if event == "done":
                done = data
            else:
                pieces.append(data)
                print(data, end="", flush=True)
        elif not line:
            event = "message"
    writer.close()
    print()
    return "".join(pieces), done


async def ticker(counter: List[int]) -> None:
    while True:
        await asyncio.sleep(0.01)
        counter[0] += 1


async def amain(args: argparse.Namespace) -> int:
    path = ModelManager().resolve(args.model)
    with EdgeVeda(path, context_size=1024, num_threads=args.threads) as llm:
        app = StreamServer(llm, args.max_tokens)
        server = await asyncio.start_server(app.handle, "127.0.0.1", args.serve or 0)
        port = server.sockets[0].getsockname()[1]
        if args.serve:
            print(f"serving on http://127.0.0.1:{port}/generate?prompt=... (Ctrl-C stops)")
            async with server:
                await server.serve_forever()
            return 0
        async with server:
            ticks = [0]
            tick_task = asyncio.create_task(ticker(ticks))
            t0 = time.perf_counter()
            text, done = await client(port, args.prompt, args.max_tokens)
            elapsed = time.perf_counter() - t0
            tick_task.cancel()
        print(
            f"[{done.get('tokens')} tokens, {done.get('finish_reason')}, {elapsed:.2f} s; "
            f"the event loop ticked {ticks[0]} times meanwhile: it was never blocked]"
        )
        return 0 if text else 1


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("EDGEVEDA_MODEL", DEFAULT_MODEL_ID))
    parser.add_argument("--prompt", default="Write two sentences about the sea.")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="0 = auto")
    parser.add_argument(
        "--serve",
        type=int,
        metavar="PORT",
        default=None,
        help="serve on this port until Ctrl-C instead of the demo",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
