"""Request bodies -> engine keyword arguments.

The OpenAI request fields pass through to ``create_chat_completion`` /
``create_completion``, which validate them (a bad value raises
ConfigurationException naming the field: a 400 with ``param``), including
``stream_options`` (``include_usage``: a last chunk with the token counts).
``user`` is dropped here; ``model`` is checked against the one model served.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

from .api_errors import ApiError, bad_param

__all__ = ["chat_kwargs", "completion_kwargs", "check_model", "embedding_kwargs"]

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


def embedding_kwargs(body: Mapping[str, Any], model_id: str) -> Dict[str, Any]:
    """Keyword arguments of ``create_embedding``, which validates them."""
    kw = {k: body[k] for k in ("input", "encoding_format", "dimensions") if k in body}
    if kw.get("encoding_format") is None:
        kw.pop("encoding_format", None)
    kw["model"] = model_id
    return kw
