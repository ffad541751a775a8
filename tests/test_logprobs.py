"""Issue 17, point 4: logprobs (``logprobs=True, top_logprobs=k``) in
``generate`` and ``stream``, on the real SmolLM2 model, greedy: the chosen
token is the best alternative, the numbers are log-probabilities, the tokens'
bytes are the text, and a stream's entries are ``generate``'s."""

from __future__ import annotations

import asyncio
import math
from typing import Any, List, Tuple

import pytest

from edgeveda_ffi import (
    ConfigurationException,
    EdgeVeda,
    FinishReason,
    GenerationParams,
    StreamPiece,
    TokenInfo,
    TokenLogprob,
    TopLogprob,
)

PROMPT = "<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n"
GREEDY = {"max_tokens": 24, "temperature": 0.0}


def _generate(engine: EdgeVeda, **kw: Any) -> Any:
    # a cold cache: a warm prompt cache changes batch shapes, so floats (see
    # test_engine_streaming.py)
    engine.reset()
    return engine.generate(PROMPT, **{**GREEDY, **kw})


def _check_greedy(entries: Tuple[TokenLogprob, ...], k: int) -> None:
    for e in entries:
        assert e.logprob <= 0.0 and math.isfinite(e.logprob)
        assert e.token == bytes(e.bytes).decode("utf-8", errors="replace")
        assert len(e.top_logprobs) == k
        if k == 0:
            continue
        best = e.top_logprobs[0]
        assert (best.token, best.bytes, best.logprob) == (e.token, e.bytes, e.logprob)
        values = [a.logprob for a in e.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert all(v <= 0.0 for v in values)
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-5


def test_off_by_default(smollm2_engine: EdgeVeda) -> None:
    assert GenerationParams().logprobs is False
    assert _generate(smollm2_engine).logprobs is None
    # top_logprobs alone does not turn them on
    assert _generate(smollm2_engine, top_logprobs=3).logprobs is None


def test_generate_greedy(smollm2_engine: EdgeVeda) -> None:
    plain = _generate(smollm2_engine)
    result = _generate(smollm2_engine, logprobs=True, top_logprobs=5)
    assert result.text == plain.text  # logprobs change nothing else
    entries = result.logprobs
    assert entries is not None and len(entries) == result.completion_tokens > 0
    assert all(isinstance(e, TokenLogprob) for e in entries)
    assert all(isinstance(a, TopLogprob) for e in entries for a in e.top_logprobs)
    _check_greedy(entries, 5)
    assert result.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    joined = b"".join(bytes(e.bytes) for e in entries)
    assert joined == result.text.encode("utf-8")
    # the model is sure of some tokens: probabilities, not raw logits
    assert max(math.exp(e.logprob) for e in entries) > 0.5


def test_top_logprobs_bounds(smollm2_engine: EdgeVeda) -> None:
    none = _generate(smollm2_engine, logprobs=True, top_logprobs=0).logprobs
    most = _generate(smollm2_engine, logprobs=True, top_logprobs=20).logprobs
    assert none and most and len(none) == len(most)
    _check_greedy(none, 0)
    _check_greedy(most, 20)
    assert [e.logprob for e in none] == [e.logprob for e in most]


@pytest.mark.parametrize("bad", [21, -1, 2.0, "3", True, None])
def test_bad_top_logprobs(bad: Any) -> None:
    with pytest.raises(ConfigurationException) as info:
        GenerationParams(logprobs=True, top_logprobs=bad)
    assert info.value.field == "top_logprobs"


def test_bad_logprobs() -> None:
    with pytest.raises(ConfigurationException) as info:
        GenerationParams(logprobs=1)
    assert info.value.field == "logprobs"


def test_stream_pieces_carry_generates_entries(smollm2_engine: EdgeVeda) -> None:
    result = _generate(smollm2_engine, logprobs=True, top_logprobs=3)
    smollm2_engine.reset()
    pieces: List[Any] = list(smollm2_engine.stream(PROMPT, logprobs=True, top_logprobs=3, **GREEDY))
    assert pieces and all(isinstance(p, StreamPiece) for p in pieces)
    assert all(isinstance(p.info, TokenInfo) for p in pieces)
    assert "".join(p.text for p in pieces) == result.text
    streamed = tuple(e for p in pieces for e in p.logprobs)
    assert streamed == result.logprobs


def test_stream_without_logprobs(smollm2_engine: EdgeVeda) -> None:
    smollm2_engine.reset()
    pieces = list(smollm2_engine.stream(PROMPT, token_info=True, max_tokens=4, temperature=0.0))
    assert pieces and all(p.logprobs == () for p in pieces)
    assert all(isinstance(t, str) for t in smollm2_engine.stream(PROMPT, max_tokens=4))
    assert StreamPiece("x", pieces[0].info).logprobs == ()


def test_astream_pieces_carry_generates_entries(smollm2_engine: EdgeVeda) -> None:
    result = _generate(smollm2_engine, logprobs=True, top_logprobs=2)
    smollm2_engine.reset()

    async def collect() -> List[Any]:
        stream = smollm2_engine.astream(PROMPT, logprobs=True, top_logprobs=2, **GREEDY)
        return [p async for p in stream]

    pieces = asyncio.run(collect())
    assert pieces and all(isinstance(p, StreamPiece) for p in pieces)
    assert "".join(p.text for p in pieces) == result.text
    assert tuple(e for p in pieces for e in p.logprobs) == result.logprobs
