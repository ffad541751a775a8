"""Engine inputs: the configuration of an engine and the parameters of a
generation, validated before any native call.

The defaults are the core's own (``ev_config_default``,
``ev_generation_params_default`` and their extras), read once from the
library at import; nothing here restates them.

Each class mirrors one C struct of ``edge_veda.h`` (field names in snake_case,
same defaults), so a port can map them one to one.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from ..errors import ConfigurationException
from .bindings import config_defaults, generation_params_defaults
from .environment import _ON_OFF, CPU_EXTRA_BUFFERS_ENV, cpu_extra_buffers_from_env

__all__ = [
    "CPU_EXTRA_BUFFERS_ENV",
    "cpu_extra_buffers_from_env",
    "Backend",
    "Config",
    "GenerationParams",
]


#: The core's defaults (``ev_config_default`` + ``ev_config_extras_default``).
_C_CONFIG = config_defaults()
#: ``ev_generation_params_default`` + ``ev_generation_extras_default``.
_C_PARAMS = generation_params_defaults()


class Backend(enum.IntEnum):
    """``ev_backend_t``."""

    AUTO = 0
    METAL = 1
    VULKAN = 2
    CPU = 3

    @classmethod
    def parse(cls, value: Backend | int | str) -> Backend:
        """A Backend from an enum member, its int value or its name (any case)."""
        if isinstance(value, Backend):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise ConfigurationException(
                    "Invalid parameter",
                    f"backend {value!r} is not one of auto, metal, vulkan, cpu",
                ) from None
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                raise ConfigurationException(
                    "Invalid parameter",
                    f"backend {value} is not one of AUTO(0), METAL(1), VULKAN(2), CPU(3)",
                ) from None
        raise ConfigurationException("Invalid parameter", f"backend {value!r} has the wrong type")


def _bad(
    name: str, value: Any, allowed: str, field: Optional[str] = None
) -> ConfigurationException:
    """The error for one field (``field``, when ``name`` is an element such as ``stop[1]``)."""
    return ConfigurationException(
        "Invalid parameter", f"{name}={value!r}: {allowed}", field=field or name
    )


def _check_int(name: str, value: Any, lo: Optional[int], hi: Optional[int], allowed: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, value, f"must be an integer ({allowed})")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _bad(name, value, allowed)
    return value


def _check_float(
    name: str,
    value: Any,
    lo: Optional[float],
    hi: Optional[float],
    allowed: str,
    lo_open: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, value, f"must be a number ({allowed})")
    v = float(value)
    if not math.isfinite(v):
        raise _bad(name, value, f"must be finite ({allowed})")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise _bad(name, value, allowed)
    if hi is not None and v > hi:
        raise _bad(name, value, allowed)
    return v


_INT32_MAX = 2**31 - 1


def _parse_cpu_extra_buffers(value: Any) -> bool:
    if value is None:
        env = cpu_extra_buffers_from_env()
        return bool(_C_CONFIG["cpu_extra_buffers"]) if env is None else env
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _ON_OFF:
        return _ON_OFF[value.strip().lower()]
    raise _bad("cpu_extra_buffers", value, "must be True, False, 'on' or 'off' (any case)")


@dataclass(frozen=True)
class Config:
    """``ev_config``: how to load a model. Defaults are ``ev_config_default``'s.

    ``context_size`` 0 uses the model's training context; ``num_threads`` 0
    picks the hardware thread count (at most 8); ``seed`` -1 is random per
    request, >= 0 makes every request reproducible.

    ``cpu_extra_buffers`` (``ev_config_extras.cpu_extra_buffers``): whether
    llama.cpp may put weights in the CPU's extra buffer types (AMX on Intel
    Sapphire Rapids and later, CPU_REPACK for some quant types): True/False or
    ``"on"``/``"off"`` (any case); when not given, ``$EDGEVEDA_CPU_EXTRA_BUFFERS``
    (``on``/``off``), else on. Off is the escape hatch when one of those CPU
    kernels misbehaves. After construction it is a bool.
    :attr:`EdgeVeda.buffer_types` shows where the weights went.
    """

    model_path: str
    backend: Backend = Backend(_C_CONFIG["backend"])
    num_threads: int = _C_CONFIG["num_threads"]
    context_size: int = _C_CONFIG["context_size"]
    batch_size: int = _C_CONFIG["batch_size"]
    memory_limit_bytes: int = _C_CONFIG["memory_limit_bytes"]
    auto_unload_on_memory_pressure: bool = _C_CONFIG["auto_unload_on_memory_pressure"]
    gpu_layers: int = _C_CONFIG["gpu_layers"]
    use_mmap: bool = _C_CONFIG["use_mmap"]
    use_mlock: bool = _C_CONFIG["use_mlock"]
    seed: int = _C_CONFIG["seed"]
    flash_attn: int = _C_CONFIG["flash_attn"]
    kv_cache_type_k: int = _C_CONFIG["kv_cache_type_k"]
    kv_cache_type_v: int = _C_CONFIG["kv_cache_type_v"]
    cpu_extra_buffers: Union[bool, str, None] = None

    def __post_init__(self) -> None:
        path = self.model_path
        if hasattr(path, "__fspath__"):
            object.__setattr__(self, "model_path", str(path.__fspath__()))
        elif not isinstance(path, str):
            raise _bad("model_path", path, "must be a path (str or os.PathLike)")
        if not self.model_path:
            raise _bad("model_path", path, "must not be empty")
        object.__setattr__(self, "backend", Backend.parse(self.backend))
        _check_int("num_threads", self.num_threads, 0, 1024, "0 (auto) to 1024")
        _check_int("context_size", self.context_size, 0, _INT32_MAX, ">= 0 (0 = the model's own)")
        _check_int("batch_size", self.batch_size, 1, _INT32_MAX, ">= 1")
        _check_int(
            "memory_limit_bytes", self.memory_limit_bytes, 0, 2**63 - 1, ">= 0 (0 = no limit)"
        )
        _check_int("gpu_layers", self.gpu_layers, -1, _INT32_MAX, ">= -1 (-1 = all)")
        _check_int("seed", self.seed, -1, _INT32_MAX, "-1 (random) or 0 to 2147483647")
        _check_int("flash_attn", self.flash_attn, -1, 1, "-1 (auto), 0 (off) or 1 (on)")
        kv_types = "a ggml_type: 0 F32, 1 F16, 8 Q8_0"
        _check_int("kv_cache_type_k", self.kv_cache_type_k, 0, 40, kv_types)
        _check_int("kv_cache_type_v", self.kv_cache_type_v, 0, 40, kv_types)
        for name in ("auto_unload_on_memory_pressure", "use_mmap", "use_mlock"):
            if not isinstance(getattr(self, name), bool):
                raise _bad(name, getattr(self, name), "must be True or False")
        object.__setattr__(
            self, "cpu_extra_buffers", _parse_cpu_extra_buffers(self.cpu_extra_buffers)
        )

    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_kwargs(cls, model_path: str, **kwargs: Any) -> Config:
        """A config for ``model_path``; unknown field names raise ConfigurationException."""
        unknown = sorted(set(kwargs) - set(cls.field_names()))
        if unknown:
            raise ConfigurationException(
                "Invalid parameter",
                f"unknown config field(s) {', '.join(unknown)}; "
                f"known: {', '.join(cls.field_names())}",
                field=unknown[0],
            )
        return cls(model_path=model_path, **kwargs)


@dataclass(frozen=True)
class GenerationParams:
    """``ev_generation_params`` (+ ``ev_generation_extras``), validated.

    ``temperature`` 0 is greedy. ``seed`` None uses the engine's config seed;
    -1 is random; >= 0 reproducible. ``stop`` sequences are matched across
    token boundaries and never appear in the output. ``grammar`` is GBNF.
    ``logprobs`` (OpenAI's name) reports every generated token's logprob with
    its ``top_logprobs`` (0 to 20) best alternatives
    (``ev_generation_extras.top_logprobs``; ``top_logprobs`` has no effect
    without ``logprobs``): ``GenerateResult.logprobs``, ``StreamPiece.logprobs``.
    ``logit_bias`` maps token ids to numbers added to their logits before the
    penalties and the sampling (``ev_generation_extras.logit_bias``);
    ``float("-inf")`` bans a token. Given as a mapping (or pairs), kept as a
    tuple of ``(token, bias)`` pairs; a token outside the vocabulary raises
    ConfigurationException when the generation starts.
    """

    max_tokens: int = _C_PARAMS["max_tokens"]
    temperature: float = _C_PARAMS["temperature"]
    top_p: float = _C_PARAMS["top_p"]
    top_k: int = _C_PARAMS["top_k"]
    repeat_penalty: float = _C_PARAMS["repeat_penalty"]
    frequency_penalty: float = _C_PARAMS["frequency_penalty"]
    presence_penalty: float = _C_PARAMS["presence_penalty"]
    stop: Tuple[str, ...] = ()
    grammar: Optional[str] = None
    grammar_root: Optional[str] = None
    confidence_threshold: float = _C_PARAMS["confidence_threshold"]
    seed: Optional[int] = _C_PARAMS["seed"]
    min_p: float = _C_PARAMS["min_p"]
    # the C field is one number, -1 = off; here OpenAI's two fields
    logprobs: bool = _C_PARAMS["top_logprobs"] >= 0
    top_logprobs: int = max(_C_PARAMS["top_logprobs"], 0)
    logit_bias: Tuple[Tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        _check_int("max_tokens", self.max_tokens, 0, _INT32_MAX, ">= 0")
        _check_float("temperature", self.temperature, 0.0, None, ">= 0 (0 = greedy)")
        _check_float("top_p", self.top_p, 0.0, 1.0, "in [0, 1] (1 = off)")
        _check_int("top_k", self.top_k, 0, _INT32_MAX, ">= 0 (0 = off)")
        _check_float(
            "repeat_penalty", self.repeat_penalty, 0.0, None, "> 0 (1 = off)", lo_open=True
        )
        _check_float("frequency_penalty", self.frequency_penalty, None, None, "a finite number")
        _check_float("presence_penalty", self.presence_penalty, None, None, "a finite number")
        _check_float("confidence_threshold", self.confidence_threshold, 0.0, 1.0, "in [0, 1]")
        _check_float("min_p", self.min_p, 0.0, 1.0, "in [0, 1] (0 = off)")
        if not isinstance(self.logprobs, bool):
            raise _bad("logprobs", self.logprobs, "must be True or False")
        _check_int("top_logprobs", self.top_logprobs, 0, 20, "0 to 20")
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(stop, (list, tuple)):
            raise _bad("stop", self.stop, "must be a string or a sequence of strings")
        for i, s in enumerate(stop):
            if not isinstance(s, str):
                raise _bad(f"stop[{i}]", s, "must be a string", "stop")
            if not s:
                raise _bad(f"stop[{i}]", s, "must not be empty", "stop")
            if "\x00" in s:
                raise _bad(f"stop[{i}]", s, "must not contain NUL", "stop")
        object.__setattr__(self, "stop", tuple(stop))
        for name in ("grammar", "grammar_root"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or "\x00" in v):
                raise _bad(name, v, "must be a string without NUL, or None")
        if self.seed is not None:
            _check_int("seed", self.seed, -1, 2**32 - 2, "None, -1 (random) or 0 to 4294967294")
        object.__setattr__(self, "logit_bias", _logit_bias_pairs(self.logit_bias))

    @classmethod
    def from_kwargs(
        cls, base: Optional[GenerationParams] = None, **kwargs: Any
    ) -> GenerationParams:
        """``base`` (or the defaults) with ``kwargs`` applied; unknown names raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigurationException(
                "Invalid parameter",
                f"unknown generation parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}",
            )
        values: Dict[str, Any] = asdict(base) if base is not None else {}
        values.update(kwargs)
        if isinstance(values.get("stop"), list):
            values["stop"] = tuple(values["stop"])
        return cls(**values)


def _logit_bias_pairs(value: Any) -> Tuple[Tuple[int, float], ...]:
    """``logit_bias`` as ``(token, bias)`` pairs: from a mapping or pairs; token
    ids as ints (or decimal strings, as JSON keys are); biases finite or -inf."""
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    try:
        pairs = [tuple(item) for item in items]
    except TypeError:
        raise _bad(
            "logit_bias", value, "must map token ids to numbers (or be (token, bias) pairs)"
        ) from None
    out = []
    for pair in pairs:
        if len(pair) != 2:
            raise _bad("logit_bias", pair, "entries must be (token, bias) pairs")
        token, bias = pair
        if isinstance(token, str) and token.strip().isdigit():
            token = int(token)
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token <= _INT32_MAX:
            raise _bad("logit_bias", token, "keys must be token ids (integers >= 0)")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise _bad("logit_bias", bias, f"the bias of token {token} must be a number")
        bias = float(bias)
        if math.isnan(bias) or bias == math.inf:
            raise _bad("logit_bias", bias, f"the bias of token {token} must be finite or -inf")
        out.append((token, bias))
    return tuple(out)
