"""Request bodies -> engine keyword arguments, and embedding responses.

The OpenAI request fields pass through to ``create_chat_completion`` /
``create_completion``, which validate them (a bad value raises
ConfigurationException naming the field: a 400 with ``param``), including
``stream_options`` (``include_usage``: a last chunk with the token counts).
``user`` is dropped here; ``model`` is checked against the one model served.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Dict, List, Mapping, Sequence

from .api_errors import ApiError, bad_param

__all__ = ["chat_kwargs", "completion_kwargs", "check_model", "embedding_inputs", "embeddings_body"]

#: Fields without meaning for one local model; dropped before the engine sees them.
_TRANSPORT_ONLY = ("user", "model")


def check_model(body: Mapping[str, Any], model_id: str) -> str:
    """The model id a request names; 404 ``model_not_found`` for another model."""
    model = body.get("model")
    if model is None:
        return model_id
    if not isinstance(model, str):
        raise bad_param("model", "model must be a string")
    if model != model_id:
        raise ApiError(
            404,
            f"The model '{model}' does not exist; this server serves '{model_id}'",
            param="model",
            code="model_not_found",
        )
    return model


def _common(body: Mapping[str, Any], model_id: str) -> Dict[str, Any]:
    kw = {k: v for k, v in body.items() if k not in _TRANSPORT_ONLY}
    kw["model"] = model_id  # the id in the response's ``model`` field
    stream = kw.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_param("stream", "stream must be a boolean")
    return kw


def chat_kwargs(body: Mapping[str, Any], model_id: str) -> Dict[str, Any]:
    """Keyword arguments of ``create_chat_completion`` (``messages`` included)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_param("messages", "messages must be a non-empty array of messages")
    if not all(isinstance(m, dict) for m in messages):
        raise bad_param("messages", "each message must be an object")
    return _common(body, model_id)


def completion_kwargs(body: Mapping[str, Any], model_id: str) -> Dict[str, Any]:
    """Keyword arguments of ``create_completion`` (``prompt`` included)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # the openai client may send a one-element list
    if not isinstance(prompt, str):
        raise bad_param("prompt", "prompt must be a string (one prompt per request)")
    kw = _common(body, model_id)
    kw["prompt"] = prompt
    return kw


def embedding_inputs(body: Mapping[str, Any]) -> List[str]:
    """The texts of an ``/v1/embeddings`` request (``input``: a string or strings)."""
    raw = body.get("input")
    texts: Sequence[Any] = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    if not texts or not all(isinstance(t, str) for t in texts):
        raise bad_param("input", "input must be a string or a non-empty array of strings")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise bad_param("encoding_format", "encoding_format must be 'float' or 'base64'")
    return list(texts)


def _encode(vector: Sequence[float], fmt: str) -> Any:
    if fmt == "base64":  # little-endian float32, as OpenAI's (the openai client asks for it)
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return list(vector)


def embeddings_body(
    body: Mapping[str, Any], model_id: str, results: Sequence[Any]
) -> Dict[str, Any]:
    """The OpenAI embedding list for ``results`` (EmbeddingResults, in input order)."""
    fmt = body.get("encoding_format") or "float"
    dims = body.get("dimensions")
    if dims is not None and results and dims != results[0].dimensions:
        raise bad_param(
            "dimensions", f"this model's embeddings have {results[0].dimensions} dimensions"
        )
    tokens = sum(int(r.token_count) for r in results)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(r.embedding, fmt)}
            for i, r in enumerate(results)
        ],
        "model": model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
