"""``logit_bias``: in ``GenerationParams`` (token id -> a number added to its
logit; -inf bans it) and in the OpenAI-shaped API (-100..100, -100 bans), on
the real SmolLM2 model: a banned token is never generated nor listed in the
logprobs, a favoured one is picked, and every bad value is a
ConfigurationException naming ``logit_bias`` after which the engine still
serves. The server passes it through (tests/test_server_features.py)."""

from __future__ import annotations

import math
from typing import Any, List

import pytest

from edgeveda_ffi import ConfigurationException, EdgeVeda, GenerationParams

PROMPT = "<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n"
GREEDY = {"max_tokens": 16, "temperature": 0.0, "repeat_penalty": 1.0}


def _first_two(engine: EdgeVeda) -> List[int]:
    """Token ids of the unbiased greedy first token and of its runner-up."""
    engine.reset()
    result = engine.generate(PROMPT, logprobs=True, top_logprobs=2, **GREEDY)
    assert result.logprobs
    ids = []
    for alt in result.logprobs[0].top_logprobs:
        tokens = engine.tokenize(bytes(alt.bytes).decode("utf-8"), add_special=False)
        assert len(tokens) == 1, (alt, tokens)
        ids.append(tokens[0])
    return ids


def _generated_ids(engine: EdgeVeda, text: str) -> List[int]:
    return engine.tokenize(text, add_special=False) if text else []


def test_params_normalise_and_validate() -> None:
    assert GenerationParams().logit_bias == ()
    assert GenerationParams(logit_bias={5: -1, "7": 2.5}).logit_bias == ((5, -1.0), (7, 2.5))
    assert GenerationParams(logit_bias=[(3, -math.inf)]).logit_bias == ((3, -math.inf),)
    bad: List[Any] = [
        {-1: 1.0},
        {"x": 1.0},
        {True: 1.0},
        {1.5: 1.0},
        {3: math.nan},
        {3: math.inf},
        {3: "1"},
        {3: None},
        5,
        [(1, 2, 3)],
    ]
    for value in bad:
        with pytest.raises(ConfigurationException) as info:
            GenerationParams(logit_bias=value)
        assert info.value.field == "logit_bias", value


def test_ban_and_favour_in_generate_and_stream(smollm2_engine: EdgeVeda) -> None:
    first, runner_up = _first_two(smollm2_engine)
    smollm2_engine.reset()
    plain = smollm2_engine.generate(PROMPT, **GREEDY)

    smollm2_engine.reset()
    banned = smollm2_engine.generate(
        PROMPT, logit_bias={first: -math.inf}, logprobs=True, top_logprobs=20, **GREEDY
    )
    assert banned.text != plain.text
    assert first not in _generated_ids(smollm2_engine, banned.text)
    assert banned.logprobs
    listed = [
        smollm2_engine.tokenize(bytes(a.bytes).decode("utf-8", "replace"), add_special=False)
        for e in banned.logprobs
        for a in e.top_logprobs
    ]
    assert [first] not in listed
    # the runner-up is the first pick now
    assert smollm2_engine.tokenize(banned.logprobs[0].token, add_special=False) == [runner_up]

    # a stream with the same bias gives the same text
    smollm2_engine.reset()
    pieces = "".join(smollm2_engine.stream(PROMPT, logit_bias={first: -math.inf}, **GREEDY))
    assert pieces == banned.text

    # a large positive bias makes the runner-up the pick
    smollm2_engine.reset()
    favoured = smollm2_engine.generate(
        PROMPT,
        logit_bias={runner_up: 50.0},
        logprobs=True,
        top_logprobs=1,
        **{**GREEDY, "max_tokens": 1},
    )
    assert favoured.logprobs and smollm2_engine.tokenize(
        favoured.logprobs[0].token, add_special=False
    ) == [runner_up]
    assert favoured.logprobs[0].logprob > -1e-3  # its probability dominates the biased distribution

    # sampled (the sampler chain), several seeds: the banned token never comes
    for seed in range(3):
        sampled = smollm2_engine.generate(
            PROMPT,
            logit_bias={first: -math.inf},
            logprobs=True,
            top_logprobs=0,
            max_tokens=12,
            temperature=1.5,
            top_k=0,
            top_p=1.0,
            seed=seed,
        )
        assert sampled.logprobs is not None
        for e in sampled.logprobs:
            assert math.isfinite(e.logprob)
        assert first not in _generated_ids(smollm2_engine, sampled.text)


def test_token_outside_the_vocabulary(smollm2_engine: EdgeVeda) -> None:
    with pytest.raises(ConfigurationException, match="not in the vocabulary") as info:
        smollm2_engine.generate(PROMPT, logit_bias={1 << 30: 1.0}, **GREEDY)
    assert "logit_bias" in (info.value.details or "")
    with pytest.raises(ConfigurationException, match="not in the vocabulary"):
        smollm2_engine.stream(PROMPT, logit_bias={49152: 1.0}, **GREEDY)
    assert smollm2_engine.generate(PROMPT, **GREEDY).text  # still serves


def test_openai_logit_bias(smollm2_engine: EdgeVeda) -> None:
    first, runner_up = _first_two(smollm2_engine)
    kw: Any = dict(max_tokens=1, temperature=0, repeat_penalty=1.0)
    plain = smollm2_engine.create_completion(PROMPT, **kw)
    # JSON keys are strings; -100 bans
    banned = smollm2_engine.create_completion(PROMPT, logit_bias={str(first): -100}, **kw)
    assert banned["choices"][0]["text"] != plain["choices"][0]["text"]
    favoured = smollm2_engine.create_completion(PROMPT, logit_bias={str(runner_up): 100}, **kw)
    assert smollm2_engine.tokenize(favoured["choices"][0]["text"], add_special=False) == [runner_up]
    chat = smollm2_engine.create_chat_completion(
        [{"role": "user", "content": "Name three colours of the rainbow."}],
        logit_bias={first: -100},
        **kw,
    )
    assert first not in _generated_ids(smollm2_engine, chat["choices"][0]["message"]["content"])

    for bad in (
        {str(first): 101},
        {str(first): -100.5},
        {str(first): "x"},
        {"abc": 1},
        [1, 2],
        {str(1 << 30): 1},
    ):
        with pytest.raises(ConfigurationException) as info:
            smollm2_engine.create_completion(PROMPT, logit_bias=bad, **kw)
        assert info.value.field == "logit_bias", bad
    assert (
        smollm2_engine.create_completion(PROMPT, logit_bias=None, **kw)["choices"][0]["text"]
        == (plain["choices"][0]["text"])
    )
