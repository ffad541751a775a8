"""Issue 4: every error the core can produce, triggered for real from Python.

Corrupt files, bad configuration and parameters, memory limits, unavailable
backends, llama.cpp refusing a context, unsupported chat templates, use after
close, next after cancel. Each asserts the exception class, its NativeErrorCode
and that the details name the problem.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import model_factory
import pytest

from edgeveda_ffi import (
    Backend,
    ConfigurationException,
    EdgeVeda,
    EngineClosedException,
    FinishReason,
    GenerationException,
    GenerationParams,
    InitializationException,
    MemoryException,
    ModelLoadException,
    NativeErrorCode,
)
from edgeveda_ffi.engine.bindings import check_native, ffi, lib

MISSING = "/nonexistent-dir/edgeveda/missing-model.gguf"


def _tiny(path: Path, **kw: Any) -> EdgeVeda:
    kw.setdefault("context_size", 256)
    kw.setdefault("num_threads", 1)
    return EdgeVeda(path, **kw)


# ------------------------------------------------------------------------------------------
# MODEL_LOAD_FAILED
# ------------------------------------------------------------------------------------------


CORRUPT = [
    "truncated_header",
    "truncated_kv",
    "truncated_tensor_info",
    "truncated_tensor_data",
    "bad_magic",
    "bitflip_kv",
    "huge_tensor_count",
    "huge_kv_count",
    "huge_string_length",
    "empty",
    "text",
    "directory",
]


@pytest.mark.parametrize("name", CORRUPT)
def test_corrupt_file_raises_model_load(corrupt_models: dict[str, Path], name: str) -> None:
    path = corrupt_models[name]
    with pytest.raises(ModelLoadException) as info:
        EdgeVeda(path, context_size=256, num_threads=1)
    exc = info.value
    assert exc.code is NativeErrorCode.MODEL_LOAD_FAILED
    assert exc.message == "Failed to load model"
    assert exc.details is not None and str(path) in exc.details
    assert str(exc) == f"ModelLoadException: Failed to load model ({exc.details})"


def test_every_corrupt_variant_is_covered(corrupt_models: dict[str, Path]) -> None:
    assert set(corrupt_models) == set(CORRUPT)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadException) as info:
        EdgeVeda(MISSING)
    assert info.value.code is NativeErrorCode.MODEL_LOAD_FAILED
    assert MISSING in (info.value.details or "")
    assert "No such file" in (info.value.details or "")
    # A pathlib.Path works the same way.
    with pytest.raises(ModelLoadException) as info:
        EdgeVeda(tmp_path / "nope.gguf")
    assert str(tmp_path / "nope.gguf") in (info.value.details or "")


# ------------------------------------------------------------------------------------------
# INVALID_PARAM: validated in Python before any native call
# ------------------------------------------------------------------------------------------

# (field, bad value, text of the allowed range that the message must contain)
BAD_CONFIG = [
    ("num_threads", -1, "0 (auto) to 1024"),
    ("num_threads", 1.5, "must be an integer"),
    ("context_size", -5, ">= 0"),
    ("batch_size", 0, ">= 1"),
    ("memory_limit_bytes", -1, ">= 0"),
    ("gpu_layers", -2, ">= -1"),
    ("seed", -2, "-1 (random) or 0 to 2147483647"),
    ("seed", 2**31, "-1 (random) or 0 to 2147483647"),
    ("flash_attn", 2, "-1 (auto), 0 (off) or 1 (on)"),
    ("kv_cache_type_k", 99, "a ggml_type"),
    ("kv_cache_type_v", -1, "a ggml_type"),
    ("use_mmap", "yes", "True or False"),
    ("auto_unload_on_memory_pressure", 1, "True or False"),
    ("backend", "cuda", "auto, metal, vulkan, cpu"),
    ("backend", 7, "AUTO(0), METAL(1), VULKAN(2), CPU(3)"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), BAD_CONFIG)
def test_bad_config_field_raises_before_native(field: str, value: Any, allowed: str) -> None:
    # The model path does not exist: if anything reached ev_init we would get
    # ModelLoadException instead, so this shows validation comes first.
    with pytest.raises(ConfigurationException) as info:
        EdgeVeda(MISSING, **{field: value})
    exc = info.value
    assert isinstance(exc, ValueError)
    assert field in (exc.details or "")
    assert allowed in (exc.details or "")
    assert str(exc).startswith("ConfigurationException: Invalid parameter (")


def test_unknown_config_field_and_missing_path() -> None:
    with pytest.raises(ConfigurationException) as info:
        EdgeVeda(MISSING, context=512)
    assert "context" in (info.value.details or "")
    assert "context_size" in (info.value.details or "")  # lists the known names
    with pytest.raises(ConfigurationException, match="model_path"):
        EdgeVeda()
    with pytest.raises(ConfigurationException, match="model_path"):
        EdgeVeda("")


# (field, bad value, text of the allowed range)
BAD_PARAMS = [
    ("max_tokens", -1, ">= 0"),
    ("max_tokens", 2.5, "must be an integer"),
    ("temperature", -0.1, ">= 0"),
    ("temperature", math.nan, "must be finite"),
    ("top_p", 1.5, "in [0, 1]"),
    ("top_k", -1, ">= 0"),
    ("repeat_penalty", 0.0, "> 0"),
    ("frequency_penalty", math.inf, "must be finite"),
    ("presence_penalty", "high", "must be a number"),
    ("confidence_threshold", 2.0, "in [0, 1]"),
    ("min_p", -0.1, "in [0, 1]"),
    ("seed", -2, "-1 (random) or 0 to 4294967294"),
    ("stop", [""], "must not be empty"),
    ("stop", [3], "must be a string"),
    ("stop", 3, "a string or a sequence of strings"),
    ("grammar", 5, "a string without NUL"),
    ("grammar", "root ::= \x00", "a string without NUL"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), BAD_PARAMS)
def test_bad_generation_param(tiny_model_path: Path, field: str, value: Any, allowed: str) -> None:
    with pytest.raises(ConfigurationException) as info:
        GenerationParams(**{field: value})
    assert field in (info.value.details or "") and allowed in (info.value.details or "")

    # On a closed engine every native call raises EngineClosedException; getting a
    # ConfigurationException instead shows the parameters are checked first.
    engine = _tiny(tiny_model_path)
    engine.close()
    calls: list[Callable[[], Any]] = [
        lambda: engine.generate("hi", **{field: value}),
        lambda: engine.stream("hi", **{field: value}),
        lambda: engine.chat([{"role": "user", "content": "hi"}], **{field: value}),
    ]
    for call in calls:
        with pytest.raises(ConfigurationException) as info:
            call()
        assert field in (info.value.details or "")
        assert allowed in (info.value.details or "")


def test_bad_param_leaves_open_engine_untouched(tiny_engine: EdgeVeda) -> None:
    before = tiny_engine.generate("hello", max_tokens=3, temperature=0)
    with pytest.raises(ConfigurationException, match="temperature"):
        tiny_engine.generate("a different prompt entirely", temperature=-1)
    # No generation ran: this thread's last stats are still the previous call's.
    assert tiny_engine.last_stats == before.stats
    with pytest.raises(ConfigurationException, match="unknown generation parameter"):
        tiny_engine.generate("hi", max_token=3)
    with pytest.raises(ConfigurationException, match="NUL"):
        tiny_engine.generate("a\x00b")
    with pytest.raises(ConfigurationException, match="must be a str"):
        tiny_engine.generate(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationException, match="limit_bytes"):
        tiny_engine.set_memory_limit(-1)
    with pytest.raises(ConfigurationException, match="callable"):
        tiny_engine.on_memory_pressure(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationException, match="role"):
        tiny_engine.apply_chat_template([{"content": "no role"}])
    with pytest.raises(ConfigurationException, match="int32"):
        tiny_engine.detokenize([2**40])


def test_native_invalid_param(tiny_model_path: Path, tiny_engine: EdgeVeda) -> None:
    """INVALID_PARAM from the core itself (values only the model can judge)."""
    with pytest.raises(ConfigurationException) as info:
        EdgeVeda(tiny_model_path, context_size=4096, num_threads=1)  # trained on 2048
    assert info.value.code is NativeErrorCode.INVALID_PARAM
    assert "context_size" in (info.value.details or "")
    assert "2048" in (info.value.details or "")

    long_prompt = "hello " * 400  # > 256 tokens of context
    for call in (
        lambda: tiny_engine.generate(long_prompt, max_tokens=1),
        lambda: tiny_engine.stream(long_prompt, max_tokens=1),
    ):
        with pytest.raises(ConfigurationException) as info:
            call()
        assert info.value.code is NativeErrorCode.INVALID_PARAM
        assert info.value.details

    with pytest.raises(ConfigurationException) as info:
        tiny_engine.embed("")
    assert info.value.code is NativeErrorCode.INVALID_PARAM
    with pytest.raises(ConfigurationException) as info:
        tiny_engine.detokenize([10**8])
    assert info.value.code is NativeErrorCode.INVALID_PARAM
    # The engine is fine afterwards.
    assert tiny_engine.generate("hello", max_tokens=2, temperature=0).completion_tokens == 2


# ------------------------------------------------------------------------------------------
# MEMORY_LIMIT_EXCEEDED
# ------------------------------------------------------------------------------------------


def test_memory_limit_below_model_size(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path) as probe:
        need = probe.memory_stats().current_bytes
    assert need > 0
    for limit in (1_000_000, need - 1):
        with pytest.raises(MemoryException) as info:
            _tiny(tiny_model_path, memory_limit_bytes=limit)
        exc = info.value
        assert isinstance(exc, MemoryError)
        assert exc.code is NativeErrorCode.MEMORY_LIMIT_EXCEEDED and exc.code.is_memory_error
        assert str(need) in (exc.details or "") and str(limit) in (exc.details or "")
        assert str(tiny_model_path) in (exc.details or "")
    # Exactly what it needs is enough (the check is the real allocation size).
    with _tiny(tiny_model_path, memory_limit_bytes=need) as engine:
        st = engine.memory_stats()
        assert st.current_bytes == need and st.limit_bytes == need


# ------------------------------------------------------------------------------------------
# UNSUPPORTED_BACKEND / BACKEND_INIT_FAILED
# ------------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "darwin", reason="Metal exists on macOS")
def test_metal_on_linux(tiny_model_path: Path) -> None:
    for backend in (Backend.METAL, "metal", 1):
        with pytest.raises(InitializationException) as info:
            _tiny(tiny_model_path, backend=backend)
        assert info.value.code is NativeErrorCode.UNSUPPORTED_BACKEND
        assert "Metal" in (info.value.details or "")
        assert str(info.value).startswith("InitializationException: Backend not supported (")


def test_unavailable_vulkan(tiny_model_path: Path) -> None:
    if lib.ev_is_backend_available(int(Backend.VULKAN)):
        pytest.skip("this build has a Vulkan device")
    with pytest.raises(InitializationException) as info:
        _tiny(tiny_model_path, backend=Backend.VULKAN)
    assert info.value.code is NativeErrorCode.UNSUPPORTED_BACKEND
    assert "Vulkan" in (info.value.details or "")


def test_cpu_backend_always_works(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path, backend=Backend.CPU) as engine:
        assert engine.generate("hi", max_tokens=1).completion_tokens == 1


def test_llama_refuses_context(tiny_model_path: Path) -> None:
    """A quantized V cache without flash attention: llama.cpp cannot create the context."""
    with pytest.raises(InitializationException) as info:
        _tiny(tiny_model_path, kv_cache_type_v=8, flash_attn=0)
    assert info.value.code is NativeErrorCode.BACKEND_INIT_FAILED
    assert "flash_attn" in (info.value.details or "")
    assert str(tiny_model_path) in (info.value.details or "")


# ------------------------------------------------------------------------------------------
# NOT_IMPLEMENTED: a chat template llama.cpp does not know
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unknown_template_model(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its chat template overwritten (same length) by 'x's."""
    path = tmp_path_factory.mktemp("unknown-template") / "tiny-unknown-template.gguf"
    shutil.copyfile(tiny_model_path, path)
    layout = model_factory.gguf_layout(path)
    key = b"tokenizer.chat_template"
    offset = layout.kv_offsets[key.decode()]
    data = bytearray(path.read_bytes())
    pos = offset + 8 + len(key)
    assert int.from_bytes(data[pos : pos + 4], "little") == 8  # a GGUF string
    length = int.from_bytes(data[pos + 4 : pos + 12], "little")
    start = pos + 12
    assert b"im_start" in data[start : start + length]
    data[start : start + length] = b"x" * length
    path.write_bytes(bytes(data))
    return path


def test_unknown_chat_template_not_implemented(unknown_template_model: Path) -> None:
    with _tiny(unknown_template_model) as engine:
        messages = [{"role": "user", "content": "hi"}]
        for call in (lambda: engine.apply_chat_template(messages), lambda: engine.chat(messages)):
            with pytest.raises(ConfigurationException) as info:
                call()
            assert info.value.code is NativeErrorCode.NOT_IMPLEMENTED
            assert str(info.value).startswith("ConfigurationException: Feature not implemented")
        # Raw prompts still work.
        assert engine.generate("hi", max_tokens=2).completion_tokens == 2


# ------------------------------------------------------------------------------------------
# Use after close
# ------------------------------------------------------------------------------------------


def test_use_after_close(tiny_model_path: Path) -> None:
    engine = _tiny(tiny_model_path)
    assert not engine.closed and engine.is_valid
    engine.close()
    assert engine.closed and not engine.is_valid
    engine.close()  # twice is fine
    engine.cancel()  # a no-op, not an error
    assert "closed" in repr(engine)

    msgs = [{"role": "user", "content": "hi"}]
    calls: dict[str, Callable[[], Any]] = {
        "generate": lambda: engine.generate("hi"),
        "stream": lambda: engine.stream("hi"),
        "chat": lambda: engine.chat(msgs),
        "apply_chat_template": lambda: engine.apply_chat_template(msgs),
        "chat_session": lambda: engine.chat_session().send("hi"),
        "embed": lambda: engine.embed("hi"),
        "tokenize": lambda: engine.tokenize("hi"),
        "detokenize": lambda: engine.detokenize([1]),
        "memory_stats": lambda: engine.memory_stats(),
        "set_memory_limit": lambda: engine.set_memory_limit(0),
        "on_memory_pressure": lambda: engine.on_memory_pressure(lambda ev: None),
        "reset": lambda: engine.reset(),
        "set_prompt_cache": lambda: engine.set_prompt_cache(True),
        "model_info": lambda: engine.model_info,
        "last_stats": lambda: engine.last_stats,
    }
    for name, call in calls.items():
        with pytest.raises(EngineClosedException) as info:
            call()
        assert isinstance(info.value, InitializationException), name
        assert str(info.value).startswith("EngineClosedException: Engine is closed"), name


def test_context_manager_closes(tiny_model_path: Path) -> None:
    with _tiny(tiny_model_path) as engine:
        assert engine.generate("hi", max_tokens=1).completion_tokens == 1
    assert engine.closed
    with pytest.raises(EngineClosedException):
        engine.generate("hi")


def test_stream_outlives_closed_engine(tiny_model_path: Path) -> None:
    engine = _tiny(tiny_model_path)
    stream = engine.stream("hello", max_tokens=50, temperature=0)
    next(stream)
    engine.close()  # closes the stream first
    assert stream.closed
    assert list(stream) == []
    stream.close()


# ------------------------------------------------------------------------------------------
# STREAM_ENDED: next after cancel
# ------------------------------------------------------------------------------------------


def test_stream_next_after_cancel(tiny_engine: EdgeVeda) -> None:
    stream = tiny_engine.stream("hello", max_tokens=100, temperature=0)
    first = next(stream)
    assert isinstance(first, str) and first
    stream.cancel()
    # The documented end: the iteration stops (no exception), the stats say why.
    assert list(stream) == []
    with pytest.raises(StopIteration):
        next(stream)
    stats = stream.stats
    assert stats.finish_reason is FinishReason.CANCELLED
    assert 1 <= stats.completion_tokens < 100

    # Underneath, the core answers STREAM_ENDED, which maps to GenerationException.
    err = ffi.new("ev_error_t*")
    assert lib.ev_stream_next(stream._handle, err) == ffi.NULL
    assert err[0] == NativeErrorCode.STREAM_ENDED
    with pytest.raises(GenerationException) as info:
        check_native(err[0])
    assert info.value.code is NativeErrorCode.STREAM_ENDED
    assert "cancelled" in (info.value.details or "")

    stream.close()
    with pytest.raises(GenerationException, match="closed"):
        _ = stream.stats
    # The engine is free for the next request.
    assert tiny_engine.generate("hi", max_tokens=2).completion_tokens == 2


def test_engine_cancel_ends_stream(tiny_engine: EdgeVeda) -> None:
    with tiny_engine.stream("hello", max_tokens=100, temperature=0) as stream:
        next(stream)
        tiny_engine.cancel()
        rest = list(stream)
        assert len(rest) <= 1  # at most the token already in progress
        assert stream.stats.finish_reason is FinishReason.CANCELLED


def test_generate_while_stream_active(tiny_engine: EdgeVeda) -> None:
    with tiny_engine.stream("hello", max_tokens=50) as stream:
        next(stream)
        with pytest.raises(InitializationException) as info:
            tiny_engine.generate("hi", max_tokens=1)
        assert info.value.code is NativeErrorCode.CONTEXT_INVALID
        assert "stream is active" in (info.value.details or "")
        # Embeddings use their own context: allowed while a stream runs.
        assert tiny_engine.embed("hi").dimensions == 64
    assert tiny_engine.generate("hi", max_tokens=1).completion_tokens == 1
