"""``edgeveda serve`` end to end, driven by the official ``openai`` client.

A real server (``python -m edgeveda_ffi serve``) runs in a subprocess on a free
127.0.0.1 port with SmolLM2. Covered: the model list, chat, streaming chat,
completions, embeddings, the error statuses (400 with param, 401, 404, 503
while loading), a client leaving mid-stream followed by concurrent requests
(served in order), SIGTERM, the missing extra, and examples/openai_client.py.
"""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from serve_helpers import REPO, Served  # noqa: E402

pytestmark = pytest.mark.smollm2

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(smollm2_path: Path) -> Iterator[Served]:
    served = Served(smollm2_path)
    try:
        served.wait_ready()
        yield served
    finally:
        served.terminate()


@pytest.fixture()
def client(server: Served):  # -> openai.OpenAI
    return server.client()


def test_models_list(server: Served, client) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [server.model_id]
    assert client.models.retrieve(server.model_id).id == server.model_id


def test_chat(server: Served, client) -> None:
    out = client.chat.completions.create(
        model=server.model_id, messages=CAPITAL, max_tokens=24, temperature=0
    )
    assert out.object == "chat.completion"
    assert out.model == server.model_id
    assert "Paris" in (out.choices[0].message.content or "")
    assert out.choices[0].finish_reason in ("stop", "length")
    assert out.usage is not None and out.usage.completion_tokens > 0


def test_streaming_chat_adds_up_to_the_answer(server: Served, client) -> None:
    kw = dict(model=server.model_id, messages=CAPITAL, max_tokens=32, temperature=0)
    whole = client.chat.completions.create(**kw).choices[0].message.content
    parts: List[str] = []
    reasons = []
    with client.chat.completions.create(stream=True, **kw) as stream:
        for chunk in stream:
            assert chunk.object == "chat.completion.chunk"
            parts.append(chunk.choices[0].delta.content or "")
            reasons.append(chunk.choices[0].finish_reason)
    assert len(parts) > 2
    assert "".join(parts) == whole
    assert reasons[-1] in ("stop", "length") and not any(reasons[:-1])


def test_completions_and_stream(server: Served, client) -> None:
    kw = dict(model=server.model_id, prompt="The capital of France is", max_tokens=8, temperature=0)
    out = client.completions.create(**kw)
    assert out.object == "text_completion"
    assert "Paris" in out.choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw))
    assert streamed == out.choices[0].text


def test_stream_include_usage(server: Served, client) -> None:
    # what LangChain's ChatOpenAI asks for when it streams: the counts in a last chunk
    kw = dict(model=server.model_id, messages=CAPITAL, max_tokens=16, temperature=0)
    whole = client.chat.completions.create(**kw)
    chunks = list(
        client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
    )
    *body, last = chunks
    assert all(c.usage is None and len(c.choices) == 1 for c in body)
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(stream_options={"include_usage": True}, **kw)
    assert info.value.status_code == 400 and info.value.body["param"] == "stream_options"


def test_prompt_longer_than_the_context_is_context_length_exceeded(server: Served, client) -> None:
    long_text = "word " * 2500  # the server's context holds 2048 tokens
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model=server.model_id,
                messages=[{"role": "user", "content": long_text}],
                stream=stream,
            )
        assert info.value.code == "context_length_exceeded"
        assert info.value.body["param"] == "messages"
        assert "context holds 2048" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=server.model_id, prompt=long_text)
    assert info.value.code == "context_length_exceeded" and info.value.body["param"] == "prompt"


def test_embeddings(server: Served, client) -> None:
    one = client.embeddings.create(model=server.model_id, input="hello world")
    assert len(one.data) == 1 and len(one.data[0].embedding) > 100
    assert math.isclose(math.fsum(x * x for x in one.data[0].embedding), 1.0, rel_tol=1e-3)
    many = client.embeddings.create(
        model=server.model_id, input=["hello world", "goodbye"], encoding_format="float"
    )
    assert [d.index for d in many.data] == [0, 1]
    # the client's default (base64) and float agree
    assert many.data[0].embedding == pytest.approx(one.data[0].embedding, abs=1e-6)
    assert many.usage.prompt_tokens > one.usage.prompt_tokens > 0
    for bad, param in (({"input": []}, "input"), ({"input": "x", "dimensions": 7}, "dimensions")):
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(model=server.model_id, **bad)
        assert info.value.body["param"] == param


def test_bad_temperature_is_400_with_param(server: Served, client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=server.model_id, messages=CAPITAL, temperature=-1)
    assert info.value.status_code == 400
    assert info.value.body["param"] == "temperature"
    assert info.value.body["type"] == "invalid_request_error"


def test_bad_stream_request_is_400_before_any_chunk(server: Served, client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=server.model_id, messages=CAPITAL, top_p=7, stream=True
        )
    assert info.value.body["param"] == "top_p"


def test_unknown_path_is_an_error_object(server: Served, client) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.get("/no/such/path", cast_to=object)
    assert info.value.body["code"] == "unknown_url"


def test_n_2_is_400(server: Served, client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=server.model_id, messages=CAPITAL, n=2)
    assert info.value.body["param"] == "n"


def test_bad_json_and_missing_messages_are_400(server: Served, client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=server.model_id, messages=[])
    assert info.value.body["param"] == "messages"
    # a body that is JSON but not an object, through the client's generic post
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/chat/completions", body=["not", "an object"], cast_to=object)
    assert "JSON object" in info.value.message
    if "content" in inspect.signature(client.post).parameters:  # openai >= 2: raw bodies
        with pytest.raises(openai.BadRequestError) as info:
            client.post("/chat/completions", content=b"{nope", cast_to=object)
        assert "not valid JSON" in info.value.message


def test_unknown_model_is_404(server: Served, client) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=CAPITAL)
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def _stream_two_chunks_then_leave(server: Served) -> None:
    client = server.client()
    stream = client.chat.completions.create(
        model=server.model_id,
        messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
        max_tokens=1500,
        temperature=0.8,
        seed=1,
        stream=True,
    )
    it = iter(stream)
    next(it)
    next(it)
    stream.close()  # the client leaves mid-stream


def test_disconnect_mid_stream_frees_the_engine(server: Served, client) -> None:
    # how long the whole answer takes when nobody leaves
    t0 = time.monotonic()
    full = client.chat.completions.create(
        model=server.model_id,
        messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
        max_tokens=1500,
        temperature=0.8,
        seed=1,
    )
    full_s = time.monotonic() - t0
    assert full.usage.completion_tokens > 200, "the prompt must give a long answer"

    _stream_two_chunks_then_leave(server)
    t0 = time.monotonic()
    out = client.chat.completions.create(
        model=server.model_id, messages=CAPITAL, max_tokens=8, temperature=0
    )
    after_s = time.monotonic() - t0
    assert out.choices[0].message.content
    # the left stream did not run on: the next request is served at once
    assert after_s < full_s / 2, (after_s, full_s)

    # then three concurrent clients, started a little apart, all answered in order
    done: List[Tuple[int, float, str]] = []
    errors: List[BaseException] = []

    def ask(i: int) -> None:
        try:
            r = server.client().chat.completions.create(
                model=server.model_id,
                messages=[{"role": "user", "content": f"Say the number {i}."}],
                max_tokens=24,
                temperature=0,
            )
            done.append((i, time.monotonic(), r.choices[0].message.content or ""))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.15)
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(done) == 3 and all(text for _, _, text in done)
    assert [i for i, _, _ in sorted(done, key=lambda d: d[1])] == [0, 1, 2]


def test_api_key(smollm2_path: Path) -> None:
    served = Served(smollm2_path, api_key="sekret")
    try:
        served.wait_ready(api_key="sekret")
        with pytest.raises(openai.AuthenticationError) as info:
            served.client("wrong").models.list()
        assert info.value.status_code == 401
        with pytest.raises(openai.AuthenticationError):
            served.client("wrong").chat.completions.create(
                model=served.model_id, messages=CAPITAL, max_tokens=4
            )
        out = served.client("sekret").chat.completions.create(
            model=served.model_id, messages=CAPITAL, max_tokens=4
        )
        assert out.choices[0].message.content is not None
    finally:
        assert served.terminate() == 0


def test_503_while_loading_then_sigterm(smollm2_path: Path) -> None:
    # LOAD_DELAY_ENV (a documented test hook) holds the load back for 3 s so
    # a request surely arrives while the model is loading.
    served = Served(smollm2_path, env={"EDGEVEDA_SERVE_TEST_LOAD_DELAY": "3"})
    try:
        served.wait_listening()
        with pytest.raises(openai.InternalServerError) as info:
            served.client().chat.completions.create(model=served.model_id, messages=CAPITAL)
        assert info.value.status_code == 503
        assert "loading" in info.value.message
        served.wait_ready()
        # SIGTERM during a stream: the stream ends, the process exits 0 soon
        stream = served.client().chat.completions.create(
            model=served.model_id,
            messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
            max_tokens=1500,
            stream=True,
        )
        next(iter(stream))
        t0 = time.monotonic()
        code = served.terminate(timeout=20)
        took = time.monotonic() - t0
        stream.close()
        assert code == 0
        assert took < 8, took
        err = served.stderr
        assert "local only" in err and "127.0.0.1" in err
    finally:
        served.terminate()


@pytest.mark.parametrize("interval", ["0", "1000"])
def test_stream_interval(smollm2_path: Path, interval: str) -> None:
    """--stream-interval-ms: 0 sends every token at once, 1000 several per
    write; either way one event per piece, adding up to the whole answer."""
    served = Served(smollm2_path, extra=["--stream-interval-ms", interval])
    try:
        served.wait_ready()
        client = served.client()
        kw = dict(model=served.model_id, prompt="Once upon a time", max_tokens=24, temperature=0)
        whole = client.completions.create(**kw).choices[0].text  # type: ignore[call-overload]
        chunks = list(client.completions.create(stream=True, **kw))  # type: ignore[call-overload]
        assert "".join(c.choices[0].text for c in chunks) == whole
        assert sum(1 for c in chunks if c.choices[0].text) >= 10
    finally:
        served.terminate()


@pytest.mark.parametrize("bad", ["-1", "1001", "nan"])
def test_bad_stream_interval_is_a_usage_error(smollm2_path: Path, bad: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgeveda_ffi", "serve", "--model", str(smollm2_path)]
        + ["--stream-interval-ms", bad],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--stream-interval-ms" in proc.stderr and "0 to 1000" in proc.stderr


def test_missing_extra_is_one_line(smollm2_path: Path) -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from edgeveda_ffi.cli import main\n"
        f"sys.exit(main(['serve', '--model', {str(smollm2_path)!r}]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 1
    assert "pip install 'edgeveda-ffi[server]'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_openai_client_example(server: Served) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "openai_client.py")],
        capture_output=True,
        text=True,
        env=dict(os.environ, OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="none"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout
