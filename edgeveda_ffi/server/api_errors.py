"""OpenAI-style error objects: ``{"error": {"message", "type", "param", "code"}}``.

Every failure the server reports goes through :class:`ApiError`, so clients
(the official ``openai`` package included) get the status code and the error
type they expect: 400 for a bad parameter (``param`` names it), 401 for a bad
API key, 404 for an unknown model, 503 while the model loads or the server
stops, 500 when the engine fails.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .. import (
    CONTEXT_LENGTH_EXCEEDED,
    ConfigurationException,
    EdgeVedaException,
    EngineClosedException,
    MemoryException,
)

__all__ = ["ApiError", "from_exception", "bad_param", "unavailable"]


class ApiError(Exception):
    """An error answered as an OpenAI error object with HTTP ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: Optional[str] = None,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> Dict[str, Any]:
        """The JSON body (also the ``data:`` of an error event in a stream)."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_param(param: Optional[str], message: str, code: str = "invalid_value") -> ApiError:
    """A 400 for request field ``param``."""
    return ApiError(400, message, param=param, code=code)


def _engine_message(exc: EdgeVedaException) -> str:
    return f"{exc.message}: {exc.details}" if exc.details else exc.message


def from_exception(exc: BaseException) -> ApiError:
    """The ApiError for an exception raised while serving a request."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ConfigurationException):
        field = getattr(exc, "field", None)
        if exc.message == CONTEXT_LENGTH_EXCEEDED:
            return bad_param(field, _engine_message(exc), code="context_length_exceeded")
        return bad_param(field, _engine_message(exc))
    if isinstance(exc, EngineClosedException):
        return unavailable("the model is not loaded (the server is stopping)")
    if isinstance(exc, MemoryException):
        return ApiError(500, _engine_message(exc), type="server_error", code="out_of_memory")
    if isinstance(exc, EdgeVedaException):
        return ApiError(500, _engine_message(exc), type="server_error", code=type(exc).__name__)
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error")


def unavailable(message: str) -> ApiError:
    """A 503: the model is loading, failed to load, or the server is stopping."""
    return ApiError(503, message, type="server_error", code="model_not_ready")
