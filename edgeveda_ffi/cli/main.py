"""The ``edgeveda`` command.

    edgeveda generate "What is the capital of France?"
    edgeveda chat
    edgeveda models list | download ID | rm ID | path ID | verify ID | import PATH --id ID
    edgeveda info [--model ID_OR_PATH]
    edgeveda bench [--model ID_OR_PATH]

Exit codes: 0 success, 1 a runtime error (model, download, inference, file),
2 a bad command line, 130 Ctrl-C. Errors are one line on stderr;
``--debug`` adds the traceback. llama.cpp's logs are quiet unless ``-v``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, NoReturn, Optional, Sequence

from .. import CPU_EXTRA_BUFFERS_ENV, HEADER_VERSION, __version__
from ..errors import ConfigurationException, EdgeVedaException
from .common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    JSON_GBNF,
    MODEL_ENV,
    CliError,
    Interrupted,
    UsageError,
    error_line,
    fetch_model,
    human_bytes,
    resolve_model,
    setup_logging,
    usage_from_config_error,
    verify_model,
    write_stream,
)

if TYPE_CHECKING:
    from .. import EdgeVeda, GenerationParams
    from ..models.manager import ModelManager

__all__ = ["main", "build_parser"]

PROG = "edgeveda"


# ----------------------------------------------------------------------------- parser


def _core_default(kind: str, name: str) -> str:
    """A default of the core (``ev_config_default`` / ``ev_generation_params_default``,
    as ``Config`` and ``GenerationParams`` read them), for the help text; "the
    core's" when the extension cannot be loaded (``edgeveda --help`` still works)."""
    try:
        from .. import Config, GenerationParams
    except ImportError:
        return "the core's"
    cls = Config if kind == "config" else GenerationParams
    return str(next(f.default for f in dataclasses.fields(cls) if f.name == name))


def _C(name: str) -> str:
    return _core_default("config", name)


def _G(name: str) -> str:
    return _core_default("params", name)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _text_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{path!r} is not UTF-8 text") from None


def _common_options() -> _Parser:
    # Defaults are SUPPRESS so these may come before or after the subcommand.
    p = _Parser(add_help=False)
    g = p.add_argument_group("general options")
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="show llama.cpp's logs and timings (-vv: debug logs)",
    )
    g.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error",
    )
    g.add_argument(
        "--models-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="models folder (default: $EDGEVEDA_MODELS_DIR, else the user data folder)",
    )
    return p


def _model_options(model_help: Optional[str] = None) -> _Parser:
    p = _Parser(add_help=False)
    g = p.add_argument_group("model options")
    g.add_argument(
        "-m",
        "--model",
        metavar="ID_OR_PATH",
        default=None,
        help=model_help
        or f"a model id or a GGUF file (default: ${MODEL_ENV}, "
        "else the default model, fetched on first use)",
    )
    g.add_argument(
        "--ctx-size",
        type=int,
        metavar="N",
        default=None,
        help=f"context size in tokens (default {_C('context_size')}; 0 = the model's own)",
    )
    g.add_argument(
        "--threads",
        type=int,
        metavar="N",
        default=None,
        help=f"CPU threads (default {_C('num_threads')}; 0 = auto)",
    )
    g.add_argument(
        "--backend",
        choices=["auto", "cpu", "vulkan", "metal"],
        default=None,
        help="compute backend (default auto)",
    )
    g.add_argument(
        "--cpu-extra-buffers",
        choices=["on", "off"],
        default=None,
        help="let llama.cpp put weights in the CPU's extra buffer types (AMX, CPU_REPACK); "
        f"off is the escape hatch for a misbehaving CPU kernel (default: ${CPU_EXTRA_BUFFERS_ENV}, "
        "else on)",
    )
    return p


def _sampling_options() -> _Parser:
    p = _Parser(add_help=False)
    g = p.add_argument_group("generation options")
    g.add_argument(
        "-n",
        "--max-tokens",
        type=int,
        metavar="N",
        default=None,
        help=f"most tokens to generate (default {_G('max_tokens')})",
    )
    g.add_argument(
        "-t",
        "--temperature",
        type=float,
        metavar="T",
        default=None,
        help=f"sampling temperature; 0 = greedy (default {_G('temperature')})",
    )
    g.add_argument(
        "--top-p",
        type=float,
        metavar="P",
        default=None,
        help=f"nucleus sampling (default {_G('top_p')})",
    )
    g.add_argument(
        "--top-k",
        type=int,
        metavar="K",
        default=None,
        help=f"top-k sampling; 0 = off (default {_G('top_k')})",
    )
    g.add_argument(
        "--min-p",
        type=float,
        metavar="P",
        default=None,
        help=f"min-p sampling; 0 = off (default {_G('min_p')})",
    )
    g.add_argument(
        "--repeat-penalty",
        type=float,
        metavar="X",
        default=None,
        help=f"repetition penalty; 1 = off (default {_G('repeat_penalty')})",
    )
    g.add_argument(
        "--seed",
        type=int,
        metavar="N",
        default=None,
        help="sampling seed: the same seed and prompt give the same text",
    )
    g.add_argument(
        "--stop",
        action="append",
        metavar="TEXT",
        default=None,
        help="stop before this text (repeatable; never printed)",
    )
    g.add_argument(
        "--grammar",
        type=_text_file,
        metavar="FILE",
        default=None,
        help="constrain the output with a GBNF grammar file",
    )
    g.add_argument("--json", action="store_true", help="constrain the output to a JSON object")
    g.add_argument("--system", metavar="TEXT", default=None, help="a system prompt")
    return p


def build_parser() -> _Parser:
    """The ``edgeveda`` argument parser."""
    common = _common_options()
    parser = _Parser(
        prog=PROG,
        description="Run LLMs on this machine with the Edge Veda engine (llama.cpp inside).",
        epilog=(
            "exit codes: 0 ok, 1 runtime error, 2 bad command line, 130 interrupted (Ctrl-C).\n"
            f"environment: EDGEVEDA_MODELS_DIR (models folder), {MODEL_ENV} (default --model),\n"
            f"{CPU_EXTRA_BUFFERS_ENV}=on|off (default --cpu-extra-buffers)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"edgeveda-ffi {__version__} (C API {HEADER_VERSION})",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show llama.cpp's logs and timings (-vv: debug logs)",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument(
        "--models-dir",
        metavar="DIR",
        default=None,
        help="models folder (default: $EDGEVEDA_MODELS_DIR, else the user data folder)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # generate
    gen = sub.add_parser(
        "generate",
        parents=[common, _model_options(), _sampling_options()],
        help="generate text for a prompt (streamed)",
        description="Generate an answer to PROMPT, streamed to stdout. The prompt is wrapped in "
        "the model's chat template unless --raw.",
    )
    gen.add_argument("prompt", metavar="PROMPT", help="the prompt, or - to read it from stdin")
    gen.add_argument(
        "--raw",
        action="store_true",
        help="send the prompt as is (no chat template): plain text completion",
    )
    gen.add_argument(
        "--no-stream", action="store_true", help="print the answer when it is complete"
    )
    gen.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json: print one JSON object with the text, token counts and timings",
    )
    gen.set_defaults(func=cmd_generate)

    # chat
    chat = sub.add_parser(
        "chat",
        parents=[common, _model_options(), _sampling_options()],
        help="chat interactively (history kept, the model's template)",
        description="Chat with the model. Each line you type is a message; the history is kept "
        "and rendered with the model's chat template. /reset forgets the history, /exit "
        "(or Ctrl-D) leaves, Ctrl-C stops the current answer.",
    )
    chat.set_defaults(func=cmd_chat)

    # info
    info = sub.add_parser(
        "info",
        parents=[
            common,
            _model_options(
                "also load this model (id or GGUF file) and show its info and memory use"
            ),
        ],
        help="show the version, llama.cpp build, backends and CPU features",
        description="Show the package and llama.cpp versions, the backends, the CPU features "
        "the build uses, and the CPU extra-buffers setting in force. With --model, also load "
        "the model and show its info, memory use and the buffer types its weights landed in "
        "(--cpu-extra-buffers off: no AMX/CPU_REPACK).",
    )
    info.add_argument("--format", choices=["text", "json"], default="text")
    info.set_defaults(func=cmd_info)

    # bench
    bench = sub.add_parser(
        "bench",
        parents=[common, _model_options()],
        help="measure prompt and generation speed and first-token time",
        description="Measure prompt processing (tok/s), generation (tok/s) and the time to the "
        "first token on the chosen model. --compare runs benchmarks/compare.py from the source "
        "tree (the engine against other runtimes).",
    )
    bench.add_argument(
        "--prompt-tokens",
        type=int,
        default=128,
        metavar="N",
        help="prompt length in tokens (default 128)",
    )
    bench.add_argument(
        "--gen-tokens", type=int, default=64, metavar="N", help="tokens to generate (default 64)"
    )
    bench.add_argument(
        "-r",
        "--repetitions",
        type=int,
        default=3,
        metavar="N",
        help="measured runs; the median is reported (default 3)",
    )
    bench.add_argument("--format", choices=["text", "json"], default="text")
    bench.add_argument(
        "--compare",
        nargs=argparse.REMAINDER,
        default=None,
        metavar="ARGS",
        help="run benchmarks.compare.main(['--model', PATH, *ARGS]) instead",
    )
    bench.set_defaults(func=cmd_bench)

    # models
    models = sub.add_parser(
        "models", parents=[common], help="list, fetch, verify, import and remove models"
    )
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=_Parser)
    ml = msub.add_parser("list", parents=[common], help="known and downloaded models")
    ml.add_argument("--format", choices=["text", "json"], default="text")
    ml.set_defaults(func=cmd_models_list)
    md = msub.add_parser(
        "download", parents=[common], help="fetch a model into the models folder (verified)"
    )
    md.add_argument("id", metavar="ID")
    md.add_argument(
        "--url", default=None, help="fetch a model that is not in the registry from this URL"
    )
    md.add_argument("--sha256", default=None, metavar="HEX", help="expected sha256 (with --url)")
    md.set_defaults(func=cmd_models_download)
    mr = msub.add_parser(
        "rm", parents=[common], help="delete a model (file, sidecar, partial download)"
    )
    mr.add_argument("id", metavar="ID")
    mr.set_defaults(func=cmd_models_rm)
    mp = msub.add_parser("path", parents=[common], help="print the file of a downloaded model")
    mp.add_argument("id", metavar="ID")
    mp.set_defaults(func=cmd_models_path)
    mv = msub.add_parser("verify", parents=[common], help="check a model's size and sha256")
    mv.add_argument("id", metavar="ID")
    mv.set_defaults(func=cmd_models_verify)
    mi = msub.add_parser(
        "import", parents=[common], help="copy a local GGUF file into the models folder under an id"
    )
    mi.add_argument("path", metavar="PATH")
    mi.add_argument(
        "--id", required=True, metavar="ID", help="the id to use (letters, digits, . _ -)"
    )
    mi.add_argument("--sha256", default=None, metavar="HEX", help="expected sha256 of the file")
    mi.add_argument("--name", default=None, help="a display name")
    mi.set_defaults(func=cmd_models_import)
    models.set_defaults(func=None, _help=models)
    parser.set_defaults(func=None, _help=parser)
    return parser


# ------------------------------------------------------------------------ helpers


def _manager(args: argparse.Namespace) -> ModelManager:
    from ..models import ModelManager

    return ModelManager(models_dir=getattr(args, "models_dir", None))


def _gen_params(args: argparse.Namespace) -> GenerationParams:
    """GenerationParams from the flags, validated before any work (exit 2 if bad)."""
    from .. import GenerationParams

    if args.json and args.grammar is not None:
        raise UsageError("--json and --grammar cannot be used together")
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
    path = resolve_model(_manager(args), args.model)
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
    path = resolve_model(_manager(args), args.model)
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


def cmd_info(args: argparse.Namespace) -> int:
    cfg = _config_kwargs(args)
    try:
        from .. import native_info
    except ImportError as exc:
        raise CliError(str(exc)) from exc
    from ..models.manager import DEFAULT_MODEL_ID

    ni = native_info()
    backends = ni["backends"]
    assert isinstance(backends, dict)
    manager = _manager(args)
    data: Dict[str, Any] = {
        "version": __version__,
        "api_version": ni["api_version"],
        "llama_cpp": ni["llama_cpp"],
        "python": sys.version.split()[0],
        "detected_backend": ni["detected_backend"],
        "backends": {k: v for k, v in backends.items() if k != "auto"},
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
    path = resolve_model(_manager(args), args.model)
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


def cmd_models_list(args: argparse.Namespace) -> int:
    from ..models import DEFAULT_MODEL_ID

    manager = _manager(args)
    downloaded = set(manager.list_downloaded())
    rows: List[Dict[str, Any]] = []
    ids = sorted({s.id for s in manager.known_models()} | downloaded)
    for model_id in ids:
        spec = manager.get_spec(model_id)
        path = manager.get_model_path(model_id)
        have = model_id in downloaded
        rows.append(
            {
                "id": model_id,
                "name": spec.name if spec else model_id,
                "size_bytes": path.stat().st_size if have else (spec.size_bytes if spec else None),
                "downloaded": have,
                "path": str(path),
                "default": model_id == DEFAULT_MODEL_ID,
                "sha256": spec.sha256 if spec else None,
                "sources": list(spec.sources) if spec else [],
            }
        )
    if args.format == "json":
        print(json.dumps({"models_dir": str(manager.models_dir), "models": rows}, indent=2))
        return EXIT_OK
    w = max([len(r["id"]) for r in rows] + [2]) + 2
    print(f"  {'ID':<{w}}{'SIZE':>10}  {'STATUS':<16}NAME")
    for r in rows:
        mark = "*" if r["default"] else " "
        status = "downloaded" if r["downloaded"] else "not downloaded"
        print(f"{mark} {r['id']:<{w}}{human_bytes(r['size_bytes']):>10}  {status:<16}{r['name']}")
    print(f"(* default model; models folder: {manager.models_dir})")
    return EXIT_OK


def cmd_models_download(args: argparse.Namespace) -> int:
    from ..models import ModelSpec

    manager = _manager(args)
    if args.url is not None:
        try:
            spec = ModelSpec(id=args.id, name=args.id, sources=(args.url,), sha256=args.sha256)
        except ConfigurationException as exc:
            raise UsageError(error_line(exc)) from None
    else:
        if args.sha256 is not None:
            raise UsageError("--sha256 needs --url (registry models carry their own)")
        found = manager.get_spec(args.id)
        if found is None:
            known = ", ".join(sorted(s.id for s in manager.known_models()))
            raise CliError(
                f"unknown model {args.id!r} (known: {known}; use --url for another model)"
            )
        spec = found
    path = fetch_model(manager, spec)
    print(path)
    return EXIT_OK


def cmd_models_rm(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if not manager.delete_model(args.id):
        raise CliError(f"model {args.id!r} is not downloaded in {manager.models_dir}")
    _note(f"removed {args.id}")
    return EXIT_OK


def cmd_models_path(args: argparse.Namespace) -> int:
    manager = _manager(args)
    path = manager.get_model_path(args.id)
    if not manager.is_downloaded(args.id):
        raise CliError(
            f"model {args.id!r} is not downloaded (expected at {path}; "
            f"run `edgeveda models download {args.id}`)"
        )
    print(path)
    return EXIT_OK


def cmd_models_verify(args: argparse.Namespace) -> int:
    report = verify_model(_manager(args), args.id)
    if report.checked_against is None:
        print(f"{args.id}: size ok, no sha256 known (sha256 {report.sha256})")
    else:
        print(f"{args.id}: OK (sha256 {report.sha256}, {human_bytes(report.size_bytes)})")
    return EXIT_OK


def cmd_models_import(args: argparse.Namespace) -> int:
    from ..errors import FailureReason, ModelValidationException
    from ..models import CancelToken, ModelSpec
    from .common import _Bar, _run_cancellable

    manager = _manager(args)
    src = Path(args.path).expanduser()
    try:
        spec = ModelSpec(id=args.id, name=args.name or args.id, sha256=args.sha256)
    except ConfigurationException as exc:
        raise UsageError(error_line(exc)) from None
    known = manager.get_spec(args.id) if args.sha256 is None and args.name is None else None
    token = CancelToken()
    bar = _Bar(f"import {args.id}", None)
    try:
        path = _run_cancellable(
            lambda: manager.import_model(
                src, known or spec, cancel_token=token, on_progress=bar.on_progress
            ),
            token.cancel,
            "import",
        )
    except ModelValidationException as exc:
        if exc.reason is FailureReason.SOURCE_MISSING:
            raise CliError(f"file not found: {args.path}") from None
        raise
    finally:
        bar.close()
    print(path)
    return EXIT_OK


# ---------------------------------------------------------------------------- main


def _prepare_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):  # pragma: no cover - exotic streams
                pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit code (the console script exits with it)."""
    _prepare_stdio()
    raw = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in raw
    parser = build_parser()
    try:
        args = parser.parse_args(raw)
        debug = bool(getattr(args, "debug", False))
        setup_logging(int(getattr(args, "verbose", 0) or 0), debug)
        if args.func is None:
            args._help.print_help(sys.stderr)
            return EXIT_USAGE
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (`edgeveda ... | head`): exit quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - every error becomes one line
        if debug:
            traceback.print_exc()
        code = exc.exit_code if isinstance(exc, CliError) else EXIT_ERROR
        label = "interrupted" if isinstance(exc, Interrupted) else "error"
        expected = isinstance(exc, (CliError, EdgeVedaException, OSError))
        hint = "" if debug or expected else " (run with --debug for the traceback)"
        if isinstance(exc, Interrupted):
            print(f"{PROG}: {error_line(exc)}", file=sys.stderr)
        else:
            print(f"{PROG}: {label}: {error_line(exc, full=debug)}{hint}", file=sys.stderr)
        return code
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass


if __name__ == "__main__":
    raise SystemExit(main())
