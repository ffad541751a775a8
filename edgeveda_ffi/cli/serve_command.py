"""``edgeveda serve``: the OpenAI-compatible HTTP server (extra ``[server]``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional
from urllib.parse import urlsplit

from .common import MODEL_ENV, CliError, UsageError, resolve_model
from .engine_commands import _config_kwargs, manager_of

__all__ = ["cmd_serve", "SERVER_EXTRA_HINT", "STREAM_INTERVAL_MS"]

SERVER_EXTRA_HINT = "pip install 'edgeveda-ffi[server]'"

#: ``--stream-interval-ms``'s default: the server's own (ModelHost.stream_interval),
#: written here because the parser must not import the optional server extra
#: (tests/test_server_handoff.py checks that they agree).
STREAM_INTERVAL_MS = 20.0


def _model_id(raw: Optional[str], path: str) -> str:
    """The id clients name: the registry id given (the default model's id
    without --model), else the file's name."""
    if raw is None:
        from .. import DEFAULT_MODEL_ID

        return DEFAULT_MODEL_ID
    if raw and not (os.path.exists(raw) or os.sep in raw or raw.lower().endswith(".gguf")):
        return raw
    return os.path.basename(path)


def _check_origin(origin: str) -> str:
    """A web origin as browsers send it (scheme://host[:port], no path), or "*"."""
    if origin == "*":
        return origin
    parts = urlsplit(origin)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise UsageError(
            f"--cors-origin {origin}: not a web origin (like http://localhost:3000, or *)"
        )
    return origin.rstrip("/")


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ..server import build_host, run_server
    except ImportError as exc:
        raise CliError(
            f"`edgeveda serve` needs the server extra ({exc.name or exc} is missing): "
            f"{SERVER_EXTRA_HINT}"
        ) from None
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a TCP port (0-65535)")
    origins = [_check_origin(o) for o in args.cors_origin]
    interval = args.stream_interval_ms
    if not 0 <= interval <= 1000:  # NaN fails too
        raise UsageError(f"--stream-interval-ms {interval:g}: use 0 to 1000")
    cfg = _config_kwargs(args)
    raw = args.model or os.environ.get(MODEL_ENV) or None
    path = str(resolve_model(manager_of(args), args.model))
    host = build_host(path, _model_id(raw, path), cfg)
    host.stream_interval = interval / 1000
    scope = (
        "local only; --host 0.0.0.0 to expose"
        if args.host in ("127.0.0.1", "localhost", "::1")
        else "reachable from the network"
    )
    auth = "API key required" if args.api_key else "no API key"
    if origins:
        auth += "; browsers may call it from " + (
            "any web page" if "*" in origins else ", ".join(origins)
        )

    def started() -> None:
        print(
            f"edgeveda: serving {host.model_id} on http://{args.host}:{args.port}/v1 "
            f"({scope}; {auth}); the model loads in the background; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )

    level = "info" if getattr(args, "verbose", 0) else "warning"
    return run_server(
        host,
        bind=args.host,
        port=args.port,
        api_key=args.api_key,
        cors_origins=origins,
        log_level=level,
        on_started=started,
    )
