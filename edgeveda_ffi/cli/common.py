"""Shared pieces of the ``edgeveda`` command: errors and exit codes, logging,
progress bars, model resolution and Ctrl-C-aware streaming.

Nothing here imports the native extension at module level, so ``edgeveda
models ...`` works (and fails clearly) without a built core.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, TypeVar

from .. import JSON_OBJECT_GBNF
from ..errors import ConfigurationException, EdgeVedaException

if TYPE_CHECKING:
    from .. import CancelToken, DownloadProgress, ModelManager, ModelSpec, VerifyReport

__all__ = [
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "CliError",
    "UsageError",
    "Interrupted",
    "JSON_GBNF",
    "MODEL_ENV",
    "error_line",
    "setup_logging",
    "usage_from_config_error",
    "resolve_model",
    "fetch_model",
    "verify_model",
    "write_stream",
    "human_bytes",
]

EXIT_OK = 0
EXIT_ERROR = 1  # a runtime error: model, download, inference, file system
EXIT_USAGE = 2  # the command line itself is wrong (argparse, flag values)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

#: Environment variable naming the model used when ``--model`` is not given.
MODEL_ENV = "EDGEVEDA_MODEL"

T = TypeVar("T")


class CliError(Exception):
    """A user-facing error: one line on stderr, then ``exit_code``."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, exit_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CliError):
    """A bad command line (exit 2)."""

    exit_code = EXIT_USAGE


class Interrupted(CliError):
    """Ctrl-C ended the command (exit 130)."""

    exit_code = EXIT_INTERRUPTED


# --------------------------------------------------------------------------- errors

_MAX_DETAIL = 400


def _one_line(text: str, limit: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def error_line(exc: BaseException, full: bool = False) -> str:
    """The one line printed for ``exc`` (without the ``edgeveda: error:`` prefix).

    EdgeVeda exceptions read ``ClassName: message (details)``, as their
    ``str()`` does; long native details are shortened unless ``full``.
    """
    limit = 100_000 if full else _MAX_DETAIL
    if isinstance(exc, CliError):
        return _one_line(exc.message, limit)
    if isinstance(exc, EdgeVedaException):
        name = type(exc).__name__
        if exc.details:
            return f"{name}: {_one_line(exc.message, 200)} ({_one_line(exc.details, limit)})"
        return f"{name}: {_one_line(exc.message, limit)}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return _one_line(f"{exc.strerror}{where}", limit)
    text = str(exc) or type(exc).__name__
    return _one_line(f"{type(exc).__name__}: {text}", limit)


# Flag names of the fields that GenerationParams and Config validate.
_FLAGS = {
    "max_tokens": "--max-tokens",
    "temperature": "--temperature",
    "top_p": "--top-p",
    "top_k": "--top-k",
    "repeat_penalty": "--repeat-penalty",
    "seed": "--seed",
    "stop": "--stop",
    "grammar": "--grammar",
    "response_format": "--json-schema",
    "min_p": "--min-p",
    "context_size": "--ctx-size",
    "num_threads": "--threads",
    "batch_size": "--batch-size",
    "backend": "--backend",
    "gpu_layers": "--gpu-layers",
    "cpu_extra_buffers": "--cpu-extra-buffers",
}


def usage_from_config_error(exc: ConfigurationException) -> UsageError:
    """A ConfigurationException raised while validating flags, as a UsageError
    naming the flag of its ``field``
    (``argument --temperature: invalid value: temperature=-1.0: >= 0 (0 = greedy)``)."""
    details = _one_line(exc.details or exc.message, _MAX_DETAIL)
    flag = _FLAGS.get(exc.field or "")
    if flag is None:
        return UsageError(details)
    return UsageError(f"argument {flag}: invalid value: {details}")


# -------------------------------------------------------------------------- logging


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.name == "edgeveda_ffi.llama":
            return f"llama.cpp: {msg}"
        return f"edgeveda: {record.levelname.lower()}: {msg}"


def _not_progress_dots(record: logging.LogRecord) -> bool:
    # llama.cpp prints a load progress bar as lines of "." through its logger.
    return record.name != "edgeveda_ffi.llama" or record.getMessage().strip(". ") != ""


def setup_logging(verbose: int, debug: bool) -> None:
    """Route the package's logs to stderr.

    llama.cpp's logs (the ``edgeveda_ffi.llama`` logger) are silent by
    default, INFO with ``-v`` and DEBUG with ``-vv``; the model manager's
    warnings (a source that failed before the next one is tried, an invalid
    file removed) show with ``-v``.
    """
    pkg = logging.getLogger("edgeveda_ffi")
    for h in list(pkg.handlers):
        if getattr(h, "_edgeveda_cli", False):
            pkg.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    handler.addFilter(_not_progress_dots)
    handler._edgeveda_cli = True  # type: ignore[attr-defined]
    pkg.addHandler(handler)
    pkg.propagate = False
    pkg.setLevel(
        logging.DEBUG if (debug or verbose >= 2) else logging.INFO if verbose else logging.WARNING
    )
    # A failed source is retried from the next one; the final error says it all.
    logging.getLogger("edgeveda_ffi.model_manager").setLevel(
        logging.NOTSET if verbose else logging.ERROR
    )
    llama = logging.getLogger("edgeveda_ffi.llama")
    if verbose <= 0:
        llama.setLevel(logging.CRITICAL + 1)
    else:
        llama.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)


# ------------------------------------------------------------------- progress bars


def human_bytes(n: Optional[float]) -> str:
    """``98362432`` → ``93.8 MiB``."""
    if n is None:
        return "?"
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"  # pragma: no cover


class _Bar:
    """A tqdm bar on stderr fed by ``DownloadProgress`` events or byte counts.

    Hidden when stderr is not a terminal (tqdm's ``disable=None``) unless
    ``EDGEVEDA_PROGRESS=1``; ``EDGEVEDA_PROGRESS=0`` hides it always.
    """

    def __init__(self, desc: str, total: Optional[int]) -> None:
        from tqdm import tqdm

        env = os.environ.get("EDGEVEDA_PROGRESS")
        disable: Optional[bool] = None if env is None else env.strip() in ("0", "", "false", "no")
        self._bar: Any = tqdm(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            disable=disable,
            leave=True,
            dynamic_ncols=True,
        )

    def on_progress(self, ev: DownloadProgress) -> None:
        bar = self._bar
        if ev.total_bytes is not None and bar.total != ev.total_bytes:
            bar.total = ev.total_bytes
            bar.refresh()
        delta = ev.downloaded_bytes - bar.n
        if delta > 0:
            bar.update(delta)

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def _note(text: str) -> None:
    print(f"edgeveda: {text}", file=sys.stderr, flush=True)


def _run_cancellable(fn: Callable[[], T], cancel: Callable[[], None], what: str) -> T:
    """Run ``fn`` in a worker thread so Ctrl-C can ``cancel()`` it cleanly.

    On Ctrl-C the worker is cancelled and joined, then :class:`Interrupted`
    is raised (exit 130).
    """
    result: List[T] = []
    error: List[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(exc)

    worker = threading.Thread(target=run, name=f"edgeveda-{what}", daemon=True)
    worker.start()
    interrupted = False
    while worker.is_alive():
        try:
            worker.join(0.1)
        except KeyboardInterrupt:
            interrupted = True
            cancel()
    if interrupted:
        raise Interrupted(f"{what} interrupted (run the same command again to resume)")
    if error:
        raise error[0]
    return result[0]


# --------------------------------------------------------------- model resolution


def _looks_like_path(raw: str) -> bool:
    return (
        os.sep in raw
        or (os.altsep is not None and os.altsep in raw)
        or raw.startswith((".", "~"))
        or raw.lower().endswith((".gguf", ".bin"))
    )


def _fetch_with_bar(
    manager: ModelManager,
    model_id: str,
    call: Callable[[CancelToken, Callable[[DownloadProgress], None]], Path],
) -> Path:
    """Run ``call(token, on_progress)`` so Ctrl-C cancels it (exit 130).

    The note and the bar appear only once bytes move: a model that is already
    in place sends a single 100 % event and shows nothing.
    """
    from .. import CancelToken

    token = CancelToken()
    bars: List[_Bar] = []

    def on_progress(ev: DownloadProgress) -> None:
        if not bars:
            if ev.is_complete:
                return
            size = f" ({human_bytes(ev.total_bytes)})" if ev.total_bytes is not None else ""
            _note(f"fetching {model_id}{size} into {manager.models_dir}")
            bars.append(_Bar(model_id, ev.total_bytes))
        bars[0].on_progress(ev)

    try:
        return _run_cancellable(lambda: call(token, on_progress), token.cancel, "download")
    finally:
        if bars:
            bars[0].close()


def fetch_model(manager: ModelManager, spec: ModelSpec) -> Path:
    """``manager.ensure(spec)`` with a progress bar; Ctrl-C cancels it (exit 130)."""
    return _fetch_with_bar(
        manager,
        spec.id,
        lambda token, on_progress: manager.ensure(
            spec, cancel_token=token, on_progress=on_progress
        ),
    )


def resolve_model(manager: ModelManager, id_or_path: Optional[str]) -> Path:
    """A model file from ``--model`` (a path or an id), ``$EDGEVEDA_MODEL`` or the default.

    ``ModelManager.resolve(..., verify=False)`` decides: an existing file is
    used as is; a known id is used from the models folder when it is there
    (size checked; ``edgeveda models verify`` checks the sha256), otherwise
    fetched first with a progress bar. This function only words the errors.
    """
    from .. import DEFAULT_MODEL_ID

    raw = id_or_path or os.environ.get(MODEL_ENV) or DEFAULT_MODEL_ID
    path = Path(raw).expanduser()
    if path.is_file():
        return manager.resolve(path)
    if path.is_dir():
        raise CliError(f"model {raw!r} is a directory, not a GGUF file")
    if _looks_like_path(raw):
        raise CliError(f"model file not found: {raw}")
    try:
        spec = manager.get_spec(raw)
    except ConfigurationException:
        raise CliError(f"model not found: {raw!r} is neither a file nor a valid model id") from None
    if spec is None and not manager.is_downloaded(raw):
        known = ", ".join(sorted(s.id for s in manager.known_models()))
        raise CliError(
            f"unknown model {raw!r}: not a file and not a known model id "
            f"(known: {known}; see `edgeveda models list`)"
        )
    return _fetch_with_bar(
        manager,
        raw,
        lambda token, on_progress: manager.resolve(
            raw, verify=False, cancel_token=token, on_progress=on_progress
        ),
    )


def verify_model(manager: ModelManager, model_id: str) -> VerifyReport:
    """``manager.check(model_id)`` (``ModelManager.verify``'s rules) with a progress bar.

    CliError when the model is absent, ChecksumException/ModelValidationException when bad.
    """
    from ..errors import FailureReason, ModelValidationException

    bar = _Bar(f"verify {model_id}", None)
    try:
        return manager.check(model_id, on_progress=bar.on_progress)
    except ModelValidationException as exc:
        if exc.reason is FailureReason.NOT_DOWNLOADED:
            raise CliError(
                f"model {model_id!r} is not downloaded (run `edgeveda models download {model_id}`)"
            ) from None
        raise
    finally:
        bar.close()


# ---------------------------------------------------------------- Ctrl-C streaming


def write_stream(pieces: Iterator[str], write: Callable[[str], None]) -> bool:
    """Write the pieces of a stream as they come; True if Ctrl-C stopped it.

    The engine's streams see Ctrl-C at once, even while the core processes a
    long prompt: each piece runs on the package's worker while the main
    thread waits interruptibly, and KeyboardInterrupt cancels the piece and
    frees the native stream before it is raised (a ``ChatSession`` keeps the
    partial answer). Whatever ends the loop, the stream is closed here.
    """
    try:
        for piece in pieces:
            write(piece)
    except KeyboardInterrupt:
        return True
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    return False


# JSON mode (--json): the public grammar for one JSON object; the old name stays.
JSON_GBNF = JSON_OBJECT_GBNF
