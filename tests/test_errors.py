"""The error table of issue 4: every ``NativeErrorCode`` → its exception class and message.

Pure Python except for the check against the compiled header (the enum values
must be the ones ``edge_veda.h`` declares), which skips when the extension is
not built.
"""

from __future__ import annotations

import pickle

import pytest

from edgeveda_ffi import MemoryPressureEvent, MemoryStats, errors
from edgeveda_ffi.engine.results import PRESSURE_CRITICAL_RATIO, PRESSURE_WARNING_RATIO
from edgeveda_ffi.errors import (
    ChecksumException,
    ConfigurationException,
    DownloadCancelledException,
    DownloadException,
    EdgeVedaException,
    EdgeVedaGenericException,
    EngineClosedException,
    GenerationException,
    InitializationException,
    MemoryException,
    ModelLoadException,
    ModelValidationException,
    NativeErrorCode,
    check,
)

# code, value in edge_veda.h, exception class, message (Edge Veda's types.dart), memory error
TABLE = [
    (NativeErrorCode.INVALID_PARAM, -1, ConfigurationException, "Invalid parameter", False),
    (NativeErrorCode.OUT_OF_MEMORY, -2, MemoryException, "Out of memory", True),
    (NativeErrorCode.MODEL_LOAD_FAILED, -3, ModelLoadException, "Failed to load model", False),
    (
        NativeErrorCode.BACKEND_INIT_FAILED,
        -4,
        InitializationException,
        "Failed to initialize backend",
        False,
    ),
    (NativeErrorCode.INFERENCE_FAILED, -5, GenerationException, "Inference failed", False),
    (NativeErrorCode.CONTEXT_INVALID, -6, InitializationException, "Invalid context", False),
    (NativeErrorCode.STREAM_ENDED, -7, GenerationException, "Stream ended unexpectedly", False),
    (
        NativeErrorCode.NOT_IMPLEMENTED,
        -8,
        ConfigurationException,
        "Feature not implemented",
        False,
    ),
    (NativeErrorCode.MEMORY_LIMIT_EXCEEDED, -9, MemoryException, "Memory limit exceeded", True),
    (
        NativeErrorCode.UNSUPPORTED_BACKEND,
        -10,
        InitializationException,
        "Backend not supported",
        False,
    ),
    (NativeErrorCode.UNKNOWN, -999, EdgeVedaGenericException, "Unknown error", False),
]

NATIVE_NAMES = {
    NativeErrorCode.SUCCESS: "EV_SUCCESS",
    **{code: f"EV_ERROR_{code.name}" for code, *_ in TABLE},
}


def test_table_covers_every_member() -> None:
    assert {row[0] for row in TABLE} | {NativeErrorCode.SUCCESS} == set(NativeErrorCode)


@pytest.mark.parametrize(("code", "value", "cls", "message", "is_mem"), TABLE, ids=lambda x: str(x))
def test_code_maps_to_exception(
    code: NativeErrorCode, value: int, cls: type, message: str, is_mem: bool
) -> None:
    assert int(code) == value
    assert NativeErrorCode.from_code(value) is code
    assert code.exception_class is cls
    assert code.is_memory_error is is_mem
    assert not code.is_success

    exc = code.to_exception("native said so")
    assert type(exc) is cls
    assert isinstance(exc, EdgeVedaException)
    assert exc.message == message
    assert exc.details == "native said so"
    assert exc.code is code
    assert str(exc) == f"{cls.__name__}: {message} (native said so)"

    bare = code.to_exception()
    assert bare is not None
    assert bare.details is None
    assert str(bare) == f"{cls.__name__}: {message}"

    # check() is the one entry point every call site uses.
    with pytest.raises(cls) as info:
        check(value, "from check")
    assert type(info.value) is cls
    assert info.value.code is code
    assert info.value.details == "from check"
    assert str(info.value) == f"{cls.__name__}: {message} (from check)"


def test_success() -> None:
    assert NativeErrorCode.from_code(0) is NativeErrorCode.SUCCESS
    assert NativeErrorCode.SUCCESS.is_success
    assert NativeErrorCode.SUCCESS.to_exception() is None
    assert NativeErrorCode.SUCCESS.to_exception("ignored") is None
    assert NativeErrorCode.SUCCESS.exception_class is None
    assert not NativeErrorCode.SUCCESS.is_memory_error
    check(0)
    check(0, "details are ignored on success")


@pytest.mark.parametrize("value", [1, 2, -11, -100, -998, -1000, 2**31 - 1, -(2**31), 10**12])
def test_from_code_unknown_values(value: int) -> None:
    assert NativeErrorCode.from_code(value) is NativeErrorCode.UNKNOWN
    with pytest.raises(EdgeVedaGenericException) as info:
        check(value, f"code {value}")
    assert info.value.code is NativeErrorCode.UNKNOWN
    assert str(info.value) == f"EdgeVedaGenericException: Unknown error (code {value})"


def test_from_code_accepts_int_like() -> None:
    assert NativeErrorCode.from_code(NativeErrorCode.STREAM_ENDED) is NativeErrorCode.STREAM_ENDED
    assert NativeErrorCode.from_code(True) is NativeErrorCode.UNKNOWN  # 1 is no code


def test_enum_matches_compiled_header() -> None:
    """The Python enum has exactly the values the compiled ``edge_veda.h`` declares,
    and the core has an English text for each."""
    native = pytest.importorskip("edgeveda_ffi.engine.bindings")
    for code, cname in NATIVE_NAMES.items():
        assert getattr(native.lib, cname) == int(code), cname
        text = native.ffi.string(native.lib.ev_error_string(int(code))).decode()
        assert text, cname
    unknown = native.ffi.string(native.lib.ev_error_string(-12345)).decode()
    assert unknown == "Unknown error"


# ------------------------------------------------------------------------------------------
# The hierarchy and builtin bases
# ------------------------------------------------------------------------------------------


def test_builtin_inheritance() -> None:
    assert issubclass(ConfigurationException, ValueError)
    assert issubclass(MemoryException, MemoryError)
    assert issubclass(DownloadException, ConnectionError)
    assert issubclass(DownloadException, OSError)
    assert issubclass(ModelValidationException, ValueError)
    assert issubclass(ChecksumException, ModelValidationException)
    assert issubclass(EngineClosedException, InitializationException)
    assert issubclass(DownloadCancelledException, DownloadException)
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, EdgeVedaException), name
            assert issubclass(obj, Exception), name


def test_plain_builtin_except_clauses_work() -> None:
    with pytest.raises(ValueError):
        check(NativeErrorCode.INVALID_PARAM, "x")
    with pytest.raises(MemoryError):
        check(NativeErrorCode.MEMORY_LIMIT_EXCEEDED, "x")
    with pytest.raises(MemoryError):
        check(NativeErrorCode.OUT_OF_MEMORY, "x")
    with pytest.raises(OSError):
        raise DownloadException("HTTP 503", "https://example.invalid/model.gguf")
    with pytest.raises(ConnectionError):
        raise DownloadCancelledException("Download cancelled")


@pytest.mark.parametrize(
    "cls",
    [
        EdgeVedaException,
        InitializationException,
        ModelLoadException,
        GenerationException,
        DownloadException,
        DownloadCancelledException,
        ChecksumException,
        ModelValidationException,
        MemoryException,
        ConfigurationException,
        EngineClosedException,
        EdgeVedaGenericException,
    ],
)
def test_constructor_str_repr_pickle(cls: type[EdgeVedaException]) -> None:
    cause = RuntimeError("low level")
    exc = cls("Something failed", "the details", cause)
    assert exc.message == "Something failed"
    assert exc.details == "the details"
    assert exc.original_error is cause
    assert exc.__cause__ is cause
    assert exc.args[0] == "Something failed"
    assert str(exc) == f"{cls.__name__}: Something failed (the details)"
    assert repr(exc) == f"{cls.__name__}(message='Something failed', details='the details')"

    plain = cls("Only a message")
    assert plain.details is None and plain.original_error is None
    assert str(plain) == f"{cls.__name__}: Only a message"
    # Empty details are not shown as "()".
    assert str(cls("m", "")) == f"{cls.__name__}: m"

    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert back.message == exc.message and back.details == exc.details
    assert str(back) == str(exc)


def test_download_exception_keeps_oserror_fields_sane() -> None:
    exc = DownloadException("HTTP 404", "https://example.invalid/x.gguf")
    assert exc.args == ("HTTP 404",)
    assert str(exc) == "DownloadException: HTTP 404 (https://example.invalid/x.gguf)"


# ------------------------------------------------------------------------------------------
# MemoryPressureEvent / MemoryStats arithmetic
# ------------------------------------------------------------------------------------------


def test_memory_pressure_event() -> None:
    ev = MemoryPressureEvent(current_bytes=950, limit_bytes=1000)
    assert ev.usage_ratio == pytest.approx(0.95)
    assert ev.is_warning and ev.is_critical

    ev = MemoryPressureEvent(current_bytes=850, limit_bytes=1000)
    assert ev.usage_ratio == pytest.approx(0.85)
    assert ev.is_warning and not ev.is_critical

    # one warning threshold for the event and the stats (0.8)
    ev = MemoryPressureEvent(current_bytes=780, limit_bytes=1000)
    st = MemoryStats(780, 780, 1000, 500, 280)
    assert not ev.is_warning and not st.is_high_pressure
    assert PRESSURE_WARNING_RATIO == 0.8 and PRESSURE_CRITICAL_RATIO == 0.9

    ev = MemoryPressureEvent(current_bytes=2000, limit_bytes=1000)
    assert ev.usage_ratio == pytest.approx(2.0) and ev.is_critical

    no_limit = MemoryPressureEvent(current_bytes=123456, limit_bytes=0)
    assert no_limit.usage_ratio == 0.0
    assert not no_limit.is_warning and not no_limit.is_critical

    assert MemoryPressureEvent(1, 2) == MemoryPressureEvent(1, 2)
    with pytest.raises(AttributeError):
        ev.current_bytes = 3  # type: ignore[misc]


def test_memory_stats_usage() -> None:
    st = MemoryStats(
        current_bytes=91, peak_bytes=95, limit_bytes=100, model_bytes=60, context_bytes=31
    )
    assert st.usage_ratio == pytest.approx(0.91)
    assert st.is_high_pressure and st.is_critical
    assert st.to_dict() == {
        "current_bytes": 91,
        "peak_bytes": 95,
        "limit_bytes": 100,
        "model_bytes": 60,
        "context_bytes": 31,
    }
    unlimited = MemoryStats(10, 10, 0, 5, 5)
    assert unlimited.usage_ratio == 0.0 and not unlimited.is_critical


def test_usage_percent_is_a_deprecated_alias_of_usage_ratio() -> None:
    """usage_percent was a 0..1 ratio under a percentage's name: it warns and
    keeps returning the ratio, so old code computes what it did."""
    st = MemoryStats(91, 95, 100, 60, 31)
    ev = MemoryPressureEvent(current_bytes=950, limit_bytes=1000)
    with pytest.warns(DeprecationWarning, match="usage_ratio"):
        assert st.usage_percent == st.usage_ratio == pytest.approx(0.91)
    with pytest.warns(DeprecationWarning, match="usage_ratio"):
        assert ev.usage_percent == ev.usage_ratio == pytest.approx(0.95)


def test_cancelled_exception_is_deprecated_and_still_importable() -> None:
    """Nothing raises CancelledException (a cancel returns FinishReason.CANCELLED);
    the name stays importable for old code, with a DeprecationWarning."""
    import edgeveda_ffi

    with pytest.warns(DeprecationWarning, match="never raised"):
        old = edgeveda_ffi.CancelledException
    with pytest.warns(DeprecationWarning):
        from edgeveda_ffi.errors import CancelledException
    assert old is CancelledException and issubclass(old, GenerationException)
    assert "CancelledException" not in errors.__all__


def test_configuration_exception_carries_the_field() -> None:
    exc = ConfigurationException("Invalid parameter", "temperature=-1: >= 0", field="temperature")
    assert exc.field == "temperature" and isinstance(exc, ValueError)
    back = pickle.loads(pickle.dumps(exc))
    assert (back.field, back.details) == ("temperature", "temperature=-1: >= 0")
    assert ConfigurationException("x").field is None


# ------------------------------------------------------------------------------------------
# Typed attributes of the model-manager errors (never strings to parse)
# ------------------------------------------------------------------------------------------


def test_download_exception_typed_attributes_survive_pickle() -> None:
    from edgeveda_ffi.errors import FailureReason

    exc = DownloadException(
        "Download failed",
        "HTTP 503",
        reason=FailureReason.HTTP_STATUS,
        url="https://example.invalid/m.gguf",
        status=503,
    )
    assert exc.reason is FailureReason.HTTP_STATUS and exc.reason == "http_status"
    assert exc.status == 503 and exc.url == "https://example.invalid/m.gguf" and exc.path is None
    back = pickle.loads(pickle.dumps(exc))
    assert (back.reason, back.status, back.url) == (FailureReason.HTTP_STATUS, 503, exc.url)
    plain = DownloadException("x")  # old positional calls still work, attributes default to None
    assert plain.reason is None and plain.status is None and plain.url is None
    cancelled = DownloadCancelledException("Download cancelled")
    assert cancelled.reason is FailureReason.CANCELLED
    assert pickle.loads(pickle.dumps(cancelled)).reason is FailureReason.CANCELLED


def test_validation_exceptions_carry_field_expected_actual() -> None:
    from edgeveda_ffi.errors import FailureReason

    exc = ChecksumException(
        "SHA256 checksum mismatch", expected="a" * 64, actual="b" * 64, path="/m"
    )
    assert exc.reason is FailureReason.CHECKSUM_MISMATCH and exc.field == "sha256"
    assert (exc.expected, exc.actual, exc.path) == ("a" * 64, "b" * 64, "/m")
    size = ModelValidationException(
        "Size mismatch",
        reason=FailureReason.SIZE_MISMATCH,
        field="size_bytes",
        expected=10,
        actual=9,
    )
    back = pickle.loads(pickle.dumps(size))
    assert type(back) is ModelValidationException
    assert (back.reason, back.field, back.expected, back.actual) == (
        FailureReason.SIZE_MISMATCH,
        "size_bytes",
        10,
        9,
    )
    assert ModelValidationException("m").reason is None
