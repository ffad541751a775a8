"""The Starlette application: ``/v1/models``, ``/v1/chat/completions``,
``/v1/completions``, ``/v1/embeddings`` (and ``/health``).

Handlers parse the JSON body, check the API key and the model, and hand the
engine work to the :class:`ModelHost` (one thread, requests in order).
Streams are Server-Sent Events: ``data: {chunk}`` lines, then ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .api_errors import ApiError, bad_param, from_exception
from .host import Handoff, ModelHost
from .requests import (
    chat_kwargs,
    check_model,
    completion_kwargs,
    embedding_kwargs,
)

__all__ = ["create_app"]

Handler = Callable[[Request], Awaitable[Response]]


def _error_response(exc: BaseException) -> JSONResponse:
    err = from_exception(exc)
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


#: One encoder for every event (json.dumps with an option builds one per call).
_encode = json.JSONEncoder(ensure_ascii=False).encode


def _sse(data: Any) -> bytes:
    text = data if isinstance(data, str) else _encode(data)
    return f"data: {text}\n\n".encode()


class EventStream(Response):
    """An SSE response of the chunks a :class:`Handoff` brings: ``data:
    {chunk}`` events, then ``data: [DONE]`` (or an error event when the engine
    failed after the 200 went out).

    Chunks that arrived together go out in one send, each its own event. It
    watches the ASGI ``receive`` channel for ``http.disconnect`` while it
    sends (and treats a failed send the same way) and then calls ``on_gone``
    at once, which stops the generation and frees the native stream; it does
    not rely on the framework's disconnect handling, which differs by version.
    """

    media_type = "text/event-stream"

    def __init__(self, chunks: Handoff, first: List[Any], on_gone: Callable[[], None]) -> None:
        super().__init__(
            content=None,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        # streamed: no Content-Length (Response sets one for its empty body)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._chunks = chunks
        self._first = first
        self._on_gone = on_gone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    self._on_gone()
                    return

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            batch, self._first = self._first, []
            while not gone.is_set():
                if batch:
                    body = b"".join(map(_sse, batch))
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                try:
                    batch = await self._chunks.take()
                except Exception as exc:  # noqa: BLE001 - after the 200: an error event
                    body = _sse(from_exception(exc).body())
                    await send({"type": "http.response.body", "body": body, "more_body": False})
                    return
                if not batch:
                    body = _sse("[DONE]")
                    await send({"type": "http.response.body", "body": body, "more_body": False})
                    return
        except OSError:  # the client went away under a send
            self._on_gone()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def _json_body(request: Request) -> Dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_param(None, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_param(None, "the request body must be a JSON object")
    return body


async def _stream_response(host: ModelHost, start: Callable[[Any], Any], prefetch: int) -> Response:
    """Start a stream; its first ``prefetch`` chunks are computed before the
    200 goes out, so an error at the start is still a proper error status."""
    chunks, stop = host.stream(start)
    first: List[Any] = []
    try:
        while len(first) < prefetch:
            batch = await chunks.take(paced=False)
            if not batch:
                break
            first += batch
    except BaseException:
        stop()
        raise
    return EventStream(chunks, first, stop)


def create_app(
    host: ModelHost, api_key: Optional[str] = None, cors_origins: Sequence[str] = ()
) -> Starlette:
    """The ASGI app serving ``host``'s model; ``api_key`` requires
    ``Authorization: Bearer <api_key>`` on every ``/v1`` request.

    ``cors_origins``: the web origins (``"http://localhost:3000"``, or ``"*"``
    for any) whose pages may call the API from a browser (CORS). None by
    default: a page on another origin cannot read the responses, so a web
    site the user visits cannot use the local model."""

    def checked(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                if api_key is not None:
                    auth = request.headers.get("authorization", "")
                    given = auth[7:] if auth[:7].lower() == "bearer " else ""
                    if not hmac.compare_digest(given.encode(), api_key.encode()):
                        raise ApiError(401, "Incorrect API key provided", code="invalid_api_key")
                host.check_ready()
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - every error is an error object
                return _error_response(exc)

        return endpoint

    def model_entry() -> Dict[str, Any]:
        return {
            "id": host.model_id,
            "object": "model",
            "created": host.created,
            "owned_by": "edgeveda",
        }

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [model_entry()]})

    async def get_model(request: Request) -> Response:
        check_model({"model": request.path_params["model"]}, host.model_id)
        return JSONResponse(model_entry())

    async def chat(request: Request) -> Response:
        body = await _json_body(request)
        kw = chat_kwargs(body, check_model(body, host.model_id))
        if kw.get("stream"):
            # the role chunk comes before the native stream starts: take one more
            return await _stream_response(host, lambda e: e.create_chat_completion(**kw), 2)
        return JSONResponse(await host.run(lambda e: e.create_chat_completion(**kw)))

    async def completions(request: Request) -> Response:
        body = await _json_body(request)
        kw = completion_kwargs(body, check_model(body, host.model_id))
        if kw.get("stream"):
            return await _stream_response(host, lambda e: e.create_completion(**kw), 1)
        return JSONResponse(await host.run(lambda e: e.create_completion(**kw)))

    async def embeddings(request: Request) -> Response:
        body = await _json_body(request)
        kw = embedding_kwargs(body, check_model(body, host.model_id))
        return JSONResponse(await host.run(lambda e: e.create_embedding(**kw)))

    async def health(request: Request) -> Response:
        state = host.state()
        return JSONResponse({"status": state}, status_code=200 if state == "ok" else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        host.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, host.close)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", checked(list_models), methods=["GET"]),
        Route("/v1/models/{model:path}", checked(get_model), methods=["GET"]),
        Route("/v1/chat/completions", checked(chat), methods=["POST"]),
        Route("/v1/completions", checked(completions), methods=["POST"]),
        Route("/v1/embeddings", checked(embeddings), methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        # unknown paths and methods get OpenAI error objects too, not plain text
        status = int(getattr(exc, "status_code", 500))
        detail = str(getattr(exc, "detail", "") or exc)
        code = "unknown_url" if status == 404 else None
        return _error_response(ApiError(status, f"{detail}: {request.url.path}", code=code))

    middleware = []
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        )
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={404: http_error, 405: http_error},
    )
