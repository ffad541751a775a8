"""Run the server with uvicorn: load in the background, stop cleanly on SIGTERM.

SIGTERM or SIGINT starts uvicorn's graceful shutdown; the host refuses queued
work and cancels the running generation at once, so open streams end
promptly, then the lifespan closes the engine. SIGTERM exits 0 (uvicorn would
re-raise the signal with its default action after the shutdown otherwise);
SIGINT keeps Python's behaviour (KeyboardInterrupt, exit 130 in the CLI).
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Any, Callable, Dict, Optional, Sequence

import uvicorn

from .app import create_app
from .host import ModelHost

__all__ = ["run_server", "build_host"]

log = logging.getLogger("edgeveda_ffi.server")


class _Server(uvicorn.Server):
    """uvicorn's server, telling the host to stop its work when a signal comes."""

    def __init__(self, config: uvicorn.Config, host: ModelHost) -> None:
        super().__init__(config)
        self._host = host

    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        self._host.begin_shutdown()
        super().handle_exit(sig, frame)


def build_host(model_path: str, model_id: str, config: Dict[str, Any]) -> ModelHost:
    """A ModelHost that loads ``model_path`` with the Config fields ``config``."""
    from .. import EdgeVeda

    def load(progress: Callable[[float], bool]) -> EdgeVeda:
        return EdgeVeda(model_path, on_load_progress=progress, **config)

    return ModelHost(model_id, load)


def run_server(
    host: ModelHost,
    *,
    bind: str = "127.0.0.1",
    port: int = 8080,
    api_key: Optional[str] = None,
    cors_origins: Sequence[str] = (),
    log_level: str = "warning",
    on_started: Optional[Callable[[], None]] = None,
) -> int:
    """Serve until SIGTERM/SIGINT; return the exit code (1 if the model failed to load)."""
    app = create_app(host, api_key=api_key, cors_origins=cors_origins)
    config = uvicorn.Config(
        app,
        host=bind,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = _Server(config, host)

    def load_failed(exc: BaseException) -> None:
        server.should_exit = True

    host.on_load_failed = load_failed
    if on_started is not None:
        on_started()
    # A no-op SIGTERM handler for uvicorn to restore and re-raise into after
    # its graceful shutdown: the process then exits 0 instead of dying by signal.
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda sig, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if host.load_error is not None:
        print(f"edgeveda: error: the model failed to load: {host.load_error}", file=sys.stderr)
        return 1
    if not server.started:
        return 1  # uvicorn could not bind (it logged why)
    return 0
