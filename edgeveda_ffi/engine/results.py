"""Engine results: what a generation, an embedding and a memory query return.

Each class mirrors one C struct of ``edge_veda.h`` (``ev_generation_stats``,
``ev_memory_stats``, ``ev_model_info``, ``ev_stream_token_info``,
``ev_embed_result``, ``ev_token_logprob``), field names in snake_case, so a port
can map them one to one.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Sequence, Tuple

__all__ = [
    "PRESSURE_WARNING_RATIO",
    "PRESSURE_CRITICAL_RATIO",
    "FinishReason",
    "GenerateResult",
    "GenerationStats",
    "MemoryStats",
    "MemoryPressureEvent",
    "ModelInfo",
    "TokenInfo",
    "TokenLogprob",
    "TopLogprob",
    "EmbeddingResult",
]


class FinishReason(str, enum.Enum):
    """Why a generation ended (``ev_finish_reason``)."""

    NONE = "none"
    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    ERROR = "error"

    @classmethod
    def from_native(cls, value: int) -> FinishReason:
        return _FINISH_BY_CODE.get(int(value), cls.NONE)


_FINISH_BY_CODE = {
    0: FinishReason.NONE,
    1: FinishReason.STOP,
    2: FinishReason.LENGTH,
    3: FinishReason.CANCELLED,
    4: FinishReason.ERROR,
}


#: Above this share of the memory limit, :attr:`MemoryStats.is_high_pressure`
#: and :attr:`MemoryPressureEvent.is_warning` are true. (Edge Veda's Dart
#: types use 0.8 for one and 0.75 for the other; here both use one value.)
PRESSURE_WARNING_RATIO = 0.8
#: Above this share, ``is_critical``; the core calls the pressure callbacks
#: from 90 % of the limit.
PRESSURE_CRITICAL_RATIO = 0.9


def _ratio(current: int, limit: int) -> float:
    return current / limit if limit > 0 else 0.0


def _deprecated_ratio(value: float) -> float:
    warnings.warn(
        "usage_percent is deprecated: it is a 0..1 ratio, not a percentage; use usage_ratio",
        DeprecationWarning,
        stacklevel=3,
    )
    return value


@dataclass(frozen=True)
class GenerationStats:
    """``ev_generation_stats``: counts and timings of one generation."""

    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    prompt_ms: float
    generation_ms: float
    first_token_ms: float
    finish_reason: FinishReason

    @property
    def tokens_per_second(self) -> Optional[float]:
        """Generated tokens per second of generation time (None when unmeasurable)."""
        if self.generation_ms <= 0 or self.completion_tokens <= 1:
            return None
        return (self.completion_tokens - 1) / (self.generation_ms / 1000.0)


@dataclass(frozen=True)
class TopLogprob:
    """``ev_top_logprob``: one alternative for a generated token."""

    token: str
    logprob: float
    #: the token's bytes (``token`` is them decoded, a partial UTF-8 character
    #: replaced by U+FFFD)
    bytes: Tuple[int, ...]


@dataclass(frozen=True)
class TokenLogprob:
    """``ev_token_logprob``: a generated token, its logprob and the
    ``top_logprobs`` best alternatives, highest first.

    The distribution is the one greedy decoding picks from: the log-softmax
    of the logits after the grammar mask and the repetition penalties, before
    temperature and top-k / top-p / min-p (see ``edge_veda.h``). With
    temperature 0 the token is ``top_logprobs[0]``.
    """

    token: str
    logprob: float
    bytes: Tuple[int, ...]
    top_logprobs: Tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class GenerateResult:
    """The result of :meth:`EdgeVeda.generate`. ``logprobs``: one entry per
    generated token with ``logprobs=True``, else None."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    stats: GenerationStats
    latency_ms: float = 0.0
    logprobs: Optional[Tuple[TokenLogprob, ...]] = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __str__(self) -> str:
        return self.text


class _LimitUsage:
    """What :class:`MemoryStats` and :class:`MemoryPressureEvent` say of their
    ``current_bytes`` against ``limit_bytes``."""

    current_bytes: int
    limit_bytes: int

    @property
    def usage_ratio(self) -> float:
        """current / limit: 0.5 is half the limit (0 when there is no limit)."""
        return _ratio(self.current_bytes, self.limit_bytes)

    @property
    def usage_percent(self) -> float:
        """Deprecated: :attr:`usage_ratio` (a 0..1 ratio, not a percentage)."""
        return _deprecated_ratio(self.usage_ratio)

    @property
    def is_critical(self) -> bool:
        """Usage above :data:`PRESSURE_CRITICAL_RATIO` of the limit."""
        return self.usage_ratio > PRESSURE_CRITICAL_RATIO


@dataclass(frozen=True)
class MemoryStats(_LimitUsage):
    """``ev_memory_stats``: llama.cpp buffer sizes (not process RSS)."""

    current_bytes: int
    peak_bytes: int
    limit_bytes: int
    model_bytes: int
    context_bytes: int

    @property
    def is_high_pressure(self) -> bool:
        """Usage above :data:`PRESSURE_WARNING_RATIO` of the limit."""
        return self.usage_ratio > PRESSURE_WARNING_RATIO

    def to_dict(self) -> Dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryPressureEvent(_LimitUsage):
    """Delivered to :meth:`EdgeVeda.on_memory_pressure` callbacks (the core
    calls them at 90 % of the limit, ``PRESSURE_CRITICAL_RATIO``)."""

    current_bytes: int
    limit_bytes: int

    @property
    def is_warning(self) -> bool:
        """Usage above :data:`PRESSURE_WARNING_RATIO` of the limit (as
        :attr:`MemoryStats.is_high_pressure`)."""
        return self.usage_ratio > PRESSURE_WARNING_RATIO


@dataclass(frozen=True)
class ModelInfo:
    """``ev_model_info``. ``context_length`` is the context size in use."""

    name: str
    architecture: str
    num_parameters: int
    context_length: int
    embedding_dim: int
    num_layers: int


@dataclass(frozen=True)
class TokenInfo:
    """``ev_stream_token_info`` for the latest streamed piece."""

    confidence: float
    avg_confidence: float
    needs_cloud_handoff: bool
    token_index: int


@dataclass(frozen=True)
class EmbeddingResult:
    """An L2-normalized embedding."""

    embedding: Sequence[float] = field(repr=False)
    dimensions: int = 0
    token_count: int = 0
