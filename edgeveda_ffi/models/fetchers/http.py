"""``HttpFetcher``: one model file over http(s) into the ``.tmp``, resumable.

Two layers of retries share one budget (``max_retries``, waits from
``retry_backoff``):

* Before a body arrives, urllib3's ``Retry`` (mounted on the ``requests``
  session) retries refused/reset connections, timeouts waiting for the
  headers, HTTP 5xx and 429, honouring ``Retry-After``. A ``Retry-After``
  longer than ``max_retry_after`` fails the source at once. ``_Retry`` adds
  our schedule, a wait that a ``CancelToken`` interrupts, and that ceiling.
* Once the body streams, a break (connection lost, a stall of
  ``stall_timeout`` seconds without a byte, a body shorter than announced) is
  ours: the next attempt resumes with ``Range: bytes=N-`` and ``If-Range``
  (the strong ETag, else Last-Modified) from the resume state ``F.tmp.json``
  (url, validators, expected sha256). 206 with a matching ``Content-Range``
  appends; 200 (range ignored or file changed) restarts from 0; 416 deletes
  the ``.tmp`` and restarts once, unless its ``Content-Range: bytes */N`` says
  the ``.tmp`` already holds all N bytes. A ``.tmp`` with neither a validator
  nor an expected sha256 is never resumed (nothing could tell a changed file);
  one that already has the expected size goes to verification without a request.

Everything else (4xx, too many redirects, size mismatch, disk full, cancel) is
raised at once. ``Accept-Encoding: identity``: the bytes on the wire are the
model's bytes.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import math
import re
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Optional, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import InvalidHeader, MaxRetryError, ReadTimeoutError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from ...errors import DownloadException, FailureReason
from ..cancel import CancelToken
from ..fsutil import atomic_write_json, hash_file, is_private_regular_file, read_json, wrap_os_error
from ..spec import DownloadConfig
from ..staging import Staging
from ..store import Fetched

__all__ = ["HttpFetcher"]

_log = logging.getLogger("edgeveda_ffi.model_manager")

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
_RETRY_STATUSES = frozenset([429, *range(500, 600)])
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)

_R = TypeVar("_R", bound="_Retry")


def _backoff(schedule: tuple[float, ...], n: int) -> float:
    """The wait before retry ``n`` (0-based); the schedule's last value repeats."""
    return schedule[min(max(n, 0), len(schedule) - 1)] if schedule else 0.0


class _Retry(Retry):
    """urllib3's ``Retry`` with our backoff schedule (continued from ``offset``
    retries already spent), a wait that ``token`` interrupts, and a ceiling on
    ``Retry-After``: a longer one ends the retries and hands the response back."""

    def __init__(
        self,
        *args: Any,
        schedule: tuple[float, ...] = (),
        offset: int = 0,
        token: Optional[CancelToken] = None,
        max_retry_after: float = math.inf,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.schedule = schedule
        self.offset = offset
        self.token = token
        self.max_retry_after = max_retry_after

    def new(self: _R, **kw: Any) -> _R:
        retry = super().new(**kw)
        retry.schedule, retry.offset = self.schedule, self.offset
        retry.token, retry.max_retry_after = self.token, self.max_retry_after
        return retry

    def get_backoff_time(self) -> float:
        return _backoff(self.schedule, self.offset + len(self.history) - 1)

    def get_retry_after(self, response: BaseHTTPResponse) -> Optional[float]:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:  # unreadable: the backoff applies
            return None

    def increment(
        self: _R,
        method: Optional[str] = None,
        url: Optional[str] = None,
        response: Optional[BaseHTTPResponse] = None,
        error: Optional[Exception] = None,
        _pool: Optional[ConnectionPool] = None,
        _stacktrace: Optional[TracebackType] = None,
    ) -> _R:
        if response is not None:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.max_retry_after:
                reason = ResponseError(f"Retry-After {wait:.0f} s")
                raise MaxRetryError(_pool, url or "", reason)  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: Optional[BaseHTTPResponse] = None) -> None:
        delay = self.get_retry_after(response) if response is not None else None
        if delay is None:
            delay = self.get_backoff_time()
        if self.token is None:
            time.sleep(delay)
        elif self.token.wait(delay):
            self.token.raise_if_cancelled()  # requests wraps it; the fetcher re-raises


class _Transient(Exception):
    """A broken body: worth another attempt that resumes."""

    def __init__(
        self,
        reason: FailureReason,
        detail: str,
        cause: Optional[BaseException] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.cause = cause
        self.status = status


class _Restart416(Exception):
    """The server answered 416 to our Range request."""


def _is_stall(err: BaseException) -> bool:
    """True for a read timeout (no byte for ``stall_timeout``), however wrapped."""
    if isinstance(err, (ReadTimeoutError, socket.timeout, requests.exceptions.ReadTimeout)):
        return True
    inner = err.args[0] if err.args else None
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        return _is_stall(inner.reason)
    return False


def _network_reason(err: BaseException) -> FailureReason:
    return FailureReason.STALLED if _is_stall(err) else FailureReason.CONNECTION


def _content_length(resp: requests.Response) -> Optional[int]:
    value = resp.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class HttpFetcher:
    """Fetches one http(s) URL (see the module doc)."""

    def __init__(self, url: str, config: DownloadConfig) -> None:
        self.source = url
        self.config = config

    def reads(self, path: Path) -> bool:
        return False

    def fetch(self, staging: Staging) -> Fetched:
        return _Download(self.source, self.config, staging).run()


class _Download:
    """One fetch: the attempts, the shared retry budget, the resume state."""

    def __init__(self, url: str, config: DownloadConfig, staging: Staging) -> None:
        self.url = url
        self.config = config
        self.staging = staging
        self.retries = 0  # spent so far, by urllib3 and by us

    def _fail(
        self, message: str, details: str, reason: FailureReason, **kw: Any
    ) -> DownloadException:
        return DownloadException(message, details, reason=reason, url=self.url, **kw)

    def _exhausted(self, t: _Transient) -> DownloadException:
        return DownloadException(
            f"Download failed after {self.retries} retries",
            f"{self.url}: {t.detail}",
            t.cause,
            reason=t.reason,
            url=self.url,
            status=t.status,
        )

    # -- the attempts ---------------------------------------------------------
    def run(self) -> Fetched:
        cfg, st = self.config, self.staging
        session = requests.Session()
        session.max_redirects = cfg.max_redirects
        adapter = HTTPAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        restarted = False
        try:
            while True:
                st.raise_if_cancelled()
                adapter.max_retries = _Retry(
                    total=cfg.max_retries - self.retries,
                    status_forcelist=_RETRY_STATUSES,
                    raise_on_status=False,
                    schedule=cfg.retry_backoff,
                    offset=self.retries,
                    token=st.token,
                    max_retry_after=cfg.max_retry_after,
                )
                try:
                    return self._attempt(session)
                except _Restart416:
                    if restarted:
                        msg = "Download failed: HTTP 416 after restarting"
                        raise self._fail(
                            msg, self.url, FailureReason.HTTP_STATUS, status=416
                        ) from None
                    restarted = True
                    _log.info("HTTP 416 on resume of %s: restarting", st.name)
                    st.discard()
                except _Transient as t:
                    if self.retries >= cfg.max_retries:
                        raise self._exhausted(t) from None
                    delay = _backoff(cfg.retry_backoff, self.retries)
                    self.retries += 1
                    _log.warning(
                        "download of %s: %s; retry %d/%d in %.1f s",
                        st.name,
                        t.detail,
                        self.retries,
                        cfg.max_retries,
                        delay,
                    )
                    if st.token.wait(delay):
                        st.raise_if_cancelled()
        finally:
            session.close()

    def _attempt(self, session: requests.Session) -> Fetched:
        st = self.staging
        offset, hasher, state = self._prepare_resume()
        if offset and offset == st.expected_size:
            digest = hasher.hexdigest()
            if st.expected_sha256 is None or digest == st.expected_sha256:
                return Fetched(digest, offset)  # complete from an earlier run: no request
            st.discard()
            offset, hasher, state = 0, hashlib.sha256(), {}
        headers = {"Accept-Encoding": "identity", "User-Agent": self.config.user_agent}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            validator = state.get("etag") or state.get("last_modified")
            if validator:
                headers["If-Range"] = str(validator)
        st.raise_if_cancelled()
        try:
            resp = session.get(
                self.url,
                headers=headers,
                stream=True,
                timeout=(self.config.connect_timeout, self.config.stall_timeout),
            )
        except requests.exceptions.TooManyRedirects as e:
            raise self._fail(
                "Too many redirects", f"{self.url}: {e}", FailureReason.TOO_MANY_REDIRECTS
            ) from e
        except (
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
        ) as e:
            raise self._fail(
                "Invalid download URL", f"{self.url}: {e}", FailureReason.INVALID_URL
            ) from e
        except _NETWORK_ERRORS as e:
            st.raise_if_cancelled()
            self.retries = self.config.max_retries  # urllib3 spent what was left
            t = _Transient(_network_reason(e), f"request failed: {e}", e)
            raise self._exhausted(t) from None
        retried = getattr(resp.raw, "retries", None)
        self.retries += len(retried.history) if retried is not None else 0

        def stop_reading() -> None:
            try:
                resp.raw.shutdown()  # interrupts a read blocked on a silent server
            except (OSError, ValueError, RuntimeError, AttributeError) as e:
                _log.debug("could not interrupt the response: %s", e)

        st.token.add_listener(stop_reading)
        try:
            return self._read_body(resp, offset, hasher)
        finally:
            st.token.remove_listener(stop_reading)
            resp.close()

    def _check_status(self, resp: requests.Response, offset: int) -> bool:
        """Raise for a status we cannot use; True for 206 (append), False for 200."""
        status = resp.status_code
        if status in _RETRY_STATUSES:  # urllib3 retried it as often as allowed
            retry = _Retry(max_retry_after=self.config.max_retry_after)
            wait = retry.get_retry_after(resp.raw)
            if wait is not None and wait > self.config.max_retry_after:
                raise self._fail(
                    "Server asks to retry later than max_retry_after",
                    f"{self.url}: HTTP {status}, Retry-After {wait:.0f} s "
                    f"> {self.config.max_retry_after:.0f} s",
                    FailureReason.RETRY_LATER,
                    status=status,
                )
            self.retries = self.config.max_retries
            raise self._exhausted(
                _Transient(FailureReason.HTTP_STATUS, f"HTTP {status}", None, status)
            )
        if status == 416:
            if offset:
                raise _Restart416()
            raise self._fail(
                "Download failed: HTTP 416", self.url, FailureReason.HTTP_STATUS, status=416
            )
        if status not in (200, 206):
            raise self._fail(
                f"Download failed: HTTP {status}",
                f"{self.url} ({resp.reason})",
                FailureReason.HTTP_STATUS,
                status=status,
            )
        return status == 206

    def _read_body(self, resp: requests.Response, offset: int, hasher: hashlib._Hash) -> Fetched:
        st = self.staging
        if resp.status_code == 416 and offset:
            m = _UNSATISFIED_RANGE.match(resp.headers.get("Content-Range") or "")
            if m and int(m.group(1)) == offset:
                # the server says the file has exactly the bytes we hold: complete
                # (checked by the store like any other download)
                return Fetched(hasher.hexdigest(), offset)
        append = self._check_status(resp, offset)
        length = _content_length(resp)
        total: Optional[int]
        if append:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
            if not offset or m is None or int(m.group(1)) != offset:
                st.discard()
                got = resp.headers.get("Content-Range")
                detail = f"unusable partial response (Content-Range {got!r})"
                raise _Transient(FailureReason.HTTP_STATUS, detail, status=206)
            if m.group(3) != "*":
                total = int(m.group(3))
            else:
                total = offset + length if length is not None else st.expected_size
        else:
            if offset:
                _log.info("server sent the whole file of %s: restarting from 0", st.name)
                offset, hasher = 0, hashlib.sha256()
            total = length if length is not None else st.expected_size
        st.announce(total, offset, f"the response from {self.url}")
        if not append:
            st.discard()
            self._save_state(resp)
        with st.open(append=append, total=total, offset=offset, hasher=hasher) as out:
            read = getattr(resp.raw, "read1", None) or resp.raw.read
            while True:
                try:
                    chunk = read(self.config.chunk_size, decode_content=False)
                except Exception as e:
                    st.raise_if_cancelled()
                    if isinstance(e, _NETWORK_ERRORS):
                        detail = f"connection lost after {out.size} bytes: {e}"
                        raise _Transient(_network_reason(e), detail, e) from None
                    raise
                if not chunk:
                    break
                out.write(chunk)
            st.raise_if_cancelled()
            if total is not None and out.size < total:
                detail = f"connection closed after {out.size} of {total} bytes"
                raise _Transient(FailureReason.CONNECTION, detail)
            return out.finish()

    # -- resume state -----------------------------------------------------------
    def _prepare_resume(self) -> tuple[int, hashlib._Hash, dict[str, Any]]:
        st = self.staging
        hasher = hashlib.sha256()
        if not is_private_regular_file(st.tmp):
            st.discard()  # absent, or a planted symlink/hard link: remove the link only
            return 0, hasher, {}
        state = read_json(st.resume_state) or {}
        validator = state.get("etag") or state.get("last_modified")
        size = st.existing_size()
        usable = (
            state.get("url") == self.url
            and state.get("expected_sha256") == st.expected_sha256
            and bool(validator or st.expected_sha256)
            and size > 0
            and (st.expected_size is None or size <= st.expected_size)
        )
        if not usable:
            st.discard()
            return 0, hasher, {}
        hash_file(st.tmp, hasher, check=st.raise_if_cancelled)
        return size, hasher, state

    def _save_state(self, resp: requests.Response) -> None:
        etag = resp.headers.get("ETag")
        if etag and etag.startswith("W/"):
            etag = None  # If-Range needs a strong validator
        state = {
            "url": self.url,
            "etag": etag,
            "last_modified": resp.headers.get("Last-Modified"),
            "expected_sha256": self.staging.expected_sha256,
            "total": _content_length(resp),
        }
        path = self.staging.resume_state
        try:
            atomic_write_json(path, state)
        except OSError as e:
            raise wrap_os_error(e, "writing the resume state", path) from e
