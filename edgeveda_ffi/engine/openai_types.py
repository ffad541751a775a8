"""TypedDicts of the OpenAI response shapes that ``create_completion``,
``create_chat_completion`` and ``create_embedding`` return (plain dicts at run time; these give type
checkers and readers the keys)."""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Union

if sys.version_info >= (3, 11):  # pragma: no cover - depends on the interpreter
    from typing import NotRequired, TypedDict
else:  # pragma: no cover
    from typing_extensions import NotRequired, TypedDict

__all__ = [
    "Usage",
    "TopLogprobEntry",
    "TokenLogprobEntry",
    "ChatLogprobs",
    "CompletionLogprobs",
    "CompletionChoice",
    "Completion",
    "CompletionChunk",
    "ToolCallFunction",
    "ToolCall",
    "ChatCompletionMessage",
    "ChatCompletionChoice",
    "ChatCompletion",
    "ChatCompletionDelta",
    "ChatCompletionChunkChoice",
    "ChatCompletionChunk",
    "EmbeddingUsage",
    "EmbeddingData",
    "CreateEmbeddingResponse",
]


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprobEntry(TypedDict):
    token: str
    logprob: float
    bytes: List[int]


class TokenLogprobEntry(TypedDict):
    token: str
    logprob: float
    bytes: List[int]
    top_logprobs: List[TopLogprobEntry]


class ChatLogprobs(TypedDict):
    content: List[TokenLogprobEntry]


class CompletionLogprobs(TypedDict):
    tokens: List[str]
    token_logprobs: List[float]
    top_logprobs: List[Dict[str, float]]
    text_offset: List[int]


class CompletionChoice(TypedDict):
    text: str
    index: int
    logprobs: Optional[CompletionLogprobs]
    finish_reason: Optional[str]


class Completion(TypedDict):
    id: str
    object: str  # "text_completion"
    created: int
    model: str
    choices: List[CompletionChoice]
    usage: Usage


class CompletionChunk(TypedDict):
    id: str
    object: str  # "text_completion"
    created: int
    model: str
    choices: List[CompletionChoice]  # empty in the usage chunk
    # with stream_options={"include_usage": True}: None, and set in a last chunk
    usage: NotRequired[Optional[Usage]]


class ToolCallFunction(TypedDict):
    name: str
    arguments: str  # JSON text


class ToolCall(TypedDict):
    id: str
    type: str  # "function"
    function: ToolCallFunction


class ChatCompletionMessage(TypedDict):
    role: str  # "assistant"
    content: Optional[str]
    tool_calls: NotRequired[List[ToolCall]]


class ChatCompletionChoice(TypedDict):
    index: int
    message: ChatCompletionMessage
    logprobs: Optional[ChatLogprobs]
    finish_reason: str  # "stop" | "length" | "tool_calls"


class ChatCompletion(TypedDict):
    id: str
    object: str  # "chat.completion"
    created: int
    model: str
    choices: List[ChatCompletionChoice]
    usage: Usage


class ChatCompletionDelta(TypedDict, total=False):
    role: str
    content: Optional[str]
    tool_calls: List[ToolCall]


class ChatCompletionChunkChoice(TypedDict):
    index: int
    delta: ChatCompletionDelta
    logprobs: Optional[ChatLogprobs]
    finish_reason: Optional[str]


class ChatCompletionChunk(TypedDict):
    id: str
    object: str  # "chat.completion.chunk"
    created: int
    model: str
    choices: List[ChatCompletionChunkChoice]  # empty in the usage chunk
    # with stream_options={"include_usage": True}: None, and set in a last chunk
    usage: NotRequired[Optional[Usage]]


class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


class EmbeddingData(TypedDict):
    object: str  # "embedding"
    index: int
    embedding: Union[List[float], str]  # str: base64 of little-endian float32


class CreateEmbeddingResponse(TypedDict):
    object: str  # "list"
    data: List[EmbeddingData]
    model: str
    usage: EmbeddingUsage
