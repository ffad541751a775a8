"""The ``edgeveda`` command.

    edgeveda generate "What is the capital of France?"
    edgeveda chat
    edgeveda models list | download ID | rm ID | path ID | verify ID | import PATH --id ID
    edgeveda info [--model ID_OR_PATH]
    edgeveda bench [--model ID_OR_PATH]
    edgeveda serve [--host 127.0.0.1] [--port 8080] [--model ID_OR_PATH] [--api-key KEY]
                   [--cors-origin ORIGIN ...]

Exit codes: 0 success, 1 a runtime error (model, download, inference, file),
2 a bad command line, 130 Ctrl-C. Errors are one line on stderr;
``--debug`` adds the traceback. llama.cpp's logs are quiet unless ``-v``.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING, Optional, Sequence

from ..errors import EdgeVedaException
from .common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    Interrupted,
    error_line,
    setup_logging,
)

if TYPE_CHECKING:
    pass

from .parser import PROG, build_parser

__all__ = ["main", "build_parser"]


def _prepare_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):  # pragma: no cover - exotic streams
                pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit code (the console script exits with it)."""
    _prepare_stdio()
    raw = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in raw
    parser = build_parser()
    try:
        args = parser.parse_args(raw)
        debug = bool(getattr(args, "debug", False))
        setup_logging(int(getattr(args, "verbose", 0) or 0), debug)
        if args.func is None:
            args._help.print_help(sys.stderr)
            return EXIT_USAGE
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (`edgeveda ... | head`): exit quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - every error becomes one line
        if debug:
            traceback.print_exc()
        code = exc.exit_code if isinstance(exc, CliError) else EXIT_ERROR
        label = "interrupted" if isinstance(exc, Interrupted) else "error"
        expected = isinstance(exc, (CliError, EdgeVedaException, OSError))
        hint = "" if debug or expected else " (run with --debug for the traceback)"
        if isinstance(exc, Interrupted):
            print(f"{PROG}: {error_line(exc)}", file=sys.stderr)
        else:
            print(f"{PROG}: {label}: {error_line(exc, full=debug)}{hint}", file=sys.stderr)
        return code
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass


if __name__ == "__main__":
    raise SystemExit(main())
