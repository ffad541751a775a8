"""A minimal static file server on 127.0.0.1 for the download benchmark.

    python -m benchmarks._fileserver DIR      # prints the port, serves until stdin closes

Bodies go out with ``socket.sendfile`` (zero-copy), so the server costs
little CPU and curl and our downloader are limited by themselves, not by it.
GET and HEAD, ``Content-Length``, ``ETag``, ``Last-Modified`` and single
``Range: bytes=N-`` requests; nothing else. Binds to loopback only.
"""

from __future__ import annotations

import email.utils
import http.server
import os
import sys
import threading
from typing import List, Optional, Tuple


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    root = "."

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(head=False)

    def _file(self) -> Optional[str]:
        name = os.path.basename(self.path.split("?", 1)[0])
        path = os.path.join(self.root, name)
        return path if name and os.path.isfile(path) else None

    def _serve(self, head: bool) -> None:
        path = self._file()
        if path is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        st = os.stat(path)
        size = st.st_size
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            try:
                start = int(rng[6:-1])
                status = 206
            except ValueError:
                start = 0
        if start > size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{st.st_ino:x}-{size:x}-{int(st.st_mtime)}"')
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if head:
            return
        with open(path, "rb") as f:
            try:
                self.connection.sendfile(f, start, size - start)
            except (BrokenPipeError, ConnectionResetError):
                pass


def serve(root: str) -> Tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    """Start serving ``root`` on 127.0.0.1 (a free port) in a daemon thread."""
    handler = type("Handler", (_Handler,), {"root": os.path.abspath(root)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="bench-fileserver", daemon=True)
    thread.start()
    return server, thread


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m benchmarks._fileserver DIR", file=sys.stderr)
        return 2
    server, _ = serve(argv[0])
    print(server.server_address[1], flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
