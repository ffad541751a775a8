"""The OpenAI shapes (``create_completion``, ``create_chat_completion``) on a
real model: keys and types, usage counts, streaming chunks that add up to the
blocking answer, stop sequences, seeds, tool messages, and a typed error for
every parameter the engine does not have."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from edgeveda_ffi import ConfigurationException, EdgeVeda

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def _check_head(out: Dict[str, Any], obj: str, prefix: str) -> None:
    assert out["object"] == obj
    assert out["id"].startswith(prefix) and len(out["id"]) > len(prefix) + 8
    assert isinstance(out["created"], int) and out["created"] > 1_600_000_000
    assert out["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_chat_completion_shape_and_usage(smollm2_engine: EdgeVeda) -> None:
    out = smollm2_engine.create_chat_completion(QUESTION, max_tokens=16, temperature=0)
    _check_head(out, "chat.completion", "chatcmpl-")  # type: ignore[arg-type]
    (choice,) = out["choices"]  # type: ignore[index]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert "Paris" in choice["message"]["content"]
    assert choice["logprobs"] is None and "tool_calls" not in choice["message"]
    usage = out["usage"]  # type: ignore[index]
    same = smollm2_engine.chat(QUESTION, max_tokens=16, temperature=0)
    assert usage["prompt_tokens"] == same.prompt_tokens
    assert usage["completion_tokens"] == same.completion_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_completion_shape_length_and_stop(smollm2_engine: EdgeVeda) -> None:
    out = smollm2_engine.create_completion("The capital of France is", max_tokens=6, temperature=0)
    _check_head(out, "text_completion", "cmpl-")  # type: ignore[arg-type]
    (choice,) = out["choices"]  # type: ignore[index]
    raw = smollm2_engine.generate("The capital of France is", max_tokens=6, temperature=0)
    assert choice["text"] == raw.text and "Paris" in choice["text"]
    assert choice["finish_reason"] == "length" and out["usage"]["completion_tokens"] == 6  # type: ignore[index]
    stopped = smollm2_engine.create_completion(
        "The capital of France is", max_tokens=16, temperature=0, stop=["."]
    )
    text = stopped["choices"][0]["text"]  # type: ignore[index]
    assert "." not in text and "Paris" in text
    assert stopped["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]


def test_chat_stream_chunks_add_up_to_the_answer(smollm2_engine: EdgeVeda) -> None:
    whole = smollm2_engine.create_chat_completion(QUESTION, max_tokens=16, temperature=0)
    chunks: List[Any] = list(
        smollm2_engine.create_chat_completion(QUESTION, max_tokens=16, temperature=0, stream=True)
    )
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]  # type: ignore[index]


def test_completion_stream_and_early_close_frees_the_stream(smollm2_engine: EdgeVeda) -> None:
    chunks = smollm2_engine.create_completion(
        "Once upon a time", max_tokens=40, temperature=0, stream=True
    )
    first = next(chunks)  # type: ignore[call-overload]
    assert first["object"] == "text_completion" and first["choices"][0]["text"]
    chunks.close()  # type: ignore[union-attr]
    # the native stream is gone: the next request runs at once
    again = smollm2_engine.create_completion("Once upon a time", max_tokens=3, temperature=0)
    assert again["usage"]["completion_tokens"] == 3  # type: ignore[index]


def test_stream_include_usage_ends_with_the_counts(smollm2_engine: EdgeVeda) -> None:
    # OpenAI's stream_options.include_usage: usage None in every chunk, then a
    # last chunk with no choices and the same counts as the whole answer
    opts = {"include_usage": True}
    for create, args, obj in (
        (smollm2_engine.create_chat_completion, QUESTION, "chat.completion.chunk"),
        (smollm2_engine.create_completion, "The capital of France is", "text_completion"),
    ):
        whole: Any = create(args, max_tokens=12, temperature=0)  # type: ignore[operator]
        chunks: List[Any] = list(
            create(args, max_tokens=12, temperature=0, stream=True, stream_options=opts)  # type: ignore[operator]
        )
        *body, last = chunks
        assert all(c["usage"] is None and len(c["choices"]) == 1 for c in body)
        assert body[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        assert last["object"] == obj and last["id"] == body[0]["id"]
        assert last["choices"] == [] and last["usage"] == whole["usage"]
        assert last["usage"]["completion_tokens"] > 0
        # without the option the chunks have no usage key at all
        plain: List[Any] = list(create(args, max_tokens=3, temperature=0, stream=True))  # type: ignore[operator]
        assert all("usage" not in c for c in plain)


@pytest.mark.parametrize(
    "options,stream,details",
    [
        ({"include_usage": True}, False, "only allowed with stream=True"),
        ("yes", True, "must be an object"),
        ({"include_usage": 1}, True, "must be a boolean"),
        ({"include_costs": True}, True, "unknown option 'include_costs'"),
    ],
)
def test_bad_stream_options(
    smollm2_engine: EdgeVeda, options: Any, stream: bool, details: str
) -> None:
    with pytest.raises(ConfigurationException) as info:
        smollm2_engine.create_chat_completion(
            QUESTION, max_tokens=2, stream=stream, stream_options=options
        )
    assert info.value.field == "stream_options"
    assert details in (info.value.details or ""), info.value.details
    # nothing was started: the engine serves the next call
    assert smollm2_engine.create_completion("Hi", max_tokens=1)["usage"]["completion_tokens"] == 1  # type: ignore[index]


def test_prompt_longer_than_the_context_names_the_field(smollm2_engine: EdgeVeda) -> None:
    # OpenAI's context_length_exceeded: the field is prompt / messages, the
    # core's explanation (token counts) stays in details
    from edgeveda_ffi import CONTEXT_LENGTH_EXCEEDED

    long_text = "word " * 600  # the session engine's context holds 512
    calls = [
        ("prompt", lambda s: smollm2_engine.create_completion(long_text, stream=s)),
        (
            "messages",
            lambda s: smollm2_engine.create_chat_completion(
                [{"role": "user", "content": long_text}], stream=s
            ),
        ),
    ]
    for field, call in calls:
        for stream in (False, True):
            with pytest.raises(ConfigurationException) as info:
                call(stream)
            assert info.value.message == CONTEXT_LENGTH_EXCEEDED
            assert info.value.field == field
            assert "but the context holds 512" in (info.value.details or "")
    # nothing is left open: the next call runs
    assert smollm2_engine.create_completion("Hi", max_tokens=1)["usage"]["completion_tokens"] == 1  # type: ignore[index]


def test_seed_makes_sampling_reproducible(smollm2_engine: EdgeVeda) -> None:
    def run() -> str:
        out = smollm2_engine.create_chat_completion(
            [{"role": "user", "content": "Tell me a story."}],
            max_tokens=24,
            temperature=1.0,
            seed=1234,
        )
        return str(out["choices"][0]["message"]["content"])  # type: ignore[index]

    assert run() == run()


def test_tool_and_developer_messages_are_rendered(smollm2_engine: EdgeVeda) -> None:
    messages = [
        {"role": "developer", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]
    from edgeveda_ffi.engine.chat_format import render_messages

    rendered = render_messages(messages)
    assert rendered[0] == {"role": "system", "content": "You are terse."}
    assert rendered[1]["content"] == "Weather in Paris?"
    assert rendered[2]["content"] == '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert rendered[3] == {"role": "tool", "content": '[result of call_1] {"temp_c": 21}'}
    out = smollm2_engine.create_chat_completion(messages, max_tokens=8, temperature=0)
    assert out["choices"][0]["message"]["role"] == "assistant"  # type: ignore[index]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": 2}, "n"),
        ({"best_of": 2}, "best_of"),
        ({"logit_bias": {"1": 500}}, "logit_bias"),
        ({"temperature": -1}, "temperature"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_unsupported_or_bad_parameters_name_their_field(
    smollm2_engine: EdgeVeda, kwargs: Dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationException) as info:
        smollm2_engine.create_chat_completion(QUESTION, **kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    "messages",
    [
        "hello",
        [{"role": "robot", "content": "x"}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        [42],
    ],
)
def test_bad_messages_are_configuration_errors(smollm2_engine: EdgeVeda, messages: Any) -> None:
    with pytest.raises(ConfigurationException) as info:
        smollm2_engine.create_chat_completion(messages)
    assert info.value.field == "messages"


# ------------------------------------------------------------------ structured output, tools

LOCATION = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "country": {"type": "string", "maxLength": 20},
    },
    "required": ["city", "country"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}


def test_response_format_json_schema_output_validates(smollm2_engine: EdgeVeda) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the [test] extra")
    out = smollm2_engine.create_chat_completion(
        [{"role": "user", "content": "Where is the Eiffel tower? Answer as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "loc", "schema": LOCATION}},
        temperature=0,
        max_tokens=60,
    )
    choice = out["choices"][0]  # type: ignore[index]
    assert choice["finish_reason"] == "stop"
    value = json.loads(choice["message"]["content"])
    jsonschema.validate(value, LOCATION)
    obj = smollm2_engine.create_chat_completion(
        [{"role": "user", "content": "Give me a JSON object about Paris."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=80,
    )
    content = obj["choices"][0]["message"]["content"]  # type: ignore[index]
    if obj["choices"][0]["finish_reason"] == "stop":  # type: ignore[index]
        assert isinstance(json.loads(content), dict)
    else:  # cut by max_tokens: still the start of an object
        assert content.lstrip().startswith("{")


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_forced_tool_call_comes_back_as_tool_calls(smollm2_engine: EdgeVeda, choice: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the [test] extra")
    out = smollm2_engine.create_chat_completion(
        [{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL, TIME_TOOL] if choice == "required" else [TIME_TOOL, WEATHER_TOOL],
        tool_choice=choice,
        temperature=0,
        max_tokens=60,
    )
    c = out["choices"][0]  # type: ignore[index]
    assert c["finish_reason"] == "tool_calls" and c["message"]["content"] is None
    (call,) = c["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    name = call["function"]["name"]
    assert name in ("get_weather", "get_time")
    if isinstance(choice, dict):
        assert name == "get_weather"
    tool = WEATHER_TOOL if name == "get_weather" else TIME_TOOL
    arguments = json.loads(call["function"]["arguments"])  # a JSON string, as OpenAI's
    jsonschema.validate(arguments, tool["function"]["parameters"])  # type: ignore[index]


def test_tool_choice_none_and_auto_may_answer(smollm2_engine: EdgeVeda) -> None:
    for choice in ("none", "auto"):
        out = smollm2_engine.create_chat_completion(
            [{"role": "user", "content": "Say hello."}],
            tools=[WEATHER_TOOL],
            tool_choice=choice,
            temperature=0,
            max_tokens=20,
        )
        c = out["choices"][0]  # type: ignore[index]
        assert c["finish_reason"] in ("stop", "length", "tool_calls")
        if c["finish_reason"] != "tool_calls":
            assert isinstance(c["message"]["content"], str) and c["message"]["content"]


def test_tool_errors_are_typed(smollm2_engine: EdgeVeda) -> None:
    with pytest.raises(ConfigurationException) as info:
        smollm2_engine.create_chat_completion(
            QUESTION,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert info.value.field == "tool_choice"
    with pytest.raises(ConfigurationException) as info:
        smollm2_engine.create_chat_completion(
            QUESTION,
            tools=[WEATHER_TOOL],
            tool_choice="required",
            response_format={"type": "json_object"},
        )
    assert info.value.field == "response_format"
    with pytest.raises(ConfigurationException) as info:
        smollm2_engine.create_chat_completion(
            QUESTION,
            response_format={
                "type": "json_schema",
                "json_schema": {"schema": {"type": "string", "pattern": "a+"}},
            },
        )
    assert info.value.field == "response_format" and "pattern" in (info.value.details or "")


def test_streamed_forced_tool_call_is_a_tool_calls_delta(smollm2_engine: EdgeVeda) -> None:
    chunks: List[Any] = list(
        smollm2_engine.create_chat_completion(
            [{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
            temperature=0,
            max_tokens=60,
            stream=True,
        )
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    deltas = [c["choices"][0]["delta"] for c in chunks]
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert len(calls) == 1 and calls[0][0]["index"] == 0
    assert calls[0][0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0][0]["function"]["arguments"])["city"]
    assert not any(d.get("content") for d in deltas)


def test_stream_after_close_raises_at_once(tiny_model_path: Any) -> None:
    from edgeveda_ffi import EngineClosedException

    engine = EdgeVeda(tiny_model_path, context_size=256)
    engine.close()
    with pytest.raises(EngineClosedException):
        engine.create_completion("hi", stream=True)  # not at the first next()
    with pytest.raises(EngineClosedException):
        engine.create_chat_completion(QUESTION, stream=True)


def test_logprobs_in_both_shapes(smollm2_engine: EdgeVeda) -> None:
    chat = smollm2_engine.create_chat_completion(
        QUESTION, logprobs=True, top_logprobs=3, max_tokens=6, temperature=0
    )
    entries = chat["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    assert len(entries) == chat["usage"]["completion_tokens"]  # type: ignore[index]
    joined = b"".join(bytes(e["bytes"]) for e in entries).decode("utf-8", "replace")
    assert joined == chat["choices"][0]["message"]["content"]  # type: ignore[index]
    for e in entries:
        assert e["logprob"] <= 0 and len(e["top_logprobs"]) == 3
        assert e["top_logprobs"][0]["token"] == e["token"]  # greedy picks the top one
        lps = [a["logprob"] for a in e["top_logprobs"]]
        assert lps == sorted(lps, reverse=True)
    streamed: List[Any] = list(
        smollm2_engine.create_chat_completion(
            QUESTION, logprobs=True, top_logprobs=3, max_tokens=6, temperature=0, stream=True
        )
    )
    from_chunks = [
        e
        for c in streamed
        if c["choices"][0]["logprobs"]
        for e in c["choices"][0]["logprobs"]["content"]
    ]
    assert from_chunks == entries
    legacy = smollm2_engine.create_completion(
        "The capital of France is", logprobs=2, max_tokens=3, temperature=0
    )
    lp = legacy["choices"][0]["logprobs"]  # type: ignore[index]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 3
    assert "".join(lp["tokens"]) == legacy["choices"][0]["text"]  # type: ignore[index]
    assert lp["text_offset"][0] == 0 and all(len(d) == 2 for d in lp["top_logprobs"])
    assert smollm2_engine.create_completion("x", max_tokens=1)["choices"][0]["logprobs"] is None  # type: ignore[index]


def test_create_embedding_shape(smollm2_engine: EdgeVeda) -> None:
    import base64
    import struct

    one = smollm2_engine.create_embedding("hello world")
    assert one["object"] == "list" and one["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    (item,) = one["data"]
    direct = smollm2_engine.embed("hello world")
    assert item["object"] == "embedding" and item["index"] == 0
    assert item["embedding"] == pytest.approx(list(direct.embedding), abs=1e-7)
    assert one["usage"] == {"prompt_tokens": direct.token_count, "total_tokens": direct.token_count}
    many = smollm2_engine.create_embedding(
        ["hello world", "goodbye"], model="m", encoding_format="base64", dimensions=576
    )
    assert many["model"] == "m" and [d["index"] for d in many["data"]] == [0, 1]
    raw = base64.b64decode(many["data"][0]["embedding"])  # type: ignore[arg-type]
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(item["embedding"])
    assert many["usage"]["prompt_tokens"] > one["usage"]["prompt_tokens"]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"input": []}, "input"),
        ({"input": [1, 2]}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 64}, "dimensions"),
    ],
)
def test_create_embedding_errors(smollm2_engine: EdgeVeda, kwargs: Any, field: str) -> None:
    with pytest.raises(ConfigurationException) as info:
        smollm2_engine.create_embedding(**kwargs)
    assert info.value.field == field


def test_calling_the_engine_is_create_completion(smollm2_engine: EdgeVeda) -> None:
    # llama-cpp-python's Llama(prompt, ...) habit
    called = smollm2_engine("The capital of France is", max_tokens=6, temperature=0)
    same = smollm2_engine.create_completion("The capital of France is", max_tokens=6, temperature=0)
    assert called["object"] == "text_completion"  # type: ignore[index]
    assert called["choices"][0]["text"] == same["choices"][0]["text"]  # type: ignore[index]
    assert "Paris" in called["choices"][0]["text"]  # type: ignore[index]
