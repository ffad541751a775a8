"""Issue 4: blocking generation — GenerateResult fields, finish reasons, stop
sequences, seeds, defaults, model info, memory stats, ``__repr__``."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeveda_ffi import (
    Config,
    EdgeVeda,
    FinishReason,
    GenerateResult,
    GenerationParams,
    GenerationStats,
)


def test_generate_result_fields(tiny_varied_engine: EdgeVeda) -> None:
    engine = tiny_varied_engine
    prompt = "The quick brown fox"
    engine.reset()
    r = engine.generate(prompt, max_tokens=12, temperature=0)
    assert isinstance(r, GenerateResult)
    assert isinstance(r.text, str) and r.text
    assert str(r) == r.text
    assert r.prompt_tokens == len(engine.tokenize(prompt)) > 0
    assert r.completion_tokens == 12
    assert r.finish_reason is FinishReason.LENGTH
    assert r.total_tokens == r.prompt_tokens + r.completion_tokens

    st = r.stats
    assert isinstance(st, GenerationStats)
    assert st.prompt_tokens == r.prompt_tokens
    assert st.completion_tokens == r.completion_tokens
    assert st.finish_reason is r.finish_reason
    assert st.cached_tokens == 0  # after reset()
    assert st.prompt_ms > 0 and st.generation_ms > 0
    assert 0 < st.first_token_ms
    assert r.latency_ms == pytest.approx(st.prompt_ms + st.generation_ms)
    assert st.tokens_per_second is not None and st.tokens_per_second > 0
    assert engine.last_stats == st  # this thread's last generation


def test_finish_reasons_stop_and_length(smollm2_engine: EdgeVeda) -> None:
    engine = smollm2_engine
    prompt = "Count: 1, 2, 3, 4, 5,"
    full = engine.generate(prompt, max_tokens=24, temperature=0)
    assert full.finish_reason is FinishReason.LENGTH and full.completion_tokens == 24
    words = [w.strip() for w in full.text.split(",") if w.strip()]
    assert len(words) >= 3, full.text

    # A stop sequence taken from the text: the output ends right before it.
    stop = f", {words[2]}"
    assert stop in full.text
    r = engine.generate(prompt, max_tokens=24, temperature=0, stop=[stop, "never-appears"])
    assert r.finish_reason is FinishReason.STOP
    assert r.text == full.text[: full.text.index(stop)]
    assert stop not in r.text
    assert r.completion_tokens < 24

    # The end-of-generation token of a chat answer is a STOP too.
    answer = engine.chat([{"role": "user", "content": "Say hi."}], max_tokens=64, temperature=0)
    assert answer.finish_reason is FinishReason.STOP
    assert answer.completion_tokens < 64 and "<|im_end|>" not in answer.text


def test_max_tokens_zero_processes_prompt_only(tiny_engine: EdgeVeda) -> None:
    r = tiny_engine.generate("hello there", max_tokens=0)
    assert r.text == "" and r.completion_tokens == 0
    assert r.prompt_tokens == len(tiny_engine.tokenize("hello there"))


def test_greedy_is_deterministic(tiny_varied_engine: EdgeVeda) -> None:
    engine = tiny_varied_engine
    engine.set_prompt_cache(False)  # a warm cache changes batch shapes (and so float rounding)
    try:
        a = engine.generate("Once upon a time", max_tokens=20, temperature=0)
        b = engine.generate("Once upon a time", max_tokens=20, temperature=0)
    finally:
        engine.set_prompt_cache(True)
    assert a.text == b.text and a.completion_tokens == 20


def test_seed_reproducibility(tiny_varied_engine: EdgeVeda) -> None:
    engine = tiny_varied_engine
    kw = dict(max_tokens=24, temperature=1.0, top_k=0, top_p=1.0)
    engine.set_prompt_cache(False)
    try:
        a = engine.generate("Once upon a time", seed=1234, **kw)
        b = engine.generate("Once upon a time", seed=1234, **kw)
        c = engine.generate("Once upon a time", seed=4321, **kw)
        # The params object carries the seed too.
        d = engine.generate("Once upon a time", GenerationParams(seed=1234, **kw))  # type: ignore[arg-type]
    finally:
        engine.set_prompt_cache(True)
    assert a.text == b.text == d.text
    assert a.text != c.text


def test_config_seed(tiny_varied_model_path: Path) -> None:
    """Config(seed>=0) makes every request reproducible; a per-request seed overrides it."""
    kw = dict(max_tokens=16, temperature=1.0, top_k=0, top_p=1.0)
    texts = []
    for _ in range(2):
        with EdgeVeda(tiny_varied_model_path, context_size=128, num_threads=1, seed=99) as e:
            texts.append(e.generate("Hello", **kw).text)  # type: ignore[arg-type]
            texts.append(e.generate("Hello", seed=5, **kw).text)  # type: ignore[arg-type]
    assert texts[0] == texts[2]
    assert texts[1] == texts[3]
    assert texts[0] != texts[1]


def test_engine_defaults(tiny_model_path: Path) -> None:
    defaults = GenerationParams(max_tokens=3, temperature=0)
    with EdgeVeda(tiny_model_path, context_size=128, num_threads=1, defaults=defaults) as e:
        assert e.generate("Hello").completion_tokens == 3
        assert e.generate("Hello", max_tokens=5).completion_tokens == 5
        assert e.defaults is defaults


def test_from_config(tiny_model_path: Path) -> None:
    cfg = Config(model_path=str(tiny_model_path), context_size=512, num_threads=1)
    with EdgeVeda.from_config(cfg) as e:
        assert e.config is cfg
        assert e.model_info.context_length == 512
    with pytest.raises(Exception, match="either config"):
        EdgeVeda(tiny_model_path, config=cfg)


def test_model_info(tiny_engine: EdgeVeda, smollm2_engine: EdgeVeda) -> None:
    info = tiny_engine.model_info
    assert info.name == "edgeveda-tiny-random"
    assert info.architecture == "llama"
    assert info.embedding_dim == 64 and info.num_layers == 2
    assert info.context_length == 256
    assert 1_000_000 < info.num_parameters < 10_000_000
    big = smollm2_engine.model_info
    assert big.architecture == "llama"
    assert big.embedding_dim == 576 and big.num_layers == 30
    assert big.context_length == 512
    assert 130_000_000 < big.num_parameters < 140_000_000


def test_memory_stats(tiny_model_path: Path) -> None:
    with EdgeVeda(tiny_model_path, context_size=128, num_threads=1) as e:
        st = e.memory_stats()
        assert st.current_bytes == st.model_bytes + st.context_bytes
        assert st.model_bytes > 0 and st.context_bytes > 0
        assert st.peak_bytes >= st.current_bytes
        assert st.limit_bytes == 0 and st.usage_ratio == 0.0
        e.generate("hi", max_tokens=2)
        assert e.memory_stats().current_bytes >= st.current_bytes


def test_reprs(tiny_model_path: Path) -> None:
    e = EdgeVeda(tiny_model_path, context_size=128, num_threads=1)
    assert repr(e) == "<EdgeVeda 'tiny.gguf' open>"
    s = e.stream("hi", max_tokens=2)
    assert repr(s) == "<TokenStream running>"
    s.text()
    assert repr(s) == "<TokenStream finished>"
    s.close()
    assert repr(s) == "<TokenStream closed>"
    chat = e.chat_session(system_prompt="Be brief.")
    assert repr(chat) == "<ChatSession 1 messages on <EdgeVeda 'tiny.gguf' open>>"
    e.close()
    assert repr(e) == "<EdgeVeda 'tiny.gguf' closed>"
