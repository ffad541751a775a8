"""Prompt processing, decode, stream vs generate, first token (greedy, prompt cache off).

Each bench stores tokens/s from the core's own timers in ``extra_info``, so a
``--benchmark-json`` report carries throughput next to pytest-benchmark's
wall-clock statistics.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest


def _rounds(quick: bool, n: int = 5) -> int:
    return 1 if quick else n


@pytest.mark.parametrize("n", [128, 512])
def test_prompt_processing(
    benchmark: Any, engine: Any, prompt_of: Callable[[int], str], quick: bool, n: int
) -> None:
    """pp tok/s at exactly n prompt tokens (max_tokens=0: process the prompt only)."""
    n = n // 8 if quick else n  # quick mode: the code path, not the size
    text = prompt_of(n)
    r = benchmark.pedantic(
        engine.generate,
        args=(text,),
        kwargs={"max_tokens": 0},
        rounds=_rounds(quick),
        iterations=1,
        warmup_rounds=0 if quick else 1,
    )
    assert r.stats.prompt_tokens == n
    benchmark.extra_info["prompt_tokens"] = n
    benchmark.extra_info["pp_tok_s"] = n * 1e3 / r.stats.prompt_ms


@pytest.mark.parametrize("repeat_penalty", [1.0, 1.1])
def test_decode(
    benchmark: Any, engine: Any, gen_prompt: str, n_gen: int, quick: bool, repeat_penalty: float
) -> None:
    """Decode tok/s over n_gen greedy tokens; 1.1 is the default repeat penalty (its cost)."""
    r = benchmark.pedantic(
        engine.generate,
        args=(gen_prompt,),
        kwargs={"max_tokens": n_gen, "temperature": 0.0, "repeat_penalty": repeat_penalty},
        rounds=_rounds(quick),
        iterations=1,
        warmup_rounds=0 if quick else 1,
    )
    assert r.completion_tokens == n_gen
    s = r.stats
    benchmark.extra_info["decode_tok_s"] = (s.completion_tokens - 1) * 1e3 / s.generation_ms
    benchmark.extra_info["first_token_ms"] = s.first_token_ms


def test_generate(benchmark: Any, engine: Any, gen_prompt: str, n_gen: int, quick: bool) -> None:
    """End to end (prompt + n_gen tokens) through generate(); compare with test_stream."""
    r = benchmark.pedantic(
        engine.generate,
        args=(gen_prompt,),
        kwargs={"max_tokens": n_gen, "temperature": 0.0, "repeat_penalty": 1.0},
        rounds=_rounds(quick),
        iterations=1,
    )
    assert r.completion_tokens == n_gen


def test_stream(benchmark: Any, engine: Any, gen_prompt: str, n_gen: int, quick: bool) -> None:
    """The same request as test_generate, streamed piece by piece (target: within 2 %)."""

    def run() -> str:
        return "".join(
            engine.stream(gen_prompt, max_tokens=n_gen, temperature=0.0, repeat_penalty=1.0)
        )

    text = benchmark.pedantic(run, rounds=_rounds(quick), iterations=1)
    assert text


def test_first_token(benchmark: Any, engine: Any, gen_prompt: str, quick: bool) -> None:
    """Call to first streamed piece (prompt processed from scratch), then cancel."""

    def first() -> str:
        s = engine.stream(gen_prompt, max_tokens=64, temperature=0.0, repeat_penalty=1.0)
        try:
            return str(next(s))
        finally:
            s.close()

    assert benchmark.pedantic(first, rounds=_rounds(quick, 10), iterations=1)
