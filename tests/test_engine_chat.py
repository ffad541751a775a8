"""Issue 4: chat with the model's template, ChatSession history and the prompt
cache (a new turn processes only its new tokens)."""

from __future__ import annotations

from typing import Any

import pytest

from edgeveda_ffi import ChatSession, EdgeVeda, FinishReason

SYSTEM = (
    "You are a helpful geography assistant. You answer questions about countries, capitals, "
    "rivers, mountains and cities. Always answer in one short sentence that names the place, "
    "without lists, without explanations and without asking questions back. If you do not "
    "know an answer, say so in one sentence. Keep a friendly, neutral tone and use plain "
    "English words only. Do not use markdown, emoji or quotation marks in your answers."
)


@pytest.fixture
def chat(smollm2_engine: EdgeVeda) -> Any:
    session = smollm2_engine.chat_session(system_prompt=SYSTEM, max_tokens=24, temperature=0)
    yield session
    smollm2_engine.set_prompt_cache(True)
    smollm2_engine.reset()


def test_template_is_the_models(smollm2_engine: EdgeVeda) -> None:
    prompt = smollm2_engine.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    )
    assert prompt == (
        "<|im_start|>system\nS<|im_end|>\n"
        "<|im_start|>user\nU<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_prefix = smollm2_engine.apply_chat_template(
        [{"role": "user", "content": "U"}], add_assistant=False
    )
    assert no_prefix == "<|im_start|>user\nU<|im_end|>\n"


def test_second_turn_reuses_prompt_cache(chat: ChatSession, smollm2_engine: EdgeVeda) -> None:
    r1 = chat.send("What is the capital of France?")
    assert "Paris" in r1.text
    assert r1.finish_reason is FinishReason.STOP
    assert r1.stats.cached_tokens == 0  # a fresh session starts from an empty cache
    assert r1.stats.first_token_ms > 0

    r2 = chat.send("And the capital of Germany?")
    assert "Berlin" in r2.text
    warm = r2.stats
    # Turn 1's prompt and answer are already in the KV cache: only the new tokens
    # (end of answer 1, question 2, assistant prefix) are processed.
    assert warm.cached_tokens >= r1.prompt_tokens
    processed = warm.prompt_tokens - warm.cached_tokens
    assert 0 < processed < warm.prompt_tokens
    assert processed < 40 < warm.prompt_tokens
    assert warm.first_token_ms > 0

    # The same prompt from a cold cache processes every token, and takes longer to
    # the first token (it processes several times as many).
    prompt2 = smollm2_engine.apply_chat_template(chat.history[:-1])
    smollm2_engine.reset()
    cold = smollm2_engine.generate(prompt2, max_tokens=24, temperature=0).stats
    assert cold.prompt_tokens == warm.prompt_tokens
    assert cold.cached_tokens == 0
    print(
        f"\nturn 2: {warm.prompt_tokens} prompt tokens, {warm.cached_tokens} cached, "
        f"first token {warm.first_token_ms:.0f} ms; cold: first token {cold.first_token_ms:.0f} ms"
    )
    assert warm.prompt_tokens / processed >= 4
    assert warm.prompt_ms < cold.prompt_ms


def test_history_and_stream(chat: ChatSession, smollm2_engine: EdgeVeda) -> None:
    assert chat.history == [{"role": "system", "content": SYSTEM}]
    r1 = chat.send("What is the capital of Italy?")
    pieces = list(chat.stream("And the capital of Spain?"))
    answer = "".join(pieces)
    assert "Madrid" in answer
    assert [m["role"] for m in chat.history] == ["system", "user", "assistant", "user", "assistant"]
    assert chat.history[2]["content"] == r1.text
    assert chat.history[4]["content"] == answer
    assert len(chat) == 5
    st = smollm2_engine.last_stats  # the streamed turn's stats
    assert st.cached_tokens >= r1.prompt_tokens and st.first_token_ms > 0
    chat.history.clear()  # a copy: the session is unchanged
    assert len(chat) == 5

    # Leaving a streamed turn early keeps the partial answer in the history.
    for i, _ in enumerate(chat.stream("Name a river in Egypt.")):
        if i == 1:
            break
    assert chat.history[-2] == {"role": "user", "content": "Name a river in Egypt."}
    assert chat.history[-1]["role"] == "assistant" and chat.history[-1]["content"]
    assert smollm2_engine.generate("x", max_tokens=1).completion_tokens == 1  # stream freed

    chat.reset()
    assert chat.history == [{"role": "system", "content": SYSTEM}]
    again = chat.send("What is the capital of Italy?")
    assert again.stats.cached_tokens == 0  # reset() dropped the KV cache
    assert again.text == r1.text


def test_prompt_cache_can_be_disabled(chat: ChatSession, smollm2_engine: EdgeVeda) -> None:
    smollm2_engine.set_prompt_cache(False)
    chat.send("What is the capital of France?")
    r2 = chat.send("And the capital of Germany?")
    assert r2.stats.cached_tokens == 0


def test_engine_chat_matches_session(chat: ChatSession, smollm2_engine: EdgeVeda) -> None:
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is the capital of Japan?"},
    ]
    smollm2_engine.reset()
    direct = smollm2_engine.chat(messages, max_tokens=24, temperature=0)
    assert "Tokyo" in direct.text
    chat.reset()
    assert chat.send("What is the capital of Japan?").text == direct.text
    assert chat.last_result is not None and chat.last_result.text == direct.text
