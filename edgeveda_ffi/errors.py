"""Typed errors: the exception hierarchy, ``NativeErrorCode`` and ``check()``.

Every ``ev_error_t`` the C core can return maps to exactly one exception class
(the mapping is Edge Veda's, see ``NativeErrorCode.to_exception``). Where a
Python builtin fits, an exception also inherits it (as PyNaCl does), so plain
``except ValueError`` / ``except MemoryError`` / ``except OSError`` work:

=========================  ===========================
exception                  also a
=========================  ===========================
ConfigurationException     ValueError
MemoryException            MemoryError
DownloadException          ConnectionError (an OSError)
ChecksumException          ModelValidationException
ModelValidationException   ValueError
DownloadCancelledException (a DownloadException)
=========================  ===========================
"""

from __future__ import annotations

import enum
import warnings
from typing import Any, Optional, Union

__all__ = [
    "EdgeVedaException",
    "InitializationException",
    "ModelLoadException",
    "GenerationException",
    "DownloadException",
    "FailureReason",
    "DownloadCancelledException",
    "ChecksumException",
    "ModelValidationException",
    "MemoryException",
    "ConfigurationException",
    "CONTEXT_LENGTH_EXCEEDED",
    "EngineClosedException",
    "EdgeVedaGenericException",
    "NativeErrorCode",
    "check",
]


class EdgeVedaException(Exception):
    """Base class of every error raised by edgeveda-ffi.

    Args:
        message: what went wrong, in one line.
        details: extra context (for native errors: ``ev_get_last_error``).
        original_error: the lower-level exception this one wraps, if any.

    ``code`` is the ``NativeErrorCode`` when the error came from the C core.
    """

    code: Optional[NativeErrorCode] = None

    def __init__(
        self,
        message: str,
        details: Optional[str] = None,
        original_error: Optional[BaseException] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.original_error = original_error
        if original_error is not None and self.__cause__ is None:
            self.__cause__ = original_error

    def __str__(self) -> str:
        name = type(self).__name__
        if self.details:
            return f"{name}: {self.message} ({self.details})"
        return f"{name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(message={self.message!r}, details={self.details!r})"

    # Exceptions that also inherit builtins with their own __init__ (OSError)
    # must pickle with our arguments, not the builtin's.
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.details, None))


class InitializationException(EdgeVedaException):
    """The engine could not start: backend, context or a closed/invalid engine."""


class ModelLoadException(EdgeVedaException):
    """The model file could not be loaded (missing, not GGUF, corrupt, truncated)."""


class GenerationException(EdgeVedaException):
    """Inference failed, or a stream ended while more was asked of it."""


class _CancelledException(GenerationException):
    """Deprecated, never raised: a cancelled generation returns its text with
    ``finish_reason == FinishReason.CANCELLED``; a cancelled download raises
    :class:`DownloadCancelledException`."""


class ConfigurationException(EdgeVedaException, ValueError):
    """A parameter or configuration value is invalid (or a feature is not built in).

    ``field`` names the parameter that failed (``"temperature"``,
    ``"stop[1]"``, ``"messages[0].role"``) when it is known; errors the core
    reports (``EV_ERROR_INVALID_PARAM``) carry the core's message in
    ``details`` and ``field`` None.
    """

    def __init__(
        self,
        message: str,
        details: Optional[str] = None,
        original_error: Optional[BaseException] = None,
        *,
        field: Optional[str] = None,
    ) -> None:
        super().__init__(message, details, original_error)
        self.field = field

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_configuration_error, (self.message, self.details, self.field))


#: ``ConfigurationException.message`` of a prompt longer than the context in
#: the OpenAI-shaped API (``field`` is ``"prompt"`` or ``"messages"``);
#: ``edgeveda serve`` answers it with OpenAI's code ``context_length_exceeded``.
CONTEXT_LENGTH_EXCEEDED = "Context length exceeded"


class MemoryException(EdgeVedaException, MemoryError):
    """Out of memory, or the configured memory limit cannot hold the model."""


class FailureReason(str, enum.Enum):
    """Why a model download, import or check failed: ``DownloadException.reason``
    and ``ModelValidationException.reason``.

    A ``str`` enum, so ``exc.reason == "http_status"`` works as well as
    ``exc.reason is FailureReason.HTTP_STATUS``. Reasons blamed on the source
    (the manager then tries the spec's next source) are ``HTTP_STATUS``,
    ``CONNECTION``, ``STALLED``, ``RETRY_LATER``, ``TOO_MANY_REDIRECTS``,
    ``INVALID_URL`` and ``SOURCE_MISSING``; the others are local and stop at once.
    """

    HTTP_STATUS = "http_status"  #: the server answered an error status (``status``)
    CONNECTION = "connection"  #: refused, reset, timed out, or the body ended short
    STALLED = "stalled"  #: no byte for ``stall_timeout`` seconds
    RETRY_LATER = "retry_later"  #: ``Retry-After`` longer than ``max_retry_after``
    TOO_MANY_REDIRECTS = "too_many_redirects"
    INVALID_URL = "invalid_url"
    SOURCE_MISSING = "source_missing"  #: a local or package source file is not there
    DISK_SPACE = "disk_space"  #: not enough free space before starting
    DISK_FULL = "disk_full"  #: a write failed with ENOSPC, EFBIG or EDQUOT
    NOT_WRITABLE = "not_writable"  #: the models folder is read-only or not ours
    FILESYSTEM = "filesystem"  #: another file-system error
    LOCK_TIMEOUT = "lock_timeout"  #: another process held the model's lock too long
    CANCELLED = "cancelled"  #: a ``CancelToken`` was cancelled
    SIZE_MISMATCH = "size_mismatch"  #: the file (or the announced size) has the wrong size
    CHECKSUM_MISMATCH = "checksum_mismatch"  #: the sha256 differs
    NOT_DOWNLOADED = "not_downloaded"  #: the model file is not in the models folder


class DownloadException(EdgeVedaException, ConnectionError):
    """A model download failed (network, HTTP status, disk, lock).

    It is a ``ConnectionError`` (and so an ``OSError``) because almost every
    cause is I/O; ``except OSError`` catches it next to the builtin errors.

    Attributes (keyword-only arguments, all optional):
        reason: a ``FailureReason`` (``None`` when not classified).
        url: the source that failed, if any.
        status: the HTTP status of the last response, or ``None``.
        path: the local file involved (disk full, lock, read-only folder).
    """

    def __init__(
        self,
        message: str,
        details: Optional[str] = None,
        original_error: Optional[BaseException] = None,
        *,
        reason: Optional[FailureReason] = None,
        url: Optional[str] = None,
        status: Optional[int] = None,
        path: Optional[str] = None,
    ) -> None:
        EdgeVedaException.__init__(self, message, details, original_error)
        # OSError.__init__ would set .args differently; keep ours.
        self.args = (message,)
        self.reason = reason
        self.url = url
        self.status = status
        self.path = path

    def __str__(self) -> str:
        return EdgeVedaException.__str__(self)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        state = {"reason": self.reason, "url": self.url, "status": self.status, "path": self.path}
        return (type(self), (self.message, self.details, None), state)


class DownloadCancelledException(DownloadException):
    """A download was cancelled through a ``CancelToken``; the ``.tmp`` is kept for resume.

    ``reason`` is ``FailureReason.CANCELLED``.
    """

    def __init__(
        self,
        message: str,
        details: Optional[str] = None,
        original_error: Optional[BaseException] = None,
        *,
        reason: Optional[FailureReason] = FailureReason.CANCELLED,
        url: Optional[str] = None,
        status: Optional[int] = None,
        path: Optional[str] = None,
    ) -> None:
        super().__init__(
            message, details, original_error, reason=reason, url=url, status=status, path=path
        )


class ModelValidationException(EdgeVedaException, ValueError):
    """A model file failed validation: checksum mismatch, wrong size, corrupted file.

    Attributes (keyword-only arguments, all optional):
        reason: a ``FailureReason`` (``SIZE_MISMATCH``, ``CHECKSUM_MISMATCH``,
            ``NOT_DOWNLOADED``, ``SOURCE_MISSING``) or ``None``.
        field: the ``ModelSpec`` field that failed (``"size_bytes"``, ``"sha256"``).
        expected: the value the spec (or sidecar) expects.
        actual: the value found.
        path: the file that was checked.
        model_id: the model's id.
    """

    def __init__(
        self,
        message: str,
        details: Optional[str] = None,
        original_error: Optional[BaseException] = None,
        *,
        reason: Optional[FailureReason] = None,
        field: Optional[str] = None,
        expected: Union[str, int, None] = None,
        actual: Union[str, int, None] = None,
        path: Optional[str] = None,
        model_id: Optional[str] = None,
    ) -> None:
        super().__init__(message, details, original_error)
        self.reason = reason
        self.field = field
        self.expected = expected
        self.actual = actual
        self.path = path
        self.model_id = model_id

    def __reduce__(self):  # type: ignore[no-untyped-def]
        names = ("reason", "field", "expected", "actual", "path", "model_id")
        state = {name: getattr(self, name) for name in names}
        return (type(self), (self.message, self.details, None), state)


class ChecksumException(ModelValidationException):
    """A sha256 digest did not match.

    ``expected`` and ``actual`` are the two hex digests, ``field`` is
    ``"sha256"``, ``reason`` is ``FailureReason.CHECKSUM_MISMATCH``.
    """

    def __init__(
        self,
        message: str,
        details: Optional[str] = None,
        original_error: Optional[BaseException] = None,
        *,
        reason: Optional[FailureReason] = FailureReason.CHECKSUM_MISMATCH,
        field: Optional[str] = "sha256",
        expected: Union[str, int, None] = None,
        actual: Union[str, int, None] = None,
        path: Optional[str] = None,
        model_id: Optional[str] = None,
    ) -> None:
        super().__init__(
            message,
            details,
            original_error,
            reason=reason,
            field=field,
            expected=expected,
            actual=actual,
            path=path,
            model_id=model_id,
        )


class EngineClosedException(InitializationException):
    """A method was called on an engine after ``close()``.

    It is an ``InitializationException`` because the native core reports the
    same situation as ``EV_ERROR_CONTEXT_INVALID``.
    """


class EdgeVedaGenericException(EdgeVedaException):
    """An error the core reported as ``EV_ERROR_UNKNOWN`` (or a code we do not know)."""


def _configuration_error(
    message: str, details: Optional[str], field: Optional[str]
) -> ConfigurationException:
    return ConfigurationException(message, details, field=field)


def __getattr__(name: str) -> Any:
    if name == "CancelledException":
        warnings.warn(
            "CancelledException is deprecated and never raised: a cancelled generation "
            "returns with finish_reason CANCELLED; a cancelled download raises "
            "DownloadCancelledException",
            DeprecationWarning,
            stacklevel=2,
        )
        return _CancelledException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NativeErrorCode(enum.IntEnum):
    """The C core's ``ev_error_t`` values (``native/include/edge_veda.h``)."""

    SUCCESS = 0
    INVALID_PARAM = -1
    OUT_OF_MEMORY = -2
    MODEL_LOAD_FAILED = -3
    BACKEND_INIT_FAILED = -4
    INFERENCE_FAILED = -5
    CONTEXT_INVALID = -6
    STREAM_ENDED = -7
    NOT_IMPLEMENTED = -8
    MEMORY_LIMIT_EXCEEDED = -9
    UNSUPPORTED_BACKEND = -10
    UNKNOWN = -999

    @classmethod
    def from_code(cls, code: int) -> NativeErrorCode:
        """The member for ``code``; any value the enum does not know is ``UNKNOWN``."""
        try:
            return cls(int(code))
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_success(self) -> bool:
        return self is NativeErrorCode.SUCCESS

    @property
    def is_memory_error(self) -> bool:
        """True for ``OUT_OF_MEMORY`` and ``MEMORY_LIMIT_EXCEEDED``."""
        return self in (NativeErrorCode.OUT_OF_MEMORY, NativeErrorCode.MEMORY_LIMIT_EXCEEDED)

    @property
    def exception_class(self) -> Optional[type]:
        """The exception class this code maps to (``None`` for success)."""
        entry = _MAPPING.get(self)
        return entry[0] if entry else None

    def to_exception(self, details: Optional[str] = None) -> Optional[EdgeVedaException]:
        """The exception for this code, carrying ``details``; ``None`` for success."""
        entry = _MAPPING.get(self)
        if entry is None:
            return None
        cls, message = entry
        exc: EdgeVedaException = cls(message, details)
        exc.code = self
        return exc


# Edge Veda's mapping (types.dart `NativeErrorCode.toException`), same messages.
_MAPPING: dict[NativeErrorCode, tuple[type, str]] = {
    NativeErrorCode.INVALID_PARAM: (ConfigurationException, "Invalid parameter"),
    NativeErrorCode.OUT_OF_MEMORY: (MemoryException, "Out of memory"),
    NativeErrorCode.MODEL_LOAD_FAILED: (ModelLoadException, "Failed to load model"),
    NativeErrorCode.BACKEND_INIT_FAILED: (
        InitializationException,
        "Failed to initialize backend",
    ),
    NativeErrorCode.INFERENCE_FAILED: (GenerationException, "Inference failed"),
    NativeErrorCode.CONTEXT_INVALID: (InitializationException, "Invalid context"),
    NativeErrorCode.STREAM_ENDED: (GenerationException, "Stream ended unexpectedly"),
    NativeErrorCode.NOT_IMPLEMENTED: (ConfigurationException, "Feature not implemented"),
    NativeErrorCode.MEMORY_LIMIT_EXCEEDED: (MemoryException, "Memory limit exceeded"),
    NativeErrorCode.UNSUPPORTED_BACKEND: (InitializationException, "Backend not supported"),
    NativeErrorCode.UNKNOWN: (EdgeVedaGenericException, "Unknown error"),
}


def check(code: int, details: Optional[str] = None) -> None:
    """Raise the mapped exception when ``code`` is not ``EV_SUCCESS``.

    The one function every native call site uses. ``details`` should be the
    core's own message (``ev_get_last_error``), so the user sees what failed.
    """
    if code == 0:
        return
    exc = NativeErrorCode.from_code(code).to_exception(details)
    assert exc is not None
    raise exc
