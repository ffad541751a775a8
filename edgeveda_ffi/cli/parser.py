"""The ``edgeveda`` command line: its parser, flags and help (defaults shown are the core's)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import TYPE_CHECKING, Any, NoReturn, Optional

from .. import CPU_EXTRA_BUFFERS_ENV, HEADER_VERSION, __version__
from .common import (
    MODEL_ENV,
    UsageError,
)

if TYPE_CHECKING:
    pass

from .engine_commands import cmd_bench, cmd_chat, cmd_generate, cmd_info
from .model_commands import (
    cmd_models_download,
    cmd_models_import,
    cmd_models_list,
    cmd_models_path,
    cmd_models_rm,
    cmd_models_verify,
)
from .serve_command import STREAM_INTERVAL_MS, cmd_serve

__all__ = ["PROG", "build_parser"]

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


def _json_file(path: str) -> Any:
    text = _text_file(path)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{path!r} is not JSON: {exc}") from None


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
    g.add_argument(
        "--json-schema",
        type=_json_file,
        metavar="FILE",
        default=None,
        help="constrain the output to JSON valid for the JSON Schema in FILE",
    )
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

    # serve
    serve = sub.add_parser(
        "serve",
        parents=[common, _model_options()],
        help="an OpenAI-compatible HTTP server (needs the [server] extra)",
        description="Serve the model over HTTP with the OpenAI API (/v1/models, "
        "/v1/chat/completions with streaming, /v1/completions, /v1/embeddings). Requests are "
        "served one at a time, in order. Binds to 127.0.0.1 (this machine only) unless --host. "
        "Needs: pip install 'edgeveda-ffi[server]'.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: local only)"
    )
    serve.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    serve.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get("EDGEVEDA_API_KEY"),
        help="require `Authorization: Bearer KEY` (default: $EDGEVEDA_API_KEY, else none)",
    )
    serve.add_argument(
        "--cors-origin",
        metavar="ORIGIN",
        action="append",
        default=[],
        help="let web pages from ORIGIN (e.g. http://localhost:3000, or * for any) call the API "
        "from a browser; repeatable (default: none)",
    )
    serve.add_argument(
        "--stream-interval-ms",
        type=float,
        metavar="MS",
        default=STREAM_INTERVAL_MS,
        help="send a stream's tokens at most every MS milliseconds, several per write when they "
        "come faster (less CPU per token, taken from the decode on small machines); 0 sends "
        f"each token at once (default {STREAM_INTERVAL_MS:g})",
    )
    serve.set_defaults(func=cmd_serve)

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
