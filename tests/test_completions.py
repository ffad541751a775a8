"""The OpenAI shapes (``create_completion``, ``create_chat_completion``) on a
real model: keys and types, usage counts, streaming chunks that add up to the
blocking answer, stop sequences, seeds, tool messages, and a typed error for
every parameter the engine does not have."""

from __future__ import annotations

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
        ({"logit_bias": {"1": 5}}, "logit_bias"),
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
