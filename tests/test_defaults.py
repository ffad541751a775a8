"""Defaults live in one place, the core (``ev_config_default``,
``ev_generation_params_default`` and their extras): Python reads them and the
CLI help shows them; a bad value names its field (``ConfigurationException.field``)."""

from __future__ import annotations

import ast
import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from edgeveda_ffi import Config, ConfigurationException, EdgeVeda, GenerationParams
from edgeveda_ffi.engine.bindings import ffi, lib

CONFIG_PY = Path(__file__).resolve().parents[1] / "edgeveda_ffi" / "engine" / "config.py"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-6)
    return bool(a == b)


def test_config_defaults_are_the_cores() -> None:
    c = ffi.new("ev_config*")
    lib.ev_config_default(c)
    cfg = Config(model_path="m.gguf")
    for f in dataclasses.fields(Config):
        # cpu_extra_buffers: the environment may override the core's default
        # (test_extra_buffers.py covers it)
        if f.name in ("model_path", "cpu_extra_buffers"):
            continue
        got, want = getattr(cfg, f.name), getattr(c, f.name)
        assert _same(got, want), (f.name, got, want)


def test_generation_defaults_are_the_cores() -> None:
    p = ffi.new("ev_generation_params*")
    lib.ev_generation_params_default(p)
    x = ffi.new("ev_generation_extras*")
    lib.ev_generation_extras_default(x)
    params = GenerationParams()
    for f in dataclasses.fields(GenerationParams):
        got = getattr(params, f.name)
        if f.name == "seed":
            assert got is None and x.seed == -2  # -2: "the engine's config seed"
        elif f.name == "min_p":
            assert _same(got, x.min_p)
        elif f.name == "logprobs":
            assert got is False and x.top_logprobs == -1  # -1: off
        elif f.name == "top_logprobs":
            assert got == 0
        elif f.name == "logit_bias":
            assert got == () and x.logit_bias == ffi.NULL and x.num_logit_bias == 0
        elif f.name == "stop":
            assert got == () and p.num_stop_sequences == 0
        elif f.name in ("grammar", "grammar_root"):
            assert (
                got is None
                and getattr(p, f"{f.name}_str" if f.name == "grammar" else f.name) == ffi.NULL
            )
        else:
            assert _same(got, getattr(p, f.name)), (f.name, got, getattr(p, f.name))


def test_config_py_restates_no_default() -> None:
    """Every default in config.py that the core has is read from it: no literal
    value in a field's default (only None or () for fields the core has no
    default for)."""
    tree = ast.parse(CONFIG_PY.read_text())
    checked = 0
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        if cls.name not in ("Config", "GenerationParams"):
            continue
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                checked += 1
                v = stmt.value
                target = stmt.target.id if isinstance(stmt.target, ast.Name) else "?"
                if isinstance(v, ast.Constant) and v.value is None:
                    continue
                if isinstance(v, ast.Tuple) and not v.elts:
                    continue
                src = ast.unparse(v)
                assert "_C_CONFIG[" in src or "_C_PARAMS[" in src, (target, src)
    assert checked >= 25


def test_cli_help_shows_the_cores_defaults() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgeveda_ffi", "generate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    text = " ".join(out.split())
    d = GenerationParams()
    c = Config(model_path="m.gguf")
    assert f"(default {d.max_tokens})" in text
    assert f"0 = greedy (default {d.temperature})" in text
    assert f"nucleus sampling (default {d.top_p})" in text
    assert f"0 = off (default {d.top_k})" in text
    assert f"1 = off (default {d.repeat_penalty})" in text
    assert f"context size in tokens (default {c.context_size};" in text


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 2.0}, "top_p"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"stop": ("ok", "")}, "stop"),
        ({"seed": -5}, "seed"),
    ],
)
def test_bad_generation_parameter_names_its_field(kwargs: Any, field: str) -> None:
    with pytest.raises(ConfigurationException) as info:
        GenerationParams(**kwargs)
    assert info.value.field == field


def test_bad_config_value_names_its_field() -> None:
    with pytest.raises(ConfigurationException) as info:
        Config(model_path="m.gguf", context_size=-1)
    assert info.value.field == "context_size"
    with pytest.raises(ConfigurationException) as info:
        Config(model_path="m.gguf", flash_attn=3)
    assert info.value.field == "flash_attn"


# Numeric bounds Python checks, as (field, rejected value, accepted boundary values).
# The core checks the same fields for its C callers (native/src/params.cpp).
BOUNDS = [
    ("max_tokens", -1, (0, 3)),
    ("temperature", -0.1, (0.0,)),
    ("top_p", 1.5, (0.0, 1.0)),
    ("top_p", -0.1, ()),
    ("top_k", -1, (0,)),
    ("repeat_penalty", 0.0, (0.5,)),
    ("frequency_penalty", math.inf, (-2.0, 2.0)),
    ("presence_penalty", math.nan, (-2.0,)),
    ("confidence_threshold", 1.5, (0.0, 1.0)),
    ("min_p", -0.1, (0.0, 1.0)),
    ("top_logprobs", 21, (0, 20)),
]


def _core_generate(engine: Any, field: str, value: Any) -> int:
    """ev_generate with ``field`` set to ``value`` in a raw ev_generation_params
    (no Python validation in between); returns the core's code."""
    p = ffi.new("ev_generation_params*")
    lib.ev_generation_params_default(p)
    p.max_tokens = 2
    if field in ("min_p", "top_logprobs"):
        x = ffi.new("ev_generation_extras*")
        lib.ev_generation_extras_default(x)
        setattr(x, field, value)
        p.reserved = x
    else:
        setattr(p, field, value)
    out = ffi.new("char**")

    def call(ctx: Any) -> int:
        code = int(lib.ev_generate(ctx, b"hi", p, out))
        if code == 0:
            lib.ev_free_string(out[0])
        return code

    return int(engine._call(call))


@pytest.fixture(scope="module")
def bounds_engine(tiny_model_path: Path) -> Iterator[EdgeVeda]:
    # an engine of its own: the raw calls below set this thread's last stats
    with EdgeVeda(tiny_model_path, context_size=256, num_threads=1) as engine:
        yield engine


@pytest.mark.parametrize(("field", "bad", "good"), BOUNDS)
def test_python_and_the_core_agree_on_bounds(
    bounds_engine: EdgeVeda, field: str, bad: Any, good: Any
) -> None:
    with pytest.raises(ConfigurationException) as info:
        GenerationParams(**{field: bad})
    assert info.value.field == field
    assert _core_generate(bounds_engine, field, bad) == -1  # EV_ERROR_INVALID_PARAM
    for value in good:
        GenerationParams(**{field: value})
        assert _core_generate(bounds_engine, field, value) == 0, (field, value)
