"""The OpenAI shapes over the engine: ``create_completion`` and
``create_chat_completion`` (and ``create_embedding``, ``engine(prompt)``), with
llama-cpp-python's names.

They return plain dicts in the shapes of the OpenAI API (``id``, ``object``,
``created``, ``model``, ``choices``, ``usage``; typed as the TypedDicts of
``openai_types.py``), and with ``stream=True`` an iterator of the chunk
shapes. Everything runs on the engine's own calls (``generate``, ``stream``,
``apply_chat_template``): the model's chat template, stop sequences, seeds and
cancel behave as there; closing a stream's iterator frees the native stream.

Parameters the engine does not have (``n`` > 1, ``best_of``, ...) raise
ConfigurationException naming them rather than being ignored.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterator,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    cast,
)

from ..errors import CONTEXT_LENGTH_EXCEEDED, ConfigurationException
from .chat_format import render_messages, tool_calls_from_text, tools_system_prompt
from .openai_shapes import (
    chat_chunks,
    chat_logprobs,
    completion_chunks,
    completion_logprobs,
    embedding_list,
    finish_reason_name,
    usage_counts,
)
from .openai_types import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    CreateEmbeddingResponse,
)

if TYPE_CHECKING:
    from .config import GenerationParams
    from .results import EmbeddingResult, GenerateResult

__all__ = ["OpenAICompatible", "finish_reason_name"]

# how the core words that case (native/src/generation.cpp)
_CORE_CONTEXT_FULL = "tokens but the context holds"

#: OpenAI request fields that map onto GenerationParams one to one.
_SAME_NAME = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repeat_penalty",
    "seed",
)
#: Accepted for compatibility and without effect on one local model.
_IGNORED = ("user", "model", "store", "metadata", "service_tier", "parallel_tool_calls")


def _unsupported(field: str, why: str) -> ConfigurationException:
    return ConfigurationException("Unsupported parameter", f"{field}: {why}", field=field)


class OpenAICompatible:
    """The OpenAI-shaped methods of :class:`EdgeVeda` (a mixin over its
    ``generate``, ``stream``, ``apply_chat_template`` and ``config``)."""

    if TYPE_CHECKING:  # provided by EdgeVeda
        config: Any
        defaults: GenerationParams

        def generate(
            self, prompt: str, params: Optional[GenerationParams] = None, **kw: Any
        ) -> GenerateResult: ...

        def stream(
            self, prompt: str, params: Optional[GenerationParams] = None, **kw: Any
        ) -> Any: ...

        def apply_chat_template(
            self, messages: Sequence[Mapping[str, str]], add_assistant: bool = True
        ) -> str: ...

        def embed(self, text: str) -> EmbeddingResult: ...

    def __call__(self, prompt: str, **kwargs: Any) -> Union[Completion, Iterator[CompletionChunk]]:
        """``engine(prompt, ...)`` is :meth:`create_completion`, as ``Llama(...)``
        is in llama-cpp-python."""
        return self.create_completion(prompt, **kwargs)

    # ------------------------------------------------------------ completions

    def create_completion(
        self,
        prompt: str,
        *,
        max_tokens: Optional[int] = 16,
        stop: Union[str, Sequence[str], None] = None,
        stream: bool = False,
        logprobs: Optional[int] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        grammar: Optional[str] = None,
        n: int = 1,
        stream_options: Optional[Mapping[str, Any]] = None,
        **sampling: Any,
    ) -> Union[Completion, Iterator[CompletionChunk]]:
        """``/v1/completions``: complete ``prompt`` (raw text, no template).

        ``max_tokens`` defaults to 16 as OpenAI's; None means the engine's
        default. ``logprobs=k`` (0..20) adds the legacy completions
        ``logprobs`` object. ``stream_options={"include_usage": True}`` (with
        ``stream=True``) ends the stream with a chunk whose ``choices`` is
        empty and whose ``usage`` is set (``None`` in the chunks before it).
        Other keywords: temperature, top_p, top_k, min_p,
        frequency/presence/repeat_penalty, seed, and ``logit_bias`` (token id
        -> -100..100, added to the logit; -100 bans the token).
        """
        usage = _include_usage(stream_options, stream)
        params = self._openai_params(
            sampling,
            max_tokens=max_tokens,
            stop=stop,
            n=n,
            grammar=grammar,
            response_format=response_format,
            logprobs=logprobs is not None,
            top_logprobs=logprobs,
        )
        head = self._head("cmpl", sampling.get("model"))
        with _core_errors_named("prompt"):
            if stream:
                # the native stream starts here, so a closed engine or a bad
                # parameter raises now, not at the first next()
                return completion_chunks(self.stream(prompt, params), head, usage)
            result = self.generate(prompt, params)
        choice: Dict[str, Any] = {
            "text": result.text,
            "index": 0,
            "logprobs": completion_logprobs(result) if logprobs is not None else None,
            "finish_reason": finish_reason_name(result.finish_reason),
        }
        out: Dict[str, Any] = {
            **head,
            "object": "text_completion",
            "choices": [choice],
            "usage": usage_counts(result.prompt_tokens, result.completion_tokens),
        }
        return cast(Completion, out)

    # -------------------------------------------------------- chat completions

    def create_chat_completion(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: Optional[int] = None,
        stop: Union[str, Sequence[str], None] = None,
        stream: bool = False,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        tool_choice: Union[str, Mapping[str, Any], None] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        logprobs: bool = False,
        top_logprobs: Optional[int] = None,
        n: int = 1,
        max_completion_tokens: Optional[int] = None,
        stream_options: Optional[Mapping[str, Any]] = None,
        **sampling: Any,
    ) -> Union[ChatCompletion, Iterator[ChatCompletionChunk]]:
        """``/v1/chat/completions``: answer ``messages`` with the model's chat template.

        ``tools``/``tool_choice`` in the OpenAI shape: a forced or required tool
        constrains the output to a call (``message.tool_calls``,
        ``finish_reason: "tool_calls"``); ``"auto"`` lets the model answer or
        call. ``response_format`` takes ``{"type": "json_object"}`` or a
        ``json_schema``. ``max_tokens`` None means the engine's default.
        ``stream_options={"include_usage": True}`` as in :meth:`create_completion`.
        """
        usage = _include_usage(stream_options, stream)
        if max_completion_tokens is not None:
            max_tokens = max_completion_tokens
        tool_grammar, tool_prompt = _tool_setup(tools, tool_choice)
        if tool_grammar is not None and response_format is not None:
            raise ConfigurationException(
                "Invalid parameter",
                "response_format and a forced tool call cannot be combined",
                field="response_format",
            )
        params = self._openai_params(
            sampling,
            max_tokens=max_tokens,
            stop=stop,
            n=n,
            grammar=tool_grammar,
            response_format=response_format,
            logprobs=bool(logprobs),
            top_logprobs=top_logprobs if logprobs else None,
        )
        prompt = self.apply_chat_template(render_messages(messages, tool_prompt))
        head = self._head("chatcmpl", sampling.get("model"))
        wants_tools = tool_prompt is not None
        with _core_errors_named("messages"):
            if stream:
                tools_offered = tools if wants_tools else None
                pieces = self.stream(prompt, params)
                return chat_chunks(pieces, head, bool(logprobs), tools_offered, usage)
            result = self.generate(prompt, params)
        message: Dict[str, Any] = {"role": "assistant", "content": result.text}
        reason = finish_reason_name(result.finish_reason)
        calls = tool_calls_from_text(result.text, tools) if wants_tools else None
        if calls:
            message = {"role": "assistant", "content": None, "tool_calls": calls}
            reason = "tool_calls"
        choice: Dict[str, Any] = {
            "index": 0,
            "message": message,
            "logprobs": chat_logprobs(result) if logprobs else None,
            "finish_reason": reason,
        }
        out: Dict[str, Any] = {
            **head,
            "object": "chat.completion",
            "choices": [choice],
            "usage": usage_counts(result.prompt_tokens, result.completion_tokens),
        }
        return cast(ChatCompletion, out)

    # -------------------------------------------------------------- embeddings

    def create_embedding(
        self,
        input: Union[str, Sequence[str]],
        *,
        model: Optional[str] = None,
        dimensions: Optional[int] = None,
        encoding_format: str = "float",
        user: Optional[str] = None,
    ) -> CreateEmbeddingResponse:
        """``/v1/embeddings``: one L2-normalized embedding per text of ``input``
        (a string or a list of strings), in order, with llama-cpp-python's name.

        ``dimensions`` may only repeat the model's own size (nothing is
        truncated); ``encoding_format="base64"`` gives each vector as base64 of
        little-endian float32, as OpenAI's API does. ``user`` is accepted and
        has no effect.
        """
        texts = [input] if isinstance(input, str) else input
        if (
            not isinstance(texts, (list, tuple))
            or not texts
            or not all(isinstance(t, str) for t in texts)
        ):
            raise ConfigurationException(
                "Invalid parameter",
                "input must be a string or a non-empty list of strings",
                field="input",
            )
        if encoding_format not in ("float", "base64"):
            raise ConfigurationException(
                "Invalid parameter",
                "encoding_format must be 'float' or 'base64'",
                field="encoding_format",
            )
        results = [self.embed(text) for text in texts]
        if dimensions is not None and dimensions != results[0].dimensions:
            raise _unsupported(
                "dimensions", f"this model's embeddings have {results[0].dimensions} dimensions"
            )
        return embedding_list(results, model or self._model_name(), encoding_format)

    # ------------------------------------------------------------ parameters

    def _model_name(self) -> str:
        return os.path.basename(str(self.config.model_path))

    def _head(self, kind: str, model: Optional[str]) -> Dict[str, Any]:
        return {
            "id": f"{kind}-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": model or self._model_name(),
        }

    def _openai_params(
        self,
        sampling: Dict[str, Any],
        *,
        max_tokens: Optional[int],
        stop: Union[str, Sequence[str], None],
        n: int,
        grammar: Optional[str],
        response_format: Optional[Mapping[str, Any]],
        logprobs: bool,
        top_logprobs: Optional[int],
    ) -> GenerationParams:
        from .config import GenerationParams

        if n != 1:
            raise _unsupported("n", "one choice per request (n=1)")
        kw: Dict[str, Any] = {}
        for name, value in sampling.items():
            if name in _IGNORED:
                continue
            if name == "logit_bias":
                if value is not None:
                    kw["logit_bias"] = _openai_logit_bias(value)
                continue
            if name not in _SAME_NAME:
                raise _unsupported(name, "not a parameter of this engine")
            if value is not None:
                kw[name] = value
        if max_tokens is not None:
            kw["max_tokens"] = max_tokens
        if stop is not None:
            kw["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        format_grammar = _response_format_grammar(response_format)
        if grammar is not None and format_grammar is not None:
            raise ConfigurationException(
                "Invalid parameter",
                "grammar and response_format exclude each other",
                field="response_format",
            )
        if grammar is not None or format_grammar is not None:
            kw["grammar"] = grammar if grammar is not None else format_grammar
        if logprobs:
            kw.update(_logprob_params(top_logprobs))
        return GenerationParams.from_kwargs(self.defaults, **kw)


@contextlib.contextmanager
def _core_errors_named(field: str) -> Iterator[None]:
    """The core's errors that name no field, as OpenAI reports them: a prompt
    longer than the context is :data:`CONTEXT_LENGTH_EXCEEDED` on ``field``; a
    ``logit_bias`` token outside the vocabulary is on ``logit_bias``."""
    try:
        yield
    except ConfigurationException as exc:
        details = exc.details or ""
        if exc.field is None and _CORE_CONTEXT_FULL in details:
            raise ConfigurationException(
                CONTEXT_LENGTH_EXCEEDED, exc.details, exc, field=field
            ) from exc
        if exc.field is None and "logit_bias" in details:
            raise ConfigurationException(exc.message, details, exc, field="logit_bias") from exc
        raise


def _include_usage(stream_options: Optional[Mapping[str, Any]], stream: bool) -> bool:
    """``stream_options["include_usage"]``, checked as OpenAI does."""
    if stream_options is None:
        return False
    if not isinstance(stream_options, Mapping):
        raise ConfigurationException(
            "Invalid parameter", "stream_options must be an object", field="stream_options"
        )
    if not stream:
        raise ConfigurationException(
            "Invalid parameter",
            "stream_options is only allowed with stream=True",
            field="stream_options",
        )
    for key, value in stream_options.items():
        if key not in (
            "include_usage",
            "include_obfuscation",
        ):  # the latter: padding, no effect here
            raise _unsupported("stream_options", f"unknown option {key!r}")
        if not isinstance(value, bool):
            raise ConfigurationException(
                "Invalid parameter",
                f"stream_options.{key} must be a boolean",
                field="stream_options",
            )
    return bool(stream_options.get("include_usage", False))


def _response_format_grammar(response_format: Optional[Mapping[str, Any]]) -> Optional[str]:
    if response_format is None:
        return None
    from .json_schema import response_format_grammar

    grammar: Optional[str] = response_format_grammar(response_format)
    return grammar


def _tool_setup(
    tools: Optional[Sequence[Mapping[str, Any]]], tool_choice: Union[str, Mapping[str, Any], None]
) -> Tuple[Optional[str], Optional[str]]:
    """The grammar of a forced call (None when the model may answer freely)
    and the system text that describes the tools (None without tools)."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise ConfigurationException(
                "Invalid parameter", "tool_choice needs tools", field="tool_choice"
            )
        return None, None
    from .tools import tool_call_gbnf

    choice = "auto" if tool_choice is None else tool_choice
    if choice == "none":
        return None, None
    return tool_call_gbnf(tools, choice), tools_system_prompt(tools)


def _openai_logit_bias(value: Any) -> Tuple[Tuple[Any, float], ...]:
    """OpenAI's ``logit_bias`` (token id, a string in JSON, -> -100..100) as
    ``GenerationParams.logit_bias``: -100 bans the token, as OpenAI documents
    (-inf here); other values are added to the logit as given."""
    if not isinstance(value, Mapping):
        raise ConfigurationException(
            "Invalid parameter",
            "logit_bias must be an object mapping token ids to numbers from -100 to 100",
            field="logit_bias",
        )
    out = []
    for token, bias in value.items():
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
            raise ConfigurationException(
                "Invalid parameter",
                f"logit_bias[{token!r}]={bias!r}: must be a number from -100 to 100",
                field="logit_bias",
            )
        out.append((token, float("-inf") if bias <= -100 else float(bias)))
    return tuple(out)  # GenerationParams checks the token ids (ints or decimal strings)


def _logprob_params(top_logprobs: Optional[int]) -> Dict[str, Any]:
    return {"logprobs": True, "top_logprobs": 0 if top_logprobs is None else top_logprobs}
