"""Python values to and from the C structs of ``edge_veda.h``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import ConfigurationException, GenerationException
from .extension import ffi, lib
from .results import FinishReason, GenerationStats, TokenLogprob, TopLogprob

if TYPE_CHECKING:
    from .config import GenerationParams

__all__ = [
    "encode",
    "encode_messages",
    "NativeParams",
    "stats_from",
    "logprobs_from",
    "parse_buffer_types",
]


def encode(text: str, what: str, field: Optional[str] = None) -> bytes:
    """``text`` as UTF-8 for a ``char*`` (``what`` names it in errors, whose
    ``field`` is ``field`` or ``what``)."""
    if not isinstance(text, str):
        raise ConfigurationException(
            "Invalid parameter",
            f"{what} must be a str, not {type(text).__name__}",
            field=field or what,
        )
    if "\x00" in text:
        raise ConfigurationException(
            "Invalid parameter", f"{what} must not contain NUL characters", field=field or what
        )
    return text.encode("utf-8", errors="surrogatepass")


def encode_messages(messages: Sequence[Mapping[str, str]]) -> List[Tuple[bytes, bytes]]:
    """Chat messages (``{"role": ..., "content": ...}``) as ``(role, content)`` bytes."""
    pairs: List[Tuple[bytes, bytes]] = []
    for i, m in enumerate(messages):
        try:
            role, content = m["role"], m["content"]
        except (KeyError, TypeError):
            raise ConfigurationException(
                "Invalid parameter",
                f"messages[{i}] must be a mapping with 'role' and 'content'",
                field="messages",
            ) from None
        pairs.append(
            (
                encode(role, f"messages[{i}].role", "messages"),
                encode(content, f"messages[{i}].content", "messages"),
            )
        )
    return pairs


class NativeParams:
    """An ``ev_generation_params`` and everything its pointers point at."""

    __slots__ = ("ptr", "_keep")

    def __init__(self, p: GenerationParams) -> None:
        keep: List[Any] = []
        ptr = ffi.new("ev_generation_params*")
        lib.ev_generation_params_default(ptr)
        ptr.max_tokens = p.max_tokens
        ptr.temperature = p.temperature
        ptr.top_p = p.top_p
        ptr.top_k = p.top_k
        ptr.repeat_penalty = p.repeat_penalty
        ptr.frequency_penalty = p.frequency_penalty
        ptr.presence_penalty = p.presence_penalty
        ptr.confidence_threshold = p.confidence_threshold
        if p.stop:
            strs = [ffi.new("char[]", encode(s, "stop sequence", "stop")) for s in p.stop]
            arr = ffi.new("const char*[]", strs)
            keep += [strs, arr]
            ptr.stop_sequences = arr
            ptr.num_stop_sequences = len(strs)
        if p.grammar:
            g = ffi.new("char[]", encode(p.grammar, "grammar"))
            keep.append(g)
            ptr.grammar_str = g
        if p.grammar_root:
            r = ffi.new("char[]", encode(p.grammar_root, "grammar_root"))
            keep.append(r)
            ptr.grammar_root = r
        if p.seed is not None or p.min_p or p.logprobs or p.logit_bias:
            x = ffi.new("ev_generation_extras*")
            lib.ev_generation_extras_default(x)
            if p.seed is not None:
                x.seed = p.seed
            x.min_p = p.min_p
            if p.logprobs:
                x.top_logprobs = p.top_logprobs
            if p.logit_bias:
                bias = ffi.new("ev_logit_bias[]", len(p.logit_bias))
                for entry, (token, value) in zip(bias, p.logit_bias):
                    entry.token = token
                    entry.bias = value
                keep.append(bias)
                x.logit_bias = bias
                x.num_logit_bias = len(p.logit_bias)
            keep.append(x)
            ptr.reserved = x
        self.ptr = ptr
        self._keep = keep


def stats_from(s: Any) -> GenerationStats:
    return GenerationStats(
        prompt_tokens=int(s.prompt_tokens),
        cached_tokens=int(s.cached_tokens),
        completion_tokens=int(s.generated_tokens),
        prompt_ms=float(s.prompt_ms),
        generation_ms=float(s.generation_ms),
        first_token_ms=float(s.first_token_ms),
        finish_reason=FinishReason.from_native(s.finish_reason),
    )


def _token_bytes(text: Any, length: int) -> Tuple[int, ...]:
    return tuple(ffi.buffer(text, length)[:]) if length else ()


def logprobs_from(lp: Any) -> Tuple[TokenLogprob, ...]:
    """An ``ev_logprobs`` list as TokenLogprob entries (the caller frees it)."""
    out: List[TokenLogprob] = []
    for i in range(lp.num_tokens):
        t = lp.tokens[i]
        top = []
        for j in range(t.num_top):
            a = t.top[j]
            b = _token_bytes(a.text, a.text_len)
            top.append(TopLogprob(_decode(b), float(a.logprob), b))
        b = _token_bytes(t.text, t.text_len)
        out.append(TokenLogprob(_decode(b), float(t.logprob), b, tuple(top)))
    return tuple(out)


def _decode(b: Tuple[int, ...]) -> str:
    return bytes(b).decode("utf-8", errors="replace")


def parse_buffer_types(text: str) -> Dict[str, float]:
    """``ev_model_buffer_types``'s ``"CPU_Mapped 85.8 MiB, CPU_REPACK 57.0 MiB"``
    as ``{"CPU_Mapped": 85.8, "CPU_REPACK": 57.0}``."""
    out: Dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(", "))):
        head, _, unit = part.rpartition(" ")  # "<name> <size> MiB"
        name, _, size = head.rpartition(" ")
        try:
            mib = float(size)
        except ValueError:
            mib = -1.0
        if unit != "MiB" or not name or mib < 0:
            raise GenerationException(  # pragma: no cover - the core's own format
                "Unexpected buffer types", f"cannot read {part!r} of {text!r}"
            )
        out[name] = mib
    return out
