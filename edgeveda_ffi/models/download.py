"""The byte movers of the model manager: an HTTP download and a local copy into ``<file>.tmp``.

Both stream in chunks (memory stays flat), hash sha256 while writing, fsync the
``.tmp`` and return ``(sha256 hex digest, size)``. Verifying and renaming into
place is the manager's job (``model_manager.py``), so every source goes through
the same verify-then-rename path.

HTTP (``HttpDownload``):

* Resume: if ``<file>.tmp`` exists together with its resume state
  ``<file>.tmp.json`` (url, ETag / Last-Modified, expected sha256) for the same
  URL and sha256, the prefix is hashed first, then ``Range: bytes=N-`` is sent
  with ``If-Range`` (the strong ETag, else Last-Modified). 206 with a matching
  ``Content-Range`` → append; 200 → the server ignored the range or the file
  changed → restart from 0; 416 → delete the ``.tmp`` and restart once (unless
  its ``Content-Range: bytes */N`` says N is exactly what the ``.tmp`` holds:
  then the ``.tmp`` is complete and goes to verification). A
  ``.tmp`` with neither a validator nor an expected sha256 is never resumed
  (nothing could tell a changed file). A ``.tmp`` that already has the
  expected size is verified without any request.
* Transient errors (connection reset/refused, timeouts, a stall of
  ``stall_timeout`` seconds without a byte, a body shorter than announced,
  HTTP 5xx, HTTP 429) are retried ``max_retries`` times, waiting
  ``retry_backoff[i]`` seconds, or ``Retry-After`` when the server sends it
  (more than ``max_retry_after`` → give up). Everything else (4xx, too many
  redirects, checksum or size mismatch, disk full, cancel) is raised at once.
* ``Accept-Encoding: identity``: the bytes on the wire are the model's bytes.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, NoReturn, Optional

import requests
import urllib3

from ..errors import DownloadException, ModelValidationException
from .cancel import CancelToken
from .fsutil import (
    atomic_write_json,
    free_bytes,
    hash_file,
    is_private_regular_file,
    mb,
    open_for_write,
    read_json,
    unlink_quiet,
    wrap_os_error,
    write_all,
)
from .sources import source_error
from .spec import DownloadProgress

__all__ = [
    "DownloadConfig",
    "HttpDownload",
    "ProgressReporter",
    "check_free_space",
    "copy_to_tmp",
    "resume_state_path",
]

_log = logging.getLogger("edgeveda_ffi.model_manager")

ProgressCallback = Callable[[DownloadProgress], None]

_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    socket.timeout,
)


@dataclass(frozen=True)
class DownloadConfig:
    """Knobs of a download (all documented on ``ModelManager``)."""

    max_retries: int = 3
    retry_backoff: tuple[float, ...] = (1.0, 2.0, 4.0)
    stall_timeout: float = 30.0
    connect_timeout: float = 15.0
    chunk_size: int = 256 * 1024
    max_retry_after: float = 60.0
    max_redirects: int = 10
    free_space_margin: int = 100 * 1024 * 1024
    user_agent: str = "edgeveda-ffi"


class _Transient(Exception):
    """A failure worth another attempt."""

    def __init__(
        self,
        reason: str,
        retry_after: Optional[float] = None,
        cause: Optional[BaseException] = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.cause = cause


class _Restart416(Exception):
    """The server answered 416 to our Range request."""


class ProgressReporter:
    """Turns byte counts into ``DownloadProgress`` events that never go backwards.

    An event is dropped if its byte count or its percent would be lower than
    the last one sent (after a restart the bar waits until the new attempt has
    passed the old mark). No event reaches 100 % before ``complete()``, which
    the manager calls only after the file is in place. Exceptions raised by the
    callback propagate and abort the operation.
    """

    def __init__(self, callback: Optional[ProgressCallback]) -> None:
        self._callback = callback
        self._last: Optional[DownloadProgress] = None
        self._t0 = time.monotonic()
        self._base = 0

    @property
    def last(self) -> Optional[DownloadProgress]:
        """The last event sent, if any."""
        return self._last

    def begin(self, offset: int, total: Optional[int]) -> None:
        """A new attempt starts at ``offset`` bytes: send the first event (speed 0)."""
        self._t0 = time.monotonic()
        self._base = offset
        self._emit(DownloadProgress(offset, total, 0.0, None))

    def update(self, downloaded: int, total: Optional[int]) -> None:
        """Bytes arrived: send an event with the speed of this attempt and the ETA."""
        elapsed = time.monotonic() - self._t0
        speed = (downloaded - self._base) / elapsed if elapsed > 0 else 0.0
        eta: Optional[float] = None
        if total is not None and speed > 0:
            eta = max(0.0, (total - downloaded) / speed)
        self._emit(DownloadProgress(downloaded, total, speed, eta))

    def complete(self, size: int) -> None:
        """The file is in place: send the 100 % event."""
        speed = self._last.speed_bytes_per_second if self._last else 0.0
        ev = DownloadProgress(size, size, speed, 0.0)
        self._last = ev
        if self._callback is not None:
            self._callback(ev)

    def _emit(self, ev: DownloadProgress) -> None:
        if self._callback is None:
            self._last = ev
            return
        if ev.total_bytes is not None and ev.downloaded_bytes >= ev.total_bytes:
            return  # 100 % only after the rename
        last = self._last
        if last is not None:
            if ev.downloaded_bytes < last.downloaded_bytes:
                return
            lp, p = last.percent, ev.percent
            if lp is not None and (p is None or p < lp):
                return
        self._last = ev
        self._callback(ev)


def check_free_space(directory: Path, needed: int, margin: int, name: str) -> None:
    """Raise ``DownloadException`` (with MB figures) unless ``needed + margin`` bytes are free."""
    free = free_bytes(directory)
    if free is None or needed <= 0:
        return
    required = needed + margin
    if free < required:
        raise DownloadException(
            "Insufficient disk space",
            f"{mb(free)} free, {mb(required)} required for {name} "
            f"({mb(needed)} + {mb(margin)} margin) in {directory}",
        )


def resume_state_path(tmp: Path) -> Path:
    """Where the resume state of ``tmp`` lives: ``<file>.tmp.json``."""
    return tmp.with_name(tmp.name + ".json")


def _parse_retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


def _parse_content_range(value: Optional[str]) -> Optional[tuple[int, int, Optional[int]]]:
    if not value:
        return None
    m = _CONTENT_RANGE.match(value)
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def _content_length(resp: requests.Response) -> Optional[int]:
    value = resp.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class HttpDownload:
    """One model file fetched over http(s) into ``tmp`` (see the module doc).

    Args:
        url: the source.
        tmp: the ``.tmp`` path next to the final file.
        name: the model's name, for messages.
        expected_size: the spec's size, or ``None``.
        expected_sha256: the spec's digest, or ``None`` (used to decide
            whether a ``.tmp`` may be resumed; the check itself is the manager's).
        config: retries, timeouts, chunk size.
        reporter: progress events.
        token: cancellation.
    """

    def __init__(
        self,
        url: str,
        tmp: Path,
        name: str,
        expected_size: Optional[int],
        expected_sha256: Optional[str],
        config: DownloadConfig,
        reporter: ProgressReporter,
        token: CancelToken,
    ) -> None:
        self.url = url
        self.tmp = tmp
        self.state_path = resume_state_path(tmp)
        self.name = name
        self.expected_size = expected_size
        self.expected_sha256 = expected_sha256
        self.config = config
        self.reporter = reporter
        self.token = token
        #: number of HTTP requests made (for logs and tests)
        self.requests_made = 0

    # -- the retry loop ---------------------------------------------------
    def run(self) -> tuple[str, int]:
        """Download into ``tmp``; return ``(sha256 hex, size)`` of the fsync'd ``.tmp``."""
        cfg = self.config
        session = requests.Session()
        session.max_redirects = cfg.max_redirects
        retries = 0
        restarted = False
        try:
            while True:
                self.token.raise_if_cancelled()
                try:
                    return self._attempt(session)
                except _Restart416:
                    if restarted:
                        raise source_error(
                            "Download failed: HTTP 416 after restarting", self.url
                        ) from None
                    restarted = True
                    _log.info("HTTP 416 on resume of %s: restarting", self.name)
                    self.discard()
                except _Transient as t:
                    if retries >= cfg.max_retries:
                        raise source_error(
                            f"Download failed after {retries} retries",
                            f"{self.url}: {t.reason}",
                            t.cause,
                        ) from None
                    backoff = cfg.retry_backoff
                    delay = backoff[min(retries, len(backoff) - 1)] if backoff else 0.0
                    if t.retry_after is not None:
                        if t.retry_after > cfg.max_retry_after:
                            raise source_error(
                                "Server asks to retry later than max_retry_after",
                                f"{self.url}: {t.reason}, Retry-After {t.retry_after:.0f} s "
                                f"> {cfg.max_retry_after:.0f} s",
                            ) from None
                        delay = t.retry_after
                    retries += 1
                    _log.warning(
                        "download of %s: %s; retry %d/%d in %.1f s",
                        self.name,
                        t.reason,
                        retries,
                        cfg.max_retries,
                        delay,
                    )
                    if self.token.wait(delay):
                        self.token.raise_if_cancelled()
        finally:
            session.close()

    # -- resume state -------------------------------------------------------
    def discard(self) -> None:
        """Remove the ``.tmp`` and its resume state."""
        unlink_quiet(self.tmp)
        unlink_quiet(self.state_path)

    def _prepare_resume(self) -> tuple[int, hashlib._Hash, dict[str, Any]]:
        hasher = hashlib.sha256()
        if not is_private_regular_file(self.tmp):
            self.discard()  # absent, or a planted symlink/hard link: remove the link only
            return 0, hasher, {}
        state = read_json(self.state_path) or {}
        validator = state.get("etag") or state.get("last_modified")
        size = os.lstat(self.tmp).st_size
        usable = (
            state.get("url") == self.url
            and state.get("expected_sha256") == self.expected_sha256
            and bool(validator or self.expected_sha256)
            and size > 0
            and (self.expected_size is None or size <= self.expected_size)
        )
        if not usable:
            self.discard()
            return 0, hasher, {}
        hash_file(self.tmp, hasher, check=self.token.raise_if_cancelled)
        return size, hasher, state

    def _save_state(self, resp: requests.Response) -> None:
        etag = resp.headers.get("ETag")
        if etag and etag.startswith("W/"):
            etag = None  # If-Range needs a strong validator
        state = {
            "url": self.url,
            "etag": etag,
            "last_modified": resp.headers.get("Last-Modified"),
            "expected_sha256": self.expected_sha256,
            "total": _content_length(resp),
        }
        try:
            atomic_write_json(self.state_path, state)
        except OSError as e:
            raise wrap_os_error(e, "writing the resume state", self.state_path) from e

    # -- one attempt --------------------------------------------------------
    def _attempt(self, session: requests.Session) -> tuple[str, int]:
        offset, hasher, state = self._prepare_resume()
        if offset and offset == self.expected_size:
            digest = hasher.hexdigest()
            if self.expected_sha256 is None or digest == self.expected_sha256:
                return digest, offset  # complete from an earlier run: no request
            self.discard()
            offset, hasher, state = 0, hashlib.sha256(), {}
        headers = {"Accept-Encoding": "identity", "User-Agent": self.config.user_agent}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            validator = state.get("etag") or state.get("last_modified")
            if validator:
                headers["If-Range"] = str(validator)
        self.token.raise_if_cancelled()
        self.requests_made += 1
        try:
            resp = session.get(
                self.url,
                headers=headers,
                stream=True,
                timeout=(self.config.connect_timeout, self.config.stall_timeout),
            )
        except requests.exceptions.TooManyRedirects as e:
            raise source_error("Too many redirects", f"{self.url}: {e}", e) from None
        except (
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
        ) as e:
            raise source_error("Invalid download URL", f"{self.url}: {e}", e) from None
        except _NETWORK_ERRORS as e:
            self.token.raise_if_cancelled()
            raise _Transient(f"request failed: {e}", cause=e) from None

        def stop_reading() -> None:
            shutdown = getattr(resp.raw, "shutdown", None)
            try:
                if shutdown is not None:
                    shutdown()
                else:  # pragma: no cover - urllib3 < 2.3
                    resp.close()
            except (OSError, ValueError, RuntimeError) as e:
                _log.debug("could not interrupt the response: %s", e)

        self.token.add_listener(stop_reading)
        try:
            return self._read_body(resp, offset, hasher)
        finally:
            self.token.remove_listener(stop_reading)
            resp.close()

    def _read_body(
        self, resp: requests.Response, offset: int, hasher: hashlib._Hash
    ) -> tuple[str, int]:
        status = resp.status_code
        if status == 429 or 500 <= status <= 599:
            raise _Transient(
                f"HTTP {status}",
                retry_after=_parse_retry_after(resp.headers.get("Retry-After")),
            )
        if status == 416:
            m = _UNSATISFIED_RANGE.match(resp.headers.get("Content-Range") or "")
            if offset and m and int(m.group(1)) == offset:
                # the server says the file has exactly the bytes we hold: complete
                # (checked by the manager like any other download)
                return hasher.hexdigest(), offset
            if offset:
                raise _Restart416()
            raise source_error("Download failed: HTTP 416", self.url)
        if status not in (200, 206):
            raise source_error(f"Download failed: HTTP {status}", f"{self.url} ({resp.reason})")
        length = _content_length(resp)
        total: Optional[int]
        if status == 206:
            cr = _parse_content_range(resp.headers.get("Content-Range"))
            if not offset or cr is None or cr[0] != offset:
                self.discard()
                raise _Transient(
                    "unusable partial response "
                    f"(Content-Range {resp.headers.get('Content-Range')!r})"
                )
            append = True
            if cr[2] is not None:
                total = cr[2]
            elif length is not None:
                total = offset + length
            else:
                total = self.expected_size
        else:
            if offset:
                _log.info("server sent the whole file of %s: restarting from 0", self.name)
                offset, hasher = 0, hashlib.sha256()
            append = False
            total = length if length is not None else self.expected_size
        if self.expected_size is not None and total is not None and total != self.expected_size:
            self.discard()
            raise ModelValidationException(
                "Size mismatch",
                f"{self.url} announces {total} bytes, {self.name} has {self.expected_size}",
            )
        if total is not None:
            check_free_space(
                self.tmp.parent,
                total - offset,
                self.config.free_space_margin,
                self.name,
            )
        if not append:
            unlink_quiet(self.tmp)
            self._save_state(resp)
        try:
            fd = open_for_write(self.tmp, append)
        except OSError as e:
            raise wrap_os_error(e, "creating the download file", self.tmp) from e
        downloaded = offset
        read = getattr(resp.raw, "read1", None) or resp.raw.read
        chunk_size = self.config.chunk_size
        try:
            self.reporter.begin(offset, total)
            while True:
                try:
                    chunk = read(chunk_size, decode_content=False)
                except Exception as e:
                    self.token.raise_if_cancelled()
                    if isinstance(e, _NETWORK_ERRORS):
                        raise _Transient(
                            f"connection lost after {downloaded} bytes: {e}", cause=e
                        ) from None
                    raise
                self.token.raise_if_cancelled()
                if not chunk:
                    break
                if total is not None and downloaded + len(chunk) > total:
                    os.close(fd)
                    fd = -1
                    self.discard()
                    raise ModelValidationException(
                        "Server sent more bytes than announced",
                        f"{self.url}: more than {total} bytes",
                    )
                self._write(fd, chunk)
                hasher.update(chunk)
                downloaded += len(chunk)
                self.reporter.update(downloaded, total)
            if total is not None and downloaded < total:
                raise _Transient(f"connection closed after {downloaded} of {total} bytes")
            try:
                os.fsync(fd)
            except OSError as e:
                self._fail_write(fd, e)
        finally:
            if fd >= 0:
                os.close(fd)
        return hasher.hexdigest(), downloaded

    def _write(self, fd: int, chunk: bytes) -> None:
        try:
            write_all(fd, chunk)
        except OSError as e:
            self._fail_write(fd, e)

    def _fail_write(self, fd: int, err: OSError) -> NoReturn:
        """A write failed (disk full, ...): drop the ``.tmp`` and raise, never retried."""
        self.discard()
        raise wrap_os_error(err, f"writing {self.name}", self.tmp) from err


def copy_to_tmp(
    src: Path,
    tmp: Path,
    name: str,
    expected_size: Optional[int],
    config: DownloadConfig,
    reporter: ProgressReporter,
    token: CancelToken,
) -> tuple[str, int]:
    """Copy a local file into ``tmp`` while hashing it; return ``(sha256 hex, size)``.

    A wrong size is caught before a byte is written
    (``ModelValidationException``). Copies are not resumed: on any failure,
    cancellation included, the ``.tmp`` is removed.
    """
    try:
        size = os.stat(src).st_size
    except OSError as e:
        raise ModelValidationException("Source file not found", f"{src}: {e}", e) from None
    if expected_size is not None and size != expected_size:
        raise ModelValidationException(
            "Size mismatch", f"{src} has {size} bytes, {name} has {expected_size}"
        )
    check_free_space(tmp.parent, size, config.free_space_margin, name)
    try:
        fin = open(src, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise ModelValidationException("Cannot read source file", f"{src}: {e}", e) from None
    with fin:
        return _copy_stream(fin, src, tmp, name, size, config, reporter, token)


def _copy_stream(
    fin: BinaryIO,
    src: Path,
    tmp: Path,
    name: str,
    size: int,
    config: DownloadConfig,
    reporter: ProgressReporter,
    token: CancelToken,
) -> tuple[str, int]:
    hasher = hashlib.sha256()
    try:
        fd = open_for_write(tmp, append=False)
    except OSError as e:
        raise wrap_os_error(e, "creating the copy", tmp) from e
    copied = 0
    try:
        reporter.begin(0, size)
        while True:
            token.raise_if_cancelled("Import")
            try:
                chunk = fin.read(config.chunk_size * 4)
            except OSError as e:
                raise source_error("Cannot read source file", f"{src}: {e}", e) from None
            if not chunk:
                break
            try:
                write_all(fd, chunk)
            except OSError as e:
                raise wrap_os_error(e, f"copying {name}", tmp) from e
            hasher.update(chunk)
            copied += len(chunk)
            reporter.update(copied, size)
        try:
            os.fsync(fd)
        except OSError as e:
            raise wrap_os_error(e, f"copying {name}", tmp) from e
    except BaseException:
        os.close(fd)
        unlink_quiet(tmp)
        raise
    os.close(fd)
    return hasher.hexdigest(), copied
