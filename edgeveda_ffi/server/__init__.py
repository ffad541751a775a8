"""``edgeveda serve``: an OpenAI-compatible HTTP server (the optional extra
``pip install 'edgeveda-ffi[server]'``: Starlette + uvicorn).

    from edgeveda_ffi.server import build_host, run_server
    run_server(build_host("model.gguf", "model.gguf", {}), port=8080)

``create_app(host)`` is the ASGI app, for mounting in another Starlette or
FastAPI application. The server uses only the public API of ``edgeveda_ffi``.
"""

from __future__ import annotations

from .api_errors import ApiError
from .app import create_app
from .host import LOAD_DELAY_ENV, ModelHost
from .runner import build_host, run_server

__all__ = ["ApiError", "ModelHost", "LOAD_DELAY_ENV", "build_host", "create_app", "run_server"]
