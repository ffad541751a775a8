"""Fetchers: where a model's bytes come from. One per source scheme.

* ``HttpFetcher`` (``https://``, ``http://``): ``requests`` with urllib3's
  ``Retry`` for connect and status retries, and our resume loop for a body
  that breaks off (``http.py``).
* ``FileFetcher`` (``file:///abs/path``) and ``PackageFetcher``
  (``package://<distribution>/<path>``): a local copy (``local.py``).

Every fetcher fills a ``Staging`` (the model's ``.tmp``) and returns
``Fetched``; checking and installing is the store's job, so every source goes
through the same verify-then-rename path. A failure that blames the source
(``SOURCE_FAILURES``) lets the manager try the spec's next source.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, Sequence
from urllib.parse import urlsplit

from ...errors import (
    ConfigurationException,
    DownloadCancelledException,
    DownloadException,
    FailureReason,
)
from ..spec import DownloadConfig
from ..staging import Staging
from ..store import Fetched
from .http import HttpFetcher
from .local import FileFetcher, PackageFetcher

__all__ = [
    "SOURCE_FAILURES",
    "Fetcher",
    "FileFetcher",
    "HttpFetcher",
    "PackageFetcher",
    "describe_source",
    "fetch_first",
    "fetcher_for",
]

_log = logging.getLogger("edgeveda_ffi.model_manager")

#: Reasons that blame the source: the manager moves on to the next one.
SOURCE_FAILURES: frozenset[FailureReason] = frozenset(
    {
        FailureReason.HTTP_STATUS,
        FailureReason.CONNECTION,
        FailureReason.STALLED,
        FailureReason.RETRY_LATER,
        FailureReason.TOO_MANY_REDIRECTS,
        FailureReason.INVALID_URL,
        FailureReason.SOURCE_MISSING,
    }
)


class Fetcher(Protocol):
    """Fills a ``Staging`` from one source."""

    #: the source, as recorded in the sidecar
    source: str

    def fetch(self, staging: Staging) -> Fetched:
        """Write the model into ``staging``'s ``.tmp``; its digest and size."""
        ...

    def reads(self, path: Path) -> bool:
        """True when the source is the file at ``path`` (it cannot be copied onto itself)."""
        ...


def fetcher_for(source: str, config: DownloadConfig) -> Fetcher:
    """The fetcher for ``source`` (a URL whose scheme ``ModelSpec`` accepted)."""
    scheme = source.partition("://")[0].lower()
    if scheme in ("http", "https"):
        return HttpFetcher(source, config)
    if scheme == "file":
        return FileFetcher.from_url(source, config.chunk_size)
    if scheme == "package":
        return PackageFetcher(source, config.chunk_size)
    raise ConfigurationException("Unsupported model source", source)  # ModelSpec checks first


def describe_source(source: str) -> str:
    """A short description of a source for messages (the URL without its query)."""
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def fetch_first(fetchers: Sequence[Fetcher], staging: Staging) -> tuple[str, Fetched]:
    """Fetch into ``staging`` from the first fetcher that works: its source and result.

    A failure that blames the source (``SOURCE_FAILURES``) moves on to the
    next fetcher; anything else (cancel, disk, size mismatch) is raised at
    once. When every source failed: that failure if there was one source, else
    a ``DownloadException`` listing them all (with the last one's attributes).
    """
    failures: list[tuple[str, DownloadException]] = []
    for fetcher in fetchers:
        staging.raise_if_cancelled()
        try:
            return fetcher.source, fetcher.fetch(staging)
        except DownloadCancelledException:
            raise
        except DownloadException as e:
            if e.reason not in SOURCE_FAILURES:
                raise
            where = describe_source(fetcher.source)
            _log.warning("source %s of %s failed: %s", where, staging.model_id, e)
            failures.append((fetcher.source, e))
    if not failures:
        raise ConfigurationException("Model has no sources", staging.model_id)
    if len(failures) == 1:
        raise failures[0][1]
    last = failures[-1][1]
    raise DownloadException(
        "Failed to download model from every source",
        "; ".join(f"{describe_source(s)}: {e}" for s, e in failures),
        last,
        reason=last.reason,
        url=last.url,
        status=last.status,
    )
