"""Tests of the test-model factory (tests/model_factory.py); no native engine involved."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import model_factory as mf
import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType

CFG = mf.DEFAULT_CONFIG

# KV keys llama.cpp's llama arch reads (required ones, plus those we always write).
REQUIRED_KEYS = {
    "general.architecture": "llama",
    "llama.context_length": CFG.n_ctx,
    "llama.embedding_length": CFG.n_embd,
    "llama.block_count": CFG.n_layer,
    "llama.feed_forward_length": CFG.n_ff,
    "llama.attention.head_count": CFG.n_head,
    "llama.attention.head_count_kv": CFG.n_head_kv,
    "llama.rope.dimension_count": CFG.head_dim,
    "general.file_type": 1,  # MOSTLY_F16
}


def _field_value(reader: GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


def _expected_tensors(n_vocab: int, varied: bool) -> dict[str, tuple[list[int], str]]:
    """name -> (ggml ne, type) as llama.cpp's LLM_ARCH_LLAMA loader asks for them."""
    e, ff, q, kv = CFG.n_embd, CFG.n_ff, CFG.n_head * CFG.head_dim, CFG.n_head_kv * CFG.head_dim
    out: dict[str, tuple[list[int], str]] = {
        "token_embd.weight": ([e, n_vocab], "F16"),
        "output_norm.weight": ([e], "F32"),
    }
    if varied:
        out["output.weight"] = ([e, n_vocab], "F16")
    for i in range(CFG.n_layer):
        out |= {
            f"blk.{i}.attn_norm.weight": ([e], "F32"),
            f"blk.{i}.attn_q.weight": ([e, q], "F16"),
            f"blk.{i}.attn_k.weight": ([e, kv], "F16"),
            f"blk.{i}.attn_v.weight": ([e, kv], "F16"),
            f"blk.{i}.attn_output.weight": ([q, e], "F16"),
            f"blk.{i}.ffn_norm.weight": ([e], "F32"),
            f"blk.{i}.ffn_gate.weight": ([e, ff], "F16"),
            f"blk.{i}.ffn_up.weight": ([e, ff], "F16"),
            f"blk.{i}.ffn_down.weight": ([ff, e], "F16"),
        }
    return out


@pytest.fixture(scope="module")
def tiny_reader(tiny_model_path: Path) -> GGUFReader:
    """gguf-py's reader over the tiny model (parsing takes a few seconds, so once per module)."""
    return GGUFReader(tiny_model_path)


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_path: Path) -> tuple[mf.KeyValue, ...]:
    """SmolLM2's ``tokenizer.*`` entries, raw."""
    return mf.read_tokenizer_kvs(smollm2_path)


# --------------------------------------------------------------------------------------------
# The tiny models
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("varied", [False, True], ids=["tied", "varied"])
def test_factory_is_deterministic(
    varied: bool,
    smollm2_path: Path,
    tmp_path: Path,
    tiny_model_path: Path,
    tiny_varied_model_path: Path,
) -> None:
    """Two fresh writes are byte-identical, and equal to the session fixture (maybe cached)."""
    first = mf.write_tiny_model(tmp_path / "a.gguf", smollm2_path=smollm2_path, varied=varied)
    second = mf.write_tiny_model(tmp_path / "b.gguf", smollm2_path=smollm2_path, varied=varied)
    fixture = tiny_varied_model_path if varied else tiny_model_path
    digest = mf.sha256_file(first)
    assert digest == mf.sha256_file(second) == mf.sha256_file(fixture)
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"


def test_tiny_model_size(tiny_model_path: Path, tiny_varied_model_path: Path) -> None:
    """≈8 MB tied, plus one F16 vocab×embd matrix for the varied model."""
    tied, varied = tiny_model_path.stat().st_size, tiny_varied_model_path.stat().st_size
    assert 6_000_000 < tied < 10_000_000
    kvs = mf.read_tokenizer_kvs(mf.require_smollm2())
    n_vocab = len(next(kv.value for kv in kvs if kv.key == "tokenizer.ggml.tokens"))
    extra = varied - tied - n_vocab * CFG.n_embd * 2  # the rest: a tensor info and a longer name
    assert 0 < extra < 256


def test_metadata_reads_back(tiny_reader: GGUFReader) -> None:
    """Architecture, hyper-parameters and general.name as written."""
    for key, expected in REQUIRED_KEYS.items():
        assert _field_value(tiny_reader, key) == expected, key
    assert _field_value(tiny_reader, "general.name") == "edgeveda-tiny-random"
    assert _field_value(tiny_reader, "llama.rope.freq_base") == pytest.approx(CFG.rope_freq_base)
    eps = _field_value(tiny_reader, "llama.attention.layer_norm_rms_epsilon")
    assert eps == pytest.approx(CFG.rms_eps)
    assert "general.alignment" not in tiny_reader.fields  # default 32
    assert tiny_reader.alignment == mf.GGUF_DEFAULT_ALIGNMENT


def test_tokenizer_copied_exactly(
    tiny_reader: GGUFReader, smollm2_tokenizer: tuple[mf.KeyValue, ...]
) -> None:
    """Every tokenizer.* key of SmolLM2 is present with the same types and bytes."""
    ours = {k: f for k, f in tiny_reader.fields.items() if k.startswith("tokenizer.")}
    assert list(ours) == [kv.key for kv in smollm2_tokenizer]
    for kv in smollm2_tokenizer:
        field = ours[kv.key]
        expected_types = [kv.vtype] + ([kv.sub_type] if kv.sub_type is not None else [])
        assert field.types == expected_types, kv.key
        if kv.vtype == GGUFValueType.ARRAY and kv.sub_type == GGUFValueType.STRING:
            assert tuple(bytes(field.parts[i]) for i in field.data) == kv.value, kv.key
        elif kv.vtype == GGUFValueType.ARRAY:
            assert tuple(field.contents()) == kv.value, kv.key
        elif kv.vtype == GGUFValueType.STRING:
            assert bytes(field.parts[-1]) == kv.value, kv.key
        else:
            assert field.contents() == kv.value, kv.key

    n_tokens = len(ours["tokenizer.ggml.tokens"].data)
    assert n_tokens == len(ours["tokenizer.ggml.token_type"].data)
    assert _field_value(tiny_reader, "llama.vocab_size") == n_tokens
    # DESIGN.md §5 facts about SmolLM2's tokenizer.
    assert _field_value(tiny_reader, "tokenizer.ggml.model") == "gpt2"
    assert _field_value(tiny_reader, "tokenizer.ggml.pre") == "smollm"
    assert _field_value(tiny_reader, "tokenizer.ggml.bos_token_id") == 1
    assert _field_value(tiny_reader, "tokenizer.ggml.eos_token_id") == 2
    assert _field_value(tiny_reader, "tokenizer.ggml.add_bos_token") is False
    assert ours["tokenizer.ggml.tokens"].contents(1) == "<|im_start|>"
    assert ours["tokenizer.ggml.tokens"].contents(2) == "<|im_end|>"
    assert "<|im_start|>" in _field_value(tiny_reader, "tokenizer.chat_template")


def test_smollm2_token_count(
    tiny_reader: GGUFReader, smollm2_tokenizer: tuple[mf.KeyValue, ...]
) -> None:
    """The tiny model's vocabulary is SmolLM2's (49152 tokens)."""
    tokens = next(kv for kv in smollm2_tokenizer if kv.key == "tokenizer.ggml.tokens")
    assert len(tiny_reader.fields["tokenizer.ggml.tokens"].data) == len(tokens.value) == 49152


def test_tensors_match_llama_arch(tiny_reader: GGUFReader) -> None:
    """Names, ggml shapes (ne) and types are what llama.cpp's llama loader asks for."""
    n_vocab = len(tiny_reader.fields["tokenizer.ggml.tokens"].data)
    expected = _expected_tensors(n_vocab, varied=False)
    got = {t.name: (t.shape.tolist(), t.tensor_type.name) for t in tiny_reader.tensors}
    assert got == expected
    for t in tiny_reader.tensors:
        data = np.asarray(t.data, dtype=np.float32)
        assert np.isfinite(data).all(), t.name
        if t.name.endswith("norm.weight"):
            assert (data == 1.0).all(), t.name
        else:
            assert 0.01 < float(data.std()) < 0.05, t.name


def test_varied_model_adds_only_output(
    tiny_reader: GGUFReader, tiny_varied_model_path: Path
) -> None:
    """The varied model is the tied model plus an untied, different output.weight."""
    tied = {t.name: t for t in tiny_reader.tensors}
    varied = {t.name: t for t in GGUFReader(tiny_varied_model_path).tensors}
    assert set(varied) - set(tied) == {"output.weight"}
    assert set(tied) <= set(varied)
    for name, t in tied.items():
        assert np.array_equal(np.asarray(t.data), np.asarray(varied[name].data)), name
    out = varied["output.weight"]
    assert out.tensor_type == GGMLQuantizationType.F16
    assert out.shape.tolist() == tied["token_embd.weight"].shape.tolist()
    assert not np.array_equal(np.asarray(out.data), np.asarray(tied["token_embd.weight"].data))


def test_layout_agrees_with_gguf_reader(tiny_model_path: Path, tiny_reader: GGUFReader) -> None:
    """The factory's own header walk finds the same offsets as gguf-py."""
    lay = mf.gguf_layout(tiny_model_path)
    assert lay.file_size == tiny_model_path.stat().st_size
    assert lay.version == 3
    assert lay.kv_start == mf.GGUF_HEADER_SIZE
    assert lay.tensor_count == len(tiny_reader.tensors)
    assert lay.kv_count == len(tiny_reader.fields) - 3  # minus GGUF.version/tensor_count/kv_count
    for key, offset in lay.kv_offsets.items():
        assert tiny_reader.fields[key].offset == offset, key
    assert lay.ti_start == tiny_reader.tensors[0].field.offset
    last = tiny_reader.tensors[-1].field
    assert lay.ti_end == last.offset + sum(int(p.nbytes) for p in last.parts)
    assert lay.data_start == tiny_reader.data_offset
    assert lay.kv_start < lay.kv_end == lay.ti_start < lay.ti_end <= lay.data_start < lay.file_size


# --------------------------------------------------------------------------------------------
# Cross-run cache
# --------------------------------------------------------------------------------------------


def test_cache_hit_and_damaged_entry(
    smollm2_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verified cache entry is reused; a damaged one is ignored and rewritten."""
    cache = tmp_path / "cache"
    fresh = mf.materialize_tiny_model(tmp_path / "one", smollm2_path=smollm2_path, cache_root=cache)
    digest = mf.sha256_file(fresh)
    (entry,) = cache.iterdir()
    assert entry.name.startswith(f"v{mf.FACTORY_VERSION}-")
    assert (entry / mf.TINY_MODEL_NAME).read_bytes() == fresh.read_bytes()
    assert (entry / (mf.TINY_MODEL_NAME + ".sha256")).read_text().strip() == digest

    def no_write(*args: object, **kwargs: object) -> Path:
        raise AssertionError("cache miss")

    with monkeypatch.context() as m:
        m.setattr(mf, "write_tiny_model", no_write)
        hit = mf.materialize_tiny_model(
            tmp_path / "two", smollm2_path=smollm2_path, cache_root=cache
        )
    assert mf.sha256_file(hit) == digest

    damaged = bytearray((entry / mf.TINY_MODEL_NAME).read_bytes())
    damaged[-1] ^= 0xFF
    (entry / mf.TINY_MODEL_NAME).write_bytes(bytes(damaged))
    again = mf.materialize_tiny_model(
        tmp_path / "three", smollm2_path=smollm2_path, cache_root=cache
    )
    assert mf.sha256_file(again) == digest
    assert mf.sha256_file(entry / mf.TINY_MODEL_NAME) == digest  # repaired


def test_unwritable_cache_is_ignored(smollm2_path: Path, tmp_path: Path) -> None:
    """A cache root that cannot be created does not stop the model from being written."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    path = mf.materialize_tiny_model(
        tmp_path / "out", smollm2_path=smollm2_path, cache_root=blocker
    )
    assert path.is_file() and path.stat().st_size > 0


# --------------------------------------------------------------------------------------------
# Corrupt variants
# --------------------------------------------------------------------------------------------

ALL_VARIANTS = set(mf.DERIVED_VARIANTS) | set(mf.STANDALONE_VARIANTS)


def test_corrupt_models_fixture_has_every_variant(corrupt_models: dict[str, Path]) -> None:
    """The fixture carries every documented variant, each at its own path."""
    assert set(corrupt_models) == ALL_VARIANTS
    assert len(set(corrupt_models.values())) == len(ALL_VARIANTS)
    for name, path in corrupt_models.items():
        assert path.exists(), name
        assert path.suffix == ".gguf", name


@pytest.mark.parametrize(
    ("name", "region"),
    [
        ("truncated_kv", ("kv_start", "kv_end")),
        ("truncated_tensor_info", ("ti_start", "ti_end")),
        ("truncated_tensor_data", ("data_start", "file_size")),
    ],
)
def test_truncated_inside_named_region(
    name: str, region: tuple[str, str], corrupt_models: dict[str, Path], tiny_model_path: Path
) -> None:
    """Each truncated file is a strict prefix of the model ending inside its named region."""
    lay = mf.gguf_layout(tiny_model_path)
    start, end = (getattr(lay, attr) for attr in region)
    data = corrupt_models[name].read_bytes()
    assert start < len(data) < end
    assert tiny_model_path.read_bytes().startswith(data)


def test_truncated_header(corrupt_models: dict[str, Path], tiny_model_path: Path) -> None:
    """The first 10 bytes: inside the 24-byte fixed header."""
    data = corrupt_models["truncated_header"].read_bytes()
    assert data == tiny_model_path.read_bytes()[:10]
    assert len(data) < mf.GGUF_HEADER_SIZE


def test_bad_magic(corrupt_models: dict[str, Path], tiny_model_path: Path) -> None:
    """Only the 4 magic bytes differ."""
    data, orig = corrupt_models["bad_magic"].read_bytes(), tiny_model_path.read_bytes()
    assert data[:4] != mf.GGUF_MAGIC
    assert data[4:] == orig[4:]


def test_bitflips_are_in_kv_region(corrupt_models: dict[str, Path], tiny_model_path: Path) -> None:
    """Exactly one bit differs at each of the seeded offsets, all inside the KV table."""
    lay = mf.gguf_layout(tiny_model_path)
    orig = np.frombuffer(tiny_model_path.read_bytes(), dtype=np.uint8)
    data = np.frombuffer(corrupt_models["bitflip_kv"].read_bytes(), dtype=np.uint8)
    assert data.shape == orig.shape
    diff = np.flatnonzero(orig != data)
    assert diff.tolist() == mf.bitflip_offsets(lay)
    assert all(lay.kv_start <= int(o) < lay.kv_end for o in diff)
    for o in diff:
        assert int(orig[o] ^ data[o]).bit_count() == 1


@pytest.mark.parametrize(
    ("name", "offset", "value"),
    [
        ("huge_tensor_count", 8, 2**63 - 1),
        ("huge_kv_count", 16, 2**63 - 1),
        ("huge_string_length", mf.GGUF_HEADER_SIZE, 2**62),
    ],
)
def test_huge_header_values(
    name: str, offset: int, value: int, corrupt_models: dict[str, Path], tiny_model_path: Path
) -> None:
    """One u64 is patched; everything else is the original file."""
    data, orig = corrupt_models[name].read_bytes(), tiny_model_path.read_bytes()
    assert struct.unpack_from("<Q", data, offset)[0] == value
    assert data[:offset] == orig[:offset]
    assert data[offset + 8 :] == orig[offset + 8 :]


def test_non_gguf_files(corrupt_models: dict[str, Path]) -> None:
    """Empty file, a text file, a directory."""
    assert corrupt_models["empty"].is_file()
    assert corrupt_models["empty"].stat().st_size == 0
    text = corrupt_models["text"].read_bytes()
    assert text and not text.startswith(mf.GGUF_MAGIC)
    text.decode("utf-8")
    assert corrupt_models["directory"].is_dir()


@pytest.mark.parametrize("name", sorted(ALL_VARIANTS - {"truncated_tensor_data"}))
def test_header_walk_rejects_corrupt(name: str, corrupt_models: dict[str, Path]) -> None:
    """Every variant but the short-data one has a header that cannot be parsed."""
    with pytest.raises((ValueError, OSError)):
        mf.gguf_layout(corrupt_models[name])


def test_corrupt_variants_are_deterministic(tiny_model_path: Path, tmp_path: Path) -> None:
    """Writing the set twice gives the same bytes."""
    a = mf.write_corrupt_models(tiny_model_path, tmp_path / "a")
    b = mf.write_corrupt_models(tiny_model_path, tmp_path / "b")
    for name in ALL_VARIANTS:
        if a[name].is_file():
            assert a[name].read_bytes() == b[name].read_bytes(), name
