"""``edgeveda generate | chat | info | bench``: the commands that run the engine."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from .. import CPU_EXTRA_BUFFERS_ENV, __version__, response_format_grammar
from ..errors import ConfigurationException
from .common import (
    EXIT_OK,
    JSON_GBNF,
    CliError,
    Interrupted,
    UsageError,
    human_bytes,
    resolve_model,
    usage_from_config_error,
    write_stream,
)

if TYPE_CHECKING:
    from .. import EdgeVeda, GenerationParams, ModelManager

__all__ = ["cmd_generate", "cmd_chat", "cmd_info", "cmd_bench", "manager_of"]


def manager_of(args: argparse.Namespace) -> ModelManager:
    """The ModelManager of ``--models-dir`` (else the default folder)."""
    from .. import ModelManager

    return ModelManager(models_dir=getattr(args, "models_dir", None))


def _gen_params(args: argparse.Namespace) -> GenerationParams:
    """GenerationParams from the flags, validated before any work (exit 2 if bad)."""
    from .. import GenerationParams

    chosen = [
        f
        for f, on in (
            ("--json", args.json),
            ("--grammar", args.grammar is not None),
            ("--json-schema", args.json_schema is not None),
        )
        if on
    ]
    if len(chosen) > 1:
        raise UsageError(f"{chosen[0]} and {chosen[1]} cannot be used together")
    kw: Dict[str, Any] = {}
    for name in ("max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed"):
        value = getattr(args, name)
        if value is not None:
            kw[name] = value
    if args.stop:
        kw["stop"] = tuple(args.stop)
    if args.json:
        kw["grammar"] = JSON_GBNF
    elif args.grammar is not None:
        kw["grammar"] = args.grammar
    try:
        if args.json_schema is not None:
            kw["grammar"] = response_format_grammar(
                {"type": "json_schema", "json_schema": {"schema": args.json_schema}}
            )
        return GenerationParams(**kw)
    except ConfigurationException as exc:
        raise usage_from_config_error(exc) from None


def _config_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """Config fields from the flags, validated before any work (exit 2 if bad)."""
    from .. import Config

    kw: Dict[str, Any] = {}
    if args.ctx_size is not None:
        kw["context_size"] = args.ctx_size
    if args.threads is not None:
        kw["num_threads"] = args.threads
    if args.backend is not None:
        kw["backend"] = args.backend
    if args.cpu_extra_buffers is not None:
        kw["cpu_extra_buffers"] = args.cpu_extra_buffers
    try:
        Config(model_path="-", **kw)
    except ConfigurationException as exc:
        raise usage_from_config_error(exc) from None
    return kw


def _open_engine(
    path: Path, config_kwargs: Dict[str, Any], params: Optional[GenerationParams] = None
) -> EdgeVeda:
    from .. import EdgeVeda

    return EdgeVeda(path, defaults=params, **config_kwargs)


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _note(text: str) -> None:
    print(f"edgeveda: {text}", file=sys.stderr, flush=True)


def _stats_line(stats: Any) -> str:
    tps = stats.tokens_per_second
    return (
        f"{stats.prompt_tokens} prompt tokens ({stats.cached_tokens} cached) in "
        f"{stats.prompt_ms:.0f} ms; {stats.completion_tokens} generated"
        + (f" at {tps:.1f} tok/s" if tps else "")
        + f"; first token {stats.first_token_ms:.0f} ms; finish: {stats.finish_reason.value}"
    )


def _read_prompt(arg: str) -> str:
    prompt = sys.stdin.read() if arg == "-" else arg
    if not prompt.strip():
        raise UsageError("the prompt is empty" + (" (nothing on stdin)" if arg == "-" else ""))
    return prompt.rstrip("\n") if arg == "-" else prompt


def _messages(system: Optional[str], prompt: str) -> List[Dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": prompt}]


# ----------------------------------------------------------------------- commands


def cmd_generate(args: argparse.Namespace) -> int:
    params = _gen_params(args)
    cfg = _config_kwargs(args)
    prompt = _read_prompt(args.prompt)
    if args.raw and args.system:
        raise UsageError("--system needs the chat template (drop --raw)")
    path = resolve_model(manager_of(args), args.model)
    with _open_engine(path, cfg, params) as engine:
        text_prompt = (
            prompt if args.raw else engine.apply_chat_template(_messages(args.system, prompt))
        )
        if args.format == "json" or args.no_stream:
            result = engine.generate(text_prompt)
            stats = result.stats
            if args.format == "json":
                print(
                    json.dumps(
                        {
                            "model": str(path),
                            "text": result.text,
                            "finish_reason": result.finish_reason.value,
                            "prompt_tokens": stats.prompt_tokens,
                            "cached_tokens": stats.cached_tokens,
                            "completion_tokens": stats.completion_tokens,
                            "prompt_ms": round(stats.prompt_ms, 3),
                            "generation_ms": round(stats.generation_ms, 3),
                            "first_token_ms": round(stats.first_token_ms, 3),
                            "tokens_per_second": stats.tokens_per_second,
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                _out(result.text + "\n")
        else:
            stream = engine.stream(text_prompt)
            interrupted = write_stream(stream, _out)
            _out("\n")
            if interrupted:
                raise Interrupted("generation interrupted")
            stats = engine.last_stats
        if args.verbose:
            _note(_stats_line(stats))
    return EXIT_OK


def cmd_chat(args: argparse.Namespace) -> int:
    from .chat import run_chat

    params = _gen_params(args)
    cfg = _config_kwargs(args)
    path = resolve_model(manager_of(args), args.model)
    with _open_engine(path, cfg, params) as engine:
        return run_chat(engine, system=args.system, verbose=bool(args.verbose), write=_out)


def _cpu_features(system_info: str) -> List[str]:
    feats: List[str] = []
    for part in system_info.replace("CPU :", "|").split("|"):
        name, _, value = part.partition("=")
        if value.strip() == "1" and name.strip():
            feats.append(name.strip())
    return feats


# Entries of ggml's CPU feature list that are build options, not instruction sets.
_CPU_BUILD_OPTIONS = ("LLAMAFILE", "OPENMP", "REPACK", "KLEIDIAI", "ACCELERATE")


def _cpu_extra_buffers_setting(args: argparse.Namespace) -> Dict[str, Any]:
    """The extra-buffers switch in force for this command, and where it came from."""
    from .. import cpu_extra_buffers_from_env

    if args.cpu_extra_buffers is not None:
        return {"enabled": args.cpu_extra_buffers == "on", "source": "--cpu-extra-buffers"}
    env = cpu_extra_buffers_from_env()  # a bad value was refused by _config_kwargs
    if env is not None:
        return {"enabled": env, "source": CPU_EXTRA_BUFFERS_ENV}
    return {"enabled": True, "source": "default"}


def _mib_list(buffers: Dict[str, float]) -> str:
    return ", ".join(f"{name} {mib:.1f} MiB" for name, mib in buffers.items()) or "-"


def _variant_text(data: Dict[str, Any]) -> str:
    name = str(data["cpu_variant"])
    if not data["cpu_variants"]:
        how = "-march=native" if name == "native" else "no -march"
        return f"{name} (compiled in by a source build, {how})"
    if data["cpu_variant_source"] != "default":
        return f"{name} ({data['cpu_variant_source']})"
    return f"{name} (the best of the wheel's variants for this CPU)"


def _variants_text(data: Dict[str, Any]) -> str:
    runs = [v["name"] for v in data["cpu_variants"] if v["score"] > 0]
    others = [v["name"] for v in data["cpu_variants"] if v["score"] <= 0]
    return " ".join(runs) + (f"; not for this CPU: {' '.join(others)}" if others else "")


def cmd_info(args: argparse.Namespace) -> int:
    cfg = _config_kwargs(args)
    try:
        from .. import native_info
    except ImportError as exc:
        raise CliError(str(exc)) from exc
    from .. import CPU_VARIANT_ENV, DEFAULT_MODEL_ID, cpu_variants

    ni = native_info()  # a refused $EDGEVEDA_CPU_VARIANT raises its typed error here
    backends = ni["backends"]
    assert isinstance(backends, dict)
    manager = manager_of(args)
    data: Dict[str, Any] = {
        "version": __version__,
        "api_version": ni["api_version"],
        "llama_cpp": ni["llama_cpp"],
        "python": sys.version.split()[0],
        "detected_backend": ni["detected_backend"],
        "backends": {k: v for k, v in backends.items() if k != "auto"},
        "cpu_variant": ni["cpu_variant"],
        "cpu_variant_source": CPU_VARIANT_ENV
        if os.environ.get(CPU_VARIANT_ENV, "").strip()
        else "default",
        "cpu_variants": [dataclasses.asdict(v) for v in cpu_variants()],
        "cpu_features": _cpu_features(str(ni["system_info"])),
        "system_info": ni["system_info"],
        "cpu_extra_buffers": _cpu_extra_buffers_setting(args),
        "models_dir": str(manager.models_dir),
        "default_model": DEFAULT_MODEL_ID,
        "default_model_downloaded": manager.is_downloaded(DEFAULT_MODEL_ID),
    }
    if args.model is not None:
        path = resolve_model(manager, args.model)
        with _open_engine(path, cfg) as engine:
            data["model"] = {
                "path": str(path),
                "size_bytes": path.stat().st_size,
                **dataclasses.asdict(engine.model_info),
                "buffer_types": engine.buffer_types,
            }
            data["memory"] = engine.memory_stats().to_dict()
    if args.format == "json":
        print(json.dumps(data, indent=2))
        return EXIT_OK
    xb = data["cpu_extra_buffers"]
    avail = [k for k, v in data["backends"].items() if v]
    missing = [k for k, v in data["backends"].items() if not v]
    rows = [
        ("edgeveda-ffi", f"{data['version']} (C API {data['api_version']})"),
        ("llama.cpp", str(data["llama_cpp"])),
        ("python", data["python"]),
        (
            "backends",
            f"{', '.join(avail) or 'none'} (auto picks {data['detected_backend']})"
            + (f"; not available: {', '.join(missing)}" if missing else ""),
        ),
        ("cpu variant", _variant_text(data)),
        *([("cpu variants", _variants_text(data))] if data["cpu_variants"] else []),
        (
            "cpu features",
            " ".join(f for f in data["cpu_features"] if f not in _CPU_BUILD_OPTIONS) or "-",
        ),
        (
            "cpu build",
            " ".join(f for f in data["cpu_features"] if f in _CPU_BUILD_OPTIONS) or "-",
        ),
        (
            "cpu extra buffers",
            ("on" if xb["enabled"] else "off")
            + {
                "default": f" (default; {CPU_EXTRA_BUFFERS_ENV}=off or --cpu-extra-buffers off "
                "keeps the weights out of AMX/CPU_REPACK)",
                CPU_EXTRA_BUFFERS_ENV: f" ({CPU_EXTRA_BUFFERS_ENV})",
                "--cpu-extra-buffers": " (--cpu-extra-buffers)",
            }[xb["source"]],
        ),
        ("models dir", data["models_dir"]),
        (
            "default model",
            f"{DEFAULT_MODEL_ID} ("
            + ("downloaded" if data["default_model_downloaded"] else "fetched on first use")
            + ")",
        ),
    ]
    if "model" in data:
        m, mem = data["model"], data["memory"]
        rows += [
            (
                "model",
                f"{m['name']} ({m['architecture']}, {m['num_parameters'] / 1e6:.1f} M parameters)",
            ),
            ("model file", f"{m['path']} ({human_bytes(m['size_bytes'])})"),
            ("weight buffers", _mib_list(m["buffer_types"])),
            (
                "model shape",
                f"{m['num_layers']} layers, embedding {m['embedding_dim']}, "
                f"context {m['context_length']}",
            ),
            (
                "memory",
                f"{human_bytes(mem['current_bytes'])} (model {human_bytes(mem['model_bytes'])}, "
                f"context {human_bytes(mem['context_bytes'])}, "
                f"peak {human_bytes(mem['peak_bytes'])}, "
                f"limit {human_bytes(mem['limit_bytes']) if mem['limit_bytes'] else 'none'})",
            ),
        ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench, run_compare

    cfg = _config_kwargs(args)
    for flag, value, lo in (
        ("--prompt-tokens", args.prompt_tokens, 1),
        ("--gen-tokens", args.gen_tokens, 1),
        ("--repetitions", args.repetitions, 1),
    ):
        if value < lo:
            raise UsageError(f"argument {flag}: invalid value {value} (must be >= {lo})")
    path = resolve_model(manager_of(args), args.model)
    if args.compare is not None:
        extra = list(args.compare)
        if "num_threads" in cfg and "--threads" not in extra:
            extra += ["--threads", str(cfg["num_threads"])]
        return run_compare(path, extra)
    return run_bench(
        path,
        cfg,
        args.prompt_tokens,
        args.gen_tokens,
        args.repetitions,
        as_json=args.format == "json",
        write=_out,
    )
