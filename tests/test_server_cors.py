"""``edgeveda serve --cors-origin``: which web pages may call the API from a browser.

Two real servers on 127.0.0.1: one with two allowed origins and an API key, one
without the flag. The browser's side of CORS is its requests' ``Origin``
header and the preflight ``OPTIONS`` request; they are sent here with the HTTP
client the openai package is built on, and the API calls themselves with the
openai client (its ``default_headers`` carry the ``Origin``).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Tuple

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from serve_helpers import REPO, Served  # noqa: E402

pytestmark = pytest.mark.smollm2

ALLOWED = "http://localhost:3000"
OTHER_ALLOWED = "https://app.example"


def _http() -> Any:
    for name in ("httpx2", "httpx"):  # whichever the installed openai package uses
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.skip("neither httpx2 nor httpx is installed")


@pytest.fixture(scope="module")
def servers(smollm2_path: Path) -> Iterator[Tuple[Served, Served]]:
    cors = Served(
        smollm2_path,
        api_key="k",
        extra=["--cors-origin", ALLOWED, "--cors-origin", OTHER_ALLOWED + "/"],
    )
    plain = Served(smollm2_path)
    try:
        cors.wait_ready(api_key="k")
        plain.wait_ready()
        yield cors, plain
    finally:
        cors.terminate()
        plain.terminate()
    assert f"browsers may call it from {ALLOWED}, {OTHER_ALLOWED}" in cors.stderr


def _preflight(served: Served, origin: str) -> Any:
    return _http().options(
        f"{served.base_url}/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=30,
    )


def test_preflight_of_an_allowed_origin(servers: Tuple[Served, Served]) -> None:
    cors, _ = servers
    for origin in (ALLOWED, OTHER_ALLOWED):
        response = _preflight(cors, origin)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert "POST" in response.headers["access-control-allow-methods"]


def test_preflight_of_another_origin_is_refused(servers: Tuple[Served, Served]) -> None:
    cors, plain = servers
    for served in (cors, plain):
        response = _preflight(served, "https://evil.example")
        assert "access-control-allow-origin" not in response.headers
        assert response.status_code in (400, 405)


def test_api_calls_carry_the_header_only_for_allowed_origins(
    servers: Tuple[Served, Served],
) -> None:
    cors, plain = servers
    raw = cors.client("k", default_headers={"Origin": ALLOWED}).models.with_raw_response.list()
    assert raw.headers["access-control-allow-origin"] == ALLOWED
    assert raw.parse().data[0].id == cors.model_id
    chat = cors.client("k", default_headers={"Origin": ALLOWED}).chat.completions
    answer = chat.with_raw_response.create(
        model=cors.model_id,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=8,
        temperature=0,
    )
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert "Paris" in (answer.parse().choices[0].message.content or "")
    # the API key still holds for an allowed origin
    with pytest.raises(openai.AuthenticationError):
        cors.client("wrong", default_headers={"Origin": ALLOWED}).models.list()
    for served, key, origin in ((cors, "k", "https://evil.example"), (plain, "none", ALLOWED)):
        raw = served.client(key, default_headers={"Origin": origin}).models.with_raw_response.list()
        assert "access-control-allow-origin" not in raw.headers


@pytest.mark.parametrize(
    "origin", ["localhost:3000", "http://localhost:3000/app", "ftp://x", "http://h:port"]
)
def test_bad_origin_is_a_usage_error(origin: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgeveda_ffi", "serve", "--cors-origin", origin],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--cors-origin {origin}: not a web origin" in lines[0]
