"""Embeddings: mean-pooled, L2-normalized (the embedding context is made on first use)."""

from __future__ import annotations

import math
from typing import Any


def test_embed_sentence(benchmark: Any, engine: Any) -> None:
    engine.embed("warm up")
    r = benchmark(
        engine.embed, "Benchmarks measure what a user waits for, not what a profiler shows."
    )
    assert r.dimensions == len(r.embedding)
    assert math.isclose(sum(v * v for v in r.embedding), 1.0, rel_tol=1e-3)
