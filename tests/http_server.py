"""A real threaded HTTP server on 127.0.0.1 (port 0) that serves files and injects faults.

Used by the model-manager tests (no mocks: real sockets, real ``requests``)::

    from http_server import FaultyHTTPServer, http_server  # the fixture

    def test_x(http_server):
        route = http_server.add("/m.gguf", data, fail_first=2)
        url = http_server.url("/m.gguf")

``Route`` fields select the behaviour of one path:

* ``content_length`` (send ``Content-Length`` or close the connection to end
  the body), ``content_length_delta`` (announce more/fewer bytes than sent);
* ``support_ranges`` (``Range``/``If-Range`` honoured against ``etag`` and
  ``last_modified``; 416 past the end), ``False`` = a Range-ignoring server;
* ``status`` (always answer this status, e.g. 404), ``fail_first`` +
  ``fail_status`` + ``retry_after`` (the first K GETs fail, e.g. 500 or 429);
* ``drop_after`` / ``drop_count`` (close the connection after N body bytes, for
  the first ``drop_count`` GETs), ``stall_after`` / ``stall_seconds`` /
  ``stall_count`` (send N bytes then go silent), ``trickle`` (bytes per write,
  seconds between writes);
* ``redirect_to`` (302 to another path; two routes pointing at each other
  make a loop); ``after_request`` (a hook called after each GET, e.g. to
  change the file between attempts with ``route.set_data``).

Every request is recorded in ``server.log`` (method, path, headers, status,
body bytes sent).
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import pytest

__all__ = [
    "FaultyHTTPServer",
    "Route",
    "RequestRecord",
    "http_server",
    "closed_port_url",
    "payload",
    "sha256_hex",
]

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


@dataclass
class RequestRecord:
    """One request the server saw."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0


@dataclass
class Route:
    """What the server does for one path (see the module doc)."""

    data: bytes = b""
    etag: Optional[str] = "auto"
    last_modified: Optional[str] = LAST_MODIFIED
    content_length: bool = True
    content_length_delta: int = 0
    support_ranges: bool = True
    status: Optional[int] = None
    fail_first: int = 0
    fail_status: int = 500
    retry_after: Optional[str] = None
    drop_after: Optional[int] = None
    drop_count: int = 1
    stall_after: Optional[int] = None
    stall_seconds: float = 5.0
    stall_count: int = 1
    trickle: Optional[tuple[int, float]] = None
    redirect_to: Optional[str] = None
    after_request: Optional[Callable[[Route, int], None]] = None
    hits: int = 0
    drops_done: int = 0
    stalls_done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.etag == "auto":
            self.etag = self._auto_etag(self.data)

    @staticmethod
    def _auto_etag(data: bytes) -> str:
        return '"' + hashlib.sha256(data).hexdigest()[:16] + '"'

    def set_data(self, data: bytes, last_modified: Optional[str] = None) -> None:
        """Replace the file (a new strong ETag, and Last-Modified if given)."""
        self.data = data
        if self.etag is not None:
            self.etag = self._auto_etag(data)
        if last_modified is not None:
            self.last_modified = last_modified


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._serve(head=False)

    # -- helpers ---------------------------------------------------------------
    def _simple(self, rec: RequestRecord, status: int, body: bytes, **headers: str) -> None:
        rec.status = status
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            rec.body_bytes = len(body)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        rec = RequestRecord(self.command, path, {k: v for k, v in self.headers.items()})
        with owner.lock:
            owner.log.append(rec)
        route = owner.routes.get(path)
        if route is None:
            self._simple(rec, 404, b"<html>not found</html>")
            return
        with route.lock:
            if not head:
                route.hits += 1
            n = route.hits
        try:
            self._serve_route(route, rec, n, head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if route.after_request is not None and not head:
                route.after_request(route, n)

    def _serve_route(self, route: Route, rec: RequestRecord, n: int, head: bool) -> None:
        if route.redirect_to is not None:
            self._simple(rec, 302, b"", Location=route.redirect_to)
            return
        if route.status is not None:
            self._simple(rec, route.status, b"<html>error page</html>")
            return
        if not head and n <= route.fail_first:
            extra = {"Retry_After": route.retry_after} if route.retry_after else {}
            self._simple(rec, route.fail_status, b"<html>try again</html>", **extra)
            return
        data = route.data
        status, start, end = 200, 0, len(data)
        range_header = self.headers.get("Range")
        if route.support_ranges and range_header:
            if_range = self.headers.get("If-Range")
            fresh = if_range is None or if_range in (route.etag, route.last_modified)
            spec = range_header.strip()
            if fresh and spec.startswith("bytes=") and "," not in spec:
                first, _, last = spec[len("bytes=") :].partition("-")
                if first.isdigit():
                    start = int(first)
                    if start >= len(data):
                        self._simple(rec, 416, b"", Content_Range=f"bytes */{len(data)}")
                        return
                    end = min(len(data), int(last) + 1) if last.isdigit() else len(data)
                    status = 206
        body = data[start:end]
        rec.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if route.etag:
            self.send_header("ETag", route.etag)
        if route.last_modified:
            self.send_header("Last-Modified", route.last_modified)
        if route.support_ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        if route.content_length:
            self.send_header("Content-Length", str(len(body) + route.content_length_delta))
        if not route.content_length or route.content_length_delta:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head:
            return
        self._send_body(route, rec, body)

    def _send_body(self, route: Route, rec: RequestRecord, body: bytes) -> None:
        stop = self.server.owner.stop_event
        drop_at: Optional[int] = None
        stall_at: Optional[int] = None
        with route.lock:
            if route.drop_after is not None and route.drops_done < route.drop_count:
                route.drops_done += 1
                drop_at = route.drop_after
            if route.stall_after is not None and route.stalls_done < route.stall_count:
                route.stalls_done += 1
                stall_at = route.stall_after
        piece, delay = route.trickle if route.trickle else (64 * 1024, 0.0)
        pos = 0
        while pos < len(body):
            limit = len(body)
            if drop_at is not None:
                limit = min(limit, drop_at)
            if stall_at is not None:
                limit = min(limit, stall_at)
            if pos >= limit:
                if drop_at is not None and pos >= drop_at:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if stall_at is not None and pos >= stall_at:
                    self.wfile.flush()
                    stop.wait(route.stall_seconds)
                    stall_at = None
                    if stop.is_set():
                        return
                    continue
                break  # pragma: no cover - limits above cover every case
            n = min(piece, limit - pos)
            self.wfile.write(body[pos : pos + n])
            pos += n
            rec.body_bytes = pos
            if delay:
                self.wfile.flush()
                if stop.wait(delay):
                    return


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: FaultyHTTPServer

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up (cancel, stall timeout) are normal here: stay quiet."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class FaultyHTTPServer:
    """The server: ``add`` routes, ``url`` builds URLs, ``log`` records requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[RequestRecord] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def add(self, path: str, data: bytes = b"", **kw: object) -> Route:
        """Serve ``data`` at ``path`` with the behaviour set by the ``Route`` fields in ``kw``."""
        route = Route(data=data, **kw)  # type: ignore[arg-type]
        self.routes[path] = route
        return route

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_for(self, path: str, method: str = "GET") -> list[RequestRecord]:
        """The recorded requests for ``path``."""
        with self.lock:
            return [r for r in self.log if r.path == path and r.method == method]

    def start(self) -> FaultyHTTPServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop_event.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FaultyHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def http_server() -> Iterator[FaultyHTTPServer]:
    """A started ``FaultyHTTPServer``, closed after the test."""
    with FaultyHTTPServer() as server:
        yield server


def closed_port_url(path: str = "/x") -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` deterministic pseudo-random bytes (a stand-in model file)."""
    import random

    return random.Random(seed).randbytes(size)


def sha256_hex(data: bytes) -> str:
    """The sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()
