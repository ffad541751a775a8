"""Tokenizer round trips through the binding."""

from __future__ import annotations

from typing import Any, Callable

import pytest


@pytest.mark.parametrize("n", [16, 512])
def test_tokenize(benchmark: Any, engine: Any, prompt_of: Callable[[int], str], n: int) -> None:
    text = prompt_of(n)
    assert len(benchmark(engine.tokenize, text)) == n


def test_detokenize_512(benchmark: Any, engine: Any, prompt_of: Callable[[int], str]) -> None:
    ids = engine.tokenize(prompt_of(512))
    assert benchmark(engine.detokenize, ids)
