"""The CPU's extra buffer types switch (``Config.cpu_extra_buffers``,
``$EDGEVEDA_CPU_EXTRA_BUFFERS``, ``--cpu-extra-buffers``) on real models.

llama.cpp puts weights in "extra buffer types" where it can: AMX (Intel Sapphire
Rapids and later) and CPU_REPACK (repacked layouts for some quant types). Off is
the escape hatch when one of those kernels misbehaves.

What this machine shows (AMD EPYC Zen 4, AVX-512, no AMX): llama.cpp has no
repacked layout for Q4_1, so SmolLM2 Q4_1 has its weights in ``CPU_Mapped``
(the mmap'ed file) with the switch on and off, and the same kernels give
identical texts. To see the switch act, the tests also write a Q4_0 copy of
SmolLM2 (requantized with the ``gguf`` package): its layer weights go to
``CPU_REPACK`` when on (``{"CPU_Mapped": 85.8, "CPU_REPACK": 57.0}`` MiB) and
stay in ``CPU_Mapped`` when off. The repacked kernels give the same numbers per
mul_mat, but through 30 layers the last bits grow into logit differences as
large as flash attention on/off makes, so greedy texts may part at a near-tie:
for the Q4_0 copy the test asks for the same answer (Paris, same text up to it),
not the same 16 tokens everywhere (native/tests/test_extra_buffers.c has the
numbers), and the log-probabilities of the tokens up to Paris within 0.5 nats
(they move by up to 0.20 here; equal to the bit where nothing was repacked).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from edgeveda_ffi import Config, ConfigurationException, EdgeVeda
from edgeveda_ffi.engine.config import CPU_EXTRA_BUFFERS_ENV

pytestmark = pytest.mark.smollm2

REPO = Path(__file__).resolve().parent.parent
PROMPTS = (
    "What is the capital of France?",
    "Name three primary colors.",
    "Write one sentence about the sea.",
)
EXTRA = ("REPACK", "AMX")  # the extra buffer types' names contain these
TIMEOUT = 300


def _extra_types(buffers: Dict[str, float]) -> List[str]:
    return [name for name in buffers if any(x in name for x in EXTRA)]


def _answers(path: Path, **config: object) -> Tuple[Dict[str, float], List[str]]:
    """Buffer types and the greedy answers (chat template, 16 tokens) to PROMPTS."""
    with EdgeVeda(path, context_size=512, num_threads=1, **config) as engine:  # type: ignore[arg-type]
        answers = [
            engine.chat([{"role": "user", "content": p}], temperature=0, max_tokens=16).text
            for p in PROMPTS
        ]
        return engine.buffer_types, answers


def _same_answer_up_to_paris(on: str, off: str) -> None:
    assert "Paris" in on and "Paris" in off, (on, off)
    assert on[: on.index("Paris") + 5] == off[: off.index("Paris") + 5], (on, off)


@pytest.fixture()
def no_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv(CPU_EXTRA_BUFFERS_ENV, raising=False)
    yield monkeypatch


@pytest.fixture(scope="module")
def q4_0_copy(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 with its Q4_1 weights requantized to Q4_0 (≈6 s), which llama.cpp repacks."""
    from gguf import (
        GGMLQuantizationType,
        GGUFReader,
        GGUFValueType,
        GGUFWriter,
        LlamaFileType,
        quants,
    )

    out = tmp_path_factory.mktemp("q4_0") / "smollm2-q4_0.gguf"
    reader = GGUFReader(smollm2_path)
    writer = GGUFWriter(out, str(reader.fields["general.architecture"].contents()))
    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        kind = f.types[0]
        if kind == GGUFValueType.ARRAY:
            sub = f.types[-1]
            value = (
                [bytes(f.parts[i]) for i in f.data] if sub == GGUFValueType.STRING else f.contents()
            )
            writer.add_key_value(name, value, kind, sub_type=sub)
        elif kind == GGUFValueType.STRING:
            writer.add_key_value(name, bytes(f.parts[-1]), kind)
        else:
            writer.add_key_value(name, f.contents(), kind)
    writer.add_file_type(int(LlamaFileType.MOSTLY_Q4_0))
    for t in reader.tensors:
        if t.tensor_type == GGMLQuantizationType.Q4_1:
            q = quants.quantize(quants.dequantize(t.data, t.tensor_type), GGMLQuantizationType.Q4_0)
            writer.add_tensor(t.name, q, raw_dtype=GGMLQuantizationType.Q4_0)
        else:
            writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _repack_expected() -> bool:
    """The build repacks Q4_0 on this CPU: REPACK compiled in, and AVX2 (x86) or NEON (ARM)."""
    from edgeveda_ffi import native_info

    info = str(native_info()["system_info"])
    return "REPACK = 1" in info and ("AVX2 = 1" in info or "NEON = 1" in info)


# ------------------------------------------------------------------------- the model


def test_smollm2_on_off_same_greedy_answers(smollm2_path: Path, no_env: object) -> None:
    on_bufs, on = _answers(smollm2_path, cpu_extra_buffers=True)
    off_bufs, off = _answers(smollm2_path, cpu_extra_buffers="off")
    print(f"\non:  {on_bufs}\noff: {off_bufs}")
    assert on_bufs and off_bufs
    assert not _extra_types(off_bufs), off_bufs
    assert "Paris" in on[0] and "Paris" in off[0], (on[0], off[0])
    if not _extra_types(on_bufs):
        # no extra buffer type for Q4_1 here: the same kernels, the same texts
        assert on_bufs == off_bufs
        assert on == off
    else:  # e.g. AMX, which takes Q4_1: the same answer
        _same_answer_up_to_paris(on[0], off[0])
    # the default (nothing given, no environment) is on
    def_bufs, default = _answers(smollm2_path)
    assert def_bufs == on_bufs and default == on


def test_q4_0_copy_is_repacked_only_when_on(q4_0_copy: Path, no_env: object) -> None:
    on_bufs, on = _answers(q4_0_copy, cpu_extra_buffers="ON")
    off_bufs, off = _answers(q4_0_copy, cpu_extra_buffers=False)
    print(f"\non:  {on_bufs} {on}\noff: {off_bufs} {off}")
    assert not _extra_types(off_bufs), off_bufs
    if _repack_expected():
        assert any("REPACK" in name for name in on_bufs), on_bufs
    # the sizes are the model's buffers (MiB, one decimal)
    for bufs in (on_bufs, off_bufs):
        assert all(mib > 0 for mib in bufs.values()), bufs
    _same_answer_up_to_paris(on[0], off[0])
    for a, b in zip(on, off):
        assert a and b


#: How far a chosen token's logprob (nats) may move between the layouts. Measured
#: on the France prompt: 0 when the weights sit in the same buffers (the same
#: kernels), up to 0.20 for the Q4_0 copy repacked or not (Zen 4, AVX-512).
LOGPROB_TOLERANCE = 0.5


def _chosen_logprobs(path: Path, on: bool) -> Tuple[Dict[str, float], List[Tuple[str, float]]]:
    """Buffer types and (token, logprob) of the greedy answer to the France prompt, up to Paris."""
    with EdgeVeda(path, context_size=512, num_threads=1, cpu_extra_buffers=on) as engine:
        out = engine.create_chat_completion(
            [{"role": "user", "content": PROMPTS[0]}],
            temperature=0,
            max_tokens=8,
            logprobs=True,
            top_logprobs=1,
        )
        logprobs = out["choices"][0]["logprobs"]
        assert logprobs is not None
        tokens = [(e["token"], e["logprob"]) for e in logprobs["content"]]
        return engine.buffer_types, tokens


@pytest.mark.parametrize("model", ["smollm2", "q4_0_copy"])
def test_on_off_logprobs_close(model: str, request: pytest.FixtureRequest, no_env: object) -> None:
    """"Logits close", in numbers: the same greedy tokens up to "Paris", and the
    log-probability the sampler gave each (ev_logprobs, from the distribution it
    sampled) equal where the weights sit in the same buffers either way and
    within LOGPROB_TOLERANCE where the extra buffers (REPACK, AMX) took them."""
    path = request.getfixturevalue("smollm2_path" if model == "smollm2" else "q4_0_copy")
    on_bufs, on = _chosen_logprobs(path, True)
    off_bufs, off = _chosen_logprobs(path, False)
    print(f"\non:  {on_bufs} {on}\noff: {off_bufs} {off}")
    text_on = "".join(tok for tok, _ in on)
    assert "Paris" in text_on, on
    n = next(i for i in range(len(on)) if "Paris" in "".join(tok for tok, _ in on[: i + 1])) + 1
    assert [tok for tok, _ in on[:n]] == [tok for tok, _ in off[:n]], (on, off)
    deltas = [abs(a - b) for (_, a), (_, b) in zip(on[:n], off[:n])]
    if not _extra_types(on_bufs):
        assert on_bufs == off_bufs
        assert max(deltas) == 0.0, deltas  # the same kernels: the same numbers
    else:
        assert max(deltas) <= LOGPROB_TOLERANCE, deltas


def test_environment_variable_is_used_when_the_field_is_not_given(
    q4_0_copy: Path, no_env: pytest.MonkeyPatch
) -> None:
    no_env.setenv(CPU_EXTRA_BUFFERS_ENV, "Off")
    assert Config(model_path="m.gguf").cpu_extra_buffers is False
    with EdgeVeda(q4_0_copy, context_size=256, num_threads=1) as engine:
        assert engine.config.cpu_extra_buffers is False
        assert not _extra_types(engine.buffer_types), engine.buffer_types
    # the field wins over the environment
    with EdgeVeda(q4_0_copy, context_size=256, num_threads=1, cpu_extra_buffers="on") as engine:
        if _repack_expected():
            assert _extra_types(engine.buffer_types), engine.buffer_types
    no_env.setenv(CPU_EXTRA_BUFFERS_ENV, "on")
    assert Config(model_path="m.gguf").cpu_extra_buffers is True
    assert Config(model_path="m.gguf", cpu_extra_buffers="OFF").cpu_extra_buffers is False
    no_env.setenv(CPU_EXTRA_BUFFERS_ENV, "")  # empty = unset: the default, on
    assert Config(model_path="m.gguf").cpu_extra_buffers is True


# ------------------------------------------------------------------------ bad values


@pytest.mark.parametrize("value", ["bogus", "", "yes", "1", 1, 0, 1.0, []])
def test_bad_field_value(value: object, smollm2_path: Path, no_env: object) -> None:
    with pytest.raises(ConfigurationException) as info:
        Config(model_path="m.gguf", cpu_extra_buffers=value)  # type: ignore[arg-type]
    text = str(info.value)
    assert "cpu_extra_buffers" in text and repr(value) in text
    assert "'on'" in text and "'off'" in text and "True" in text
    assert isinstance(info.value, ValueError)
    with pytest.raises(ConfigurationException, match="cpu_extra_buffers"):
        EdgeVeda(smollm2_path, cpu_extra_buffers=value)


@pytest.mark.parametrize("value", ["bogus", "true", "0", "of f"])
def test_bad_environment_value(value: str, smollm2_path: Path, no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv(CPU_EXTRA_BUFFERS_ENV, value)
    with pytest.raises(ConfigurationException) as info:
        Config(model_path="m.gguf")
    text = str(info.value)
    assert CPU_EXTRA_BUFFERS_ENV in text and repr(value) in text
    assert "'on'" in text and "'off'" in text
    with pytest.raises(ConfigurationException, match=CPU_EXTRA_BUFFERS_ENV):
        EdgeVeda(smollm2_path)
    # a value given in the config does not read the environment
    assert Config(model_path="m.gguf", cpu_extra_buffers=True).cpu_extra_buffers is True


def test_native_validation_of_ev_config_extras(smollm2_path: Path) -> None:
    """The C contract, through the raw binding: a bad ev_config_extras fails
    ev_init with INVALID_PARAM naming the field."""
    from edgeveda_ffi.engine.bindings import check_native, ffi, lib

    def init(struct_size: Optional[int] = None, on: int = 1, reserved: int = 0) -> None:
        c = ffi.new("ev_config*")
        lib.ev_config_default(c)
        path = ffi.new("char[]", os.fsencode(smollm2_path))
        c.model_path = path
        c.context_size = 256
        c.num_threads = 1
        x = ffi.new("ev_config_extras*")
        lib.ev_config_extras_default(x)
        assert x.struct_size == ffi.sizeof("ev_config_extras") and x.cpu_extra_buffers == 1
        if struct_size is not None:
            x.struct_size = struct_size
        x.cpu_extra_buffers = on
        x.reserved[6] = reserved
        c.reserved = x
        err = ffi.new("ev_error_t*")
        ctx = lib.ev_init(c, err)
        if ctx != ffi.NULL:
            lib.ev_free(ctx)
        check_native(err[0])

    for kwargs, needle in (
        ({"struct_size": 0}, "struct_size"),
        ({"struct_size": ffi.sizeof("ev_config_extras") + 8}, "struct_size"),
        ({"on": 2}, "cpu_extra_buffers"),
        ({"reserved": 1}, "reserved[6]"),
    ):
        with pytest.raises(ConfigurationException, match=needle.replace("[", r"\[")):
            init(**kwargs)  # type: ignore[arg-type]
    init(on=0)  # valid: loads
    assert lib.ev_model_buffer_types(ffi.NULL) == ffi.NULL


# ------------------------------------------------------------------------------- CLI


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k not in (CPU_EXTRA_BUFFERS_ENV, "EDGEVEDA_MODEL")}
    e["EDGEVEDA_MODELS_DIR"] = str(tmp_path / "models")
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "edgeveda_ffi.cli", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=TIMEOUT,
        cwd=str(tmp_path),
        stdin=subprocess.DEVNULL,
    )


def _row(stdout: str, key: str) -> str:
    rows = [line for line in stdout.splitlines() if line.startswith(key + "  ")]
    assert len(rows) == 1, stdout
    return rows[0][len(key) :].strip()


@pytest.mark.parametrize("command", ["generate", "chat", "info", "bench"])
def test_cli_bad_flag_value_exits_2(command: str, tmp_path: Path) -> None:
    args = [command, "--cpu-extra-buffers", "bogus"] + (["hi"] if command == "generate" else [])
    p = _cli(tmp_path, *args)
    assert p.returncode == 2, p
    assert "--cpu-extra-buffers" in p.stderr and "bogus" in p.stderr and "'off'" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_cli_bad_environment_value_exits_2(tmp_path: Path) -> None:
    p = _cli(tmp_path, "info", **{CPU_EXTRA_BUFFERS_ENV: "bogus"})
    assert p.returncode == 2, p
    assert CPU_EXTRA_BUFFERS_ENV in p.stderr and "bogus" in p.stderr
    assert "Traceback" not in p.stderr


def test_cli_info_shows_the_setting_and_the_buffer_types(
    smollm2_path: Path, q4_0_copy: Path, tmp_path: Path
) -> None:
    p = _cli(tmp_path, "info", "--threads", "1")
    assert p.returncode == 0, p.stderr
    assert _row(p.stdout, "cpu extra buffers").startswith("on (default")
    features = _row(p.stdout, "cpu features")
    assert features != "-" and "OPENMP" not in features
    p = _cli(tmp_path, "info", **{CPU_EXTRA_BUFFERS_ENV: "OFF"})
    assert p.returncode == 0, p.stderr
    assert _row(p.stdout, "cpu extra buffers") == f"off ({CPU_EXTRA_BUFFERS_ENV})"

    for model in (smollm2_path, q4_0_copy):
        p = _cli(
            tmp_path, "info", "--model", str(model), "--threads", "1", "--cpu-extra-buffers", "off"
        )
        assert p.returncode == 0, p.stderr
        assert _row(p.stdout, "cpu extra buffers") == "off (--cpu-extra-buffers)"
        weights = _row(p.stdout, "weight buffers")
        print(f"\n{model.name} off: {weights}")
        assert "CPU" in weights and "MiB" in weights
        assert "REPACK" not in weights and "AMX" not in weights
    # on (the environment says off; the flag wins): the Q4_0 copy is repacked
    p = _cli(
        tmp_path,
        "info",
        "--model",
        str(q4_0_copy),
        "--threads",
        "1",
        "--cpu-extra-buffers",
        "on",
        **{CPU_EXTRA_BUFFERS_ENV: "off"},
    )
    assert p.returncode == 0, p.stderr
    weights = _row(p.stdout, "weight buffers")
    print(f"{q4_0_copy.name} on: {weights}")
    if _repack_expected():
        assert "CPU_REPACK" in weights
    p = _cli(
        tmp_path,
        "info",
        "--model",
        str(q4_0_copy),
        "--threads",
        "1",
        "--format",
        "json",
        "--cpu-extra-buffers",
        "off",
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["cpu_extra_buffers"] == {"enabled": False, "source": "--cpu-extra-buffers"}
    assert data["model"]["buffer_types"] and not _extra_types(data["model"]["buffer_types"])


def test_cli_generate_honours_the_flag(smollm2_path: Path, tmp_path: Path) -> None:
    out = []
    for value in ("on", "off"):
        p = _cli(
            tmp_path,
            "-v",
            "generate",
            "--model",
            str(smollm2_path),
            "--threads",
            "1",
            "-t",
            "0",
            "-n",
            "16",
            "--cpu-extra-buffers",
            value,
            "What is the capital of France?",
        )
        assert p.returncode == 0, p.stderr
        # the core says so in llama.cpp's log (-v)
        assert ("cpu extra buffer types off" in p.stderr) == (value == "off"), p.stderr[-2000:]
        out.append(p.stdout)
    assert "Paris" in out[0] and out[0] == out[1]
