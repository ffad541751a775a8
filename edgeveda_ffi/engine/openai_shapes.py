"""The OpenAI response shapes the engine's results become: the chunk
iterators of ``stream=True`` (``completion_chunks``, ``chat_chunks``), the
``usage`` counts, the two ``logprobs`` shapes and the embedding list. Dicts only; the calls that
produce the results are in ``completions.py``.
"""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, cast

from .chat_format import tool_calls_from_text
from .openai_types import ChatCompletionChunk, CompletionChunk, CreateEmbeddingResponse
from .results import FinishReason

if TYPE_CHECKING:
    from .results import EmbeddingResult, GenerateResult

__all__ = [
    "finish_reason_name",
    "completion_chunks",
    "chat_chunks",
    "usage_counts",
    "token_logprob",
    "chat_logprobs",
    "completion_logprobs",
    "embedding_list",
]


def finish_reason_name(reason: FinishReason) -> str:
    """The OpenAI ``finish_reason`` of an engine FinishReason: ``length`` when
    max_tokens ran out, else ``stop`` (a stop sequence, the end of the text,
    or a cancel: OpenAI's shapes have no cancelled)."""
    return "length" if reason is FinishReason.LENGTH else "stop"


def stream_usage_chunk(head: Dict[str, Any], obj: str, stats: Any) -> Dict[str, Any]:
    """The last chunk of a stream asked for usage: no choices, the counts."""
    usage = usage_counts(stats.prompt_tokens, stats.completion_tokens)
    return {**head, "object": obj, "choices": [], "usage": usage}


def completion_chunks(
    pieces: Any, head: Dict[str, Any], usage: bool = False
) -> Iterator[CompletionChunk]:
    """The chunks of a streamed completion over ``pieces`` (a TokenStream,
    closed when the iterator ends or is closed); with ``usage``, every chunk
    has ``usage: None`` and a last one the counts."""
    head = {**head, "usage": None} if usage else head

    def chunk(text: str, reason: Optional[str]) -> CompletionChunk:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": reason}
        return cast(CompletionChunk, {**head, "object": "text_completion", "choices": [choice]})

    with pieces:
        for piece in pieces:
            yield chunk(str(piece), None)
        stats = pieces.stats
    yield chunk("", finish_reason_name(stats.finish_reason))
    if usage:
        yield cast(CompletionChunk, stream_usage_chunk(head, "text_completion", stats))


def chat_chunks(
    pieces: Any,
    head: Dict[str, Any],
    logprobs: bool,
    tools: Optional[Sequence[Mapping[str, Any]]] = None,
    usage: bool = False,
) -> Iterator[ChatCompletionChunk]:
    """The chunks of a streamed chat completion over ``pieces``.

    With tools offered the answer may be a call, which is known only at the
    end: the text is then sent as one chunk, or as a ``tool_calls`` delta
    with ``finish_reason: "tool_calls"``. ``usage`` as in completion_chunks."""
    head = {**head, "usage": None} if usage else head

    def chunk(delta: Dict[str, Any], reason: Optional[str], lp: Any = None) -> ChatCompletionChunk:
        choice = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": reason}
        return cast(
            ChatCompletionChunk, {**head, "object": "chat.completion.chunk", "choices": [choice]}
        )

    held: List[str] = []
    held_lp: List[Any] = []
    with pieces:
        yield chunk({"role": "assistant", "content": ""}, None)
        for piece in pieces:
            lp = None
            if logprobs:
                lp = {"content": [token_logprob(t) for t in getattr(piece, "logprobs", ())]}
            if tools is None:
                yield chunk({"content": str(piece)}, None, lp)
            else:
                held.append(str(piece))
                held_lp.extend(lp["content"] if lp else ())
        stats = pieces.stats
    reason = finish_reason_name(stats.finish_reason)
    if tools is not None:
        text = "".join(held)
        lp_all = {"content": held_lp} if logprobs else None
        calls = tool_calls_from_text(text, tools)
        if calls:
            deltas = [{"index": i, **call} for i, call in enumerate(calls)]
            yield chunk({"tool_calls": deltas}, None, lp_all)
            reason = "tool_calls"
        else:
            yield chunk({"content": text}, None, lp_all)
    yield chunk({}, reason)
    if usage:
        yield cast(ChatCompletionChunk, stream_usage_chunk(head, "chat.completion.chunk", stats))


def usage_counts(prompt_tokens: int, completion_tokens: int) -> Dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def token_logprob(t: Any) -> Dict[str, Any]:
    return {
        "token": t.token,
        "logprob": t.logprob,
        "bytes": list(t.bytes),
        "top_logprobs": [
            {"token": a.token, "logprob": a.logprob, "bytes": list(a.bytes)} for a in t.top_logprobs
        ],
    }


def chat_logprobs(result: GenerateResult) -> Dict[str, Any]:
    return {"content": [token_logprob(t) for t in (getattr(result, "logprobs", None) or ())]}


def completion_logprobs(result: GenerateResult) -> Dict[str, Any]:
    """The legacy completions shape: parallel lists per token."""
    entries = getattr(result, "logprobs", None) or ()
    offsets: List[int] = []
    pos = 0
    for t in entries:
        offsets.append(pos)
        pos += len(t.token)
    return {
        "tokens": [t.token for t in entries],
        "token_logprobs": [t.logprob for t in entries],
        "top_logprobs": [{a.token: a.logprob for a in t.top_logprobs} for t in entries],
        "text_offset": offsets,
    }


def embedding_list(
    results: Sequence[EmbeddingResult], model: str, encoding_format: str = "float"
) -> CreateEmbeddingResponse:
    """The OpenAI embedding list of ``results`` (in input order); base64 is
    little-endian float32, as OpenAI's (the openai client asks for it)."""

    def encode(vector: Sequence[float]) -> Any:
        if encoding_format == "base64":
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        return list(vector)

    tokens = sum(int(r.token_count) for r in results)
    return cast(
        CreateEmbeddingResponse,
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode(r.embedding)}
                for i, r in enumerate(results)
            ],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
    )
