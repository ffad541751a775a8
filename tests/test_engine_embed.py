"""Issue 4: embeddings, the tokenizer and grammar-constrained output (GBNF)."""

from __future__ import annotations

import json
import math

import pytest

from edgeveda_ffi import ConfigurationException, EdgeVeda, EmbeddingResult, FinishReason


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


# ------------------------------------------------------------------------------------------
# embed
# ------------------------------------------------------------------------------------------


def test_embed(smollm2_engine: EdgeVeda) -> None:
    engine = smollm2_engine
    text = "The cat sat on the mat."
    r = engine.embed(text)
    assert isinstance(r, EmbeddingResult)
    assert r.dimensions == engine.model_info.embedding_dim == 576
    assert len(r.embedding) == r.dimensions
    assert all(isinstance(x, float) and math.isfinite(x) for x in r.embedding)
    assert _norm(list(r.embedding)) == pytest.approx(1.0, abs=1e-4)
    assert r.token_count == len(engine.tokenize(text))
    assert "embedding" not in repr(r)  # the vector is not dumped into reprs

    again = engine.embed(text)
    assert list(again.embedding) == pytest.approx(list(r.embedding), abs=1e-5)
    other = engine.embed("Quarterly revenue rose five percent.")
    cos = sum(a * b for a, b in zip(r.embedding, other.embedding))
    assert cos < 0.999  # a different text is a different vector

    # Embedding does not disturb generation (a separate context).
    assert engine.generate("Hi", max_tokens=2, temperature=0).completion_tokens == 2


def test_embed_errors(tiny_engine: EdgeVeda) -> None:
    with pytest.raises(ConfigurationException):
        tiny_engine.embed("")
    with pytest.raises(ConfigurationException, match="NUL"):
        tiny_engine.embed("a\x00b")
    with pytest.raises(ConfigurationException):
        tiny_engine.embed("word " * 600)  # beyond the 512-token embedding context
    assert tiny_engine.embed("fine").dimensions == 64


# ------------------------------------------------------------------------------------------
# tokenize / detokenize
# ------------------------------------------------------------------------------------------


def test_tokenize_roundtrip(tiny_engine: EdgeVeda) -> None:
    text = "Hello, wörld! 日本語 🎉 naïve café"
    toks = tiny_engine.tokenize(text, add_special=False)
    assert toks and all(isinstance(t, int) for t in toks)
    assert tiny_engine.detokenize(toks) == text
    assert tiny_engine.tokenize("", add_special=False) == []
    # SmolLM2's tokenizer adds no BOS; special tokens are parsed only on request.
    special = tiny_engine.tokenize("<|im_start|>", add_special=False, parse_special=True)
    plain = tiny_engine.tokenize("<|im_start|>", add_special=False, parse_special=False)
    assert len(special) == 1 and len(plain) > 1
    assert tiny_engine.detokenize(special, special=True) == "<|im_start|>"
    assert tiny_engine.detokenize(special, special=False) == ""


# ------------------------------------------------------------------------------------------
# grammar
# ------------------------------------------------------------------------------------------

YES_NO = 'root ::= "yes" | "no"'


def test_grammar_yes_no_real_model(smollm2_engine: EdgeVeda) -> None:
    prompt = "Question: Is water wet? Answer with yes or no.\nAnswer: "
    r = smollm2_engine.generate(prompt, grammar=YES_NO, max_tokens=8, temperature=0)
    assert r.text in ("yes", "no")
    assert r.finish_reason is FinishReason.STOP
    pieces = list(smollm2_engine.stream(prompt, grammar=YES_NO, max_tokens=8, temperature=0))
    assert "".join(pieces) in ("yes", "no")


def test_grammar_constrains_random_model(tiny_varied_engine: EdgeVeda) -> None:
    """Even a model of random weights, sampled at temperature 1, can only say yes or no."""
    seen = set()
    for seed in range(6):
        r = tiny_varied_engine.generate(
            "Anything", grammar=YES_NO, max_tokens=8, temperature=1.0, top_k=0, seed=seed
        )
        assert r.text in ("yes", "no"), r.text
        seen.add(r.text)
    assert seen  # at least one; both usually


def test_grammar_root_and_json(tiny_varied_engine: EdgeVeda) -> None:
    g = 'answer ::= "A" | "B" | "C"'
    r = tiny_varied_engine.generate("x", grammar=g, grammar_root="answer", max_tokens=4, seed=1)
    assert r.text in ("A", "B", "C")

    json_grammar = r"""
root   ::= "{" ws "\"n\":" ws num "," ws "\"ok\":" ws bool ws "}"
num    ::= [0-9] [0-9]?
bool   ::= "true" | "false"
ws     ::= " "?
"""
    for seed in range(3):
        r = tiny_varied_engine.generate("x", grammar=json_grammar, max_tokens=40, seed=seed)
        obj = json.loads(r.text)
        assert set(obj) == {"n", "ok"} and isinstance(obj["ok"], bool)


@pytest.mark.parametrize(
    ("grammar", "root"),
    [
        ("root ::= ???", None),  # does not parse
        ('root ::= "a" undefined_rule', None),  # refers to a missing rule
        ('answer ::= "a"', None),  # no "root" rule
        (YES_NO, "missing_root"),  # the named root does not exist
    ],
)
def test_invalid_grammar(tiny_engine: EdgeVeda, grammar: str, root: str | None) -> None:
    for call in (
        lambda: tiny_engine.generate("x", grammar=grammar, grammar_root=root, max_tokens=2),
        lambda: tiny_engine.stream("x", grammar=grammar, grammar_root=root, max_tokens=2),
    ):
        with pytest.raises(ConfigurationException) as info:
            call()
        assert isinstance(info.value, ValueError)
        assert "grammar" in (info.value.details or "")
    # The engine is untouched.
    assert tiny_engine.generate("x", max_tokens=1).completion_tokens == 1
