"""The server's structured output, tool calls, logprobs and logit_bias,
through the official ``openai`` client: JSON-schema output (validated with
``jsonschema``, integer bounds included), a forced tool call, logprobs, and a
token banned with ``logit_bias``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import jsonschema
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from serve_helpers import Served  # noqa: E402

from edgeveda_ffi import EdgeVeda  # noqa: E402

pytestmark = pytest.mark.smollm2


CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "country": {"type": "string"},
        "population": {"type": "integer", "minimum": 0},
    },
    "required": ["city", "country", "population"],
    "additionalProperties": False,
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def server(smollm2_path: Path) -> Iterator[Served]:
    served = Served(smollm2_path)
    try:
        served.wait_ready()
        yield served
    finally:
        served.terminate()


def test_json_schema_output(server: Served) -> None:
    out = server.client().chat.completions.create(
        model=server.model_id,
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": CITY_SCHEMA, "strict": True},
        },
        max_tokens=128,
        temperature=0,
    )
    data = json.loads(out.choices[0].message.content or "")
    jsonschema.validate(data, CITY_SCHEMA)


def test_json_object_output(server: Served) -> None:
    out = server.client().chat.completions.create(
        model=server.model_id,
        messages=[{"role": "user", "content": "Give me a JSON object about Paris."}],
        response_format={"type": "json_object"},
        max_tokens=256,  # the greedy answer is 159 tokens long
        temperature=0,
    )
    assert out.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(out.choices[0].message.content or ""), dict)


def test_forced_tool_call(server: Served) -> None:
    out = server.client().chat.completions.create(
        model=server.model_id,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=96,
        temperature=0,
    )
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    args = json.loads(calls[0].function.arguments)
    jsonschema.validate(args, WEATHER_TOOL["function"]["parameters"])  # type: ignore[index]


def test_chat_logprobs(server: Served) -> None:
    out = server.client().chat.completions.create(
        model=server.model_id,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        logprobs=True,
        top_logprobs=3,
        max_tokens=8,
        temperature=0,
    )
    content = out.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and len(content) == out.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == out.choices[0].message.content
    for t in content:
        assert t.logprob <= 0.0
        assert 1 <= len(t.top_logprobs) <= 3
        # greedy: the chosen token is the most likely one
        assert t.logprob == pytest.approx(max(a.logprob for a in t.top_logprobs), abs=1e-4)


def test_completion_logprobs(server: Served) -> None:
    out = server.client().completions.create(
        model=server.model_id,
        prompt="The capital of France is",
        logprobs=2,
        max_tokens=6,
        temperature=0,
    )
    lp = out.choices[0].logprobs
    assert lp is not None and lp.tokens and len(lp.tokens) == len(lp.token_logprobs or [])
    assert "".join(lp.tokens) == out.choices[0].text


def test_logit_bias(server: Served, smollm2_engine: EdgeVeda) -> None:
    client = server.client()
    kw = dict(model=server.model_id, prompt="The capital of France is", max_tokens=1, temperature=0)
    plain = client.completions.create(**kw).choices[0].text  # type: ignore[call-overload]
    (token,) = smollm2_engine.tokenize(plain, add_special=False)
    banned = client.completions.create(logit_bias={str(token): -100}, **kw)  # type: ignore[call-overload]
    assert banned.choices[0].text != plain
    chat = client.chat.completions.create(
        model=server.model_id,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        logit_bias={str(token): -100},
        max_tokens=8,
        temperature=0,
    )
    assert token not in smollm2_engine.tokenize(
        chat.choices[0].message.content or "", add_special=False
    )
    for bad in ({str(token): 101}, {"x": 1}, {str(1 << 30): 1}):
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(logit_bias=bad, **kw)  # type: ignore[call-overload]
        assert info.value.body["param"] == "logit_bias", bad  # type: ignore[index]
