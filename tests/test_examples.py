"""Every example in examples/, and the README's Python example, run as real programs on SmolLM2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TIMEOUT = 300
# One thread: on a busy machine two spinning ggml threads are many times slower than one.
T1 = ["--threads", "1"]


def _env(tmp_path: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("EDGEVEDA_MODEL", None)
    env["EDGEVEDA_MODELS_DIR"] = str(tmp_path / "models")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_example(name: str, args: List[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=TIMEOUT,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


def test_streaming_chat(smollm2_path: Path, tmp_path: Path) -> None:
    args = ["--model", str(smollm2_path), "--max-tokens", "16", *T1]
    out = run_example("streaming_chat.py", args, tmp_path).stdout
    assert out.count("assistant> ") == 2
    cached = [int(n) for n in re.findall(r"(\d+) from the cache", out)]
    assert len(cached) == 2 and cached[0] == 0 and cached[1] > 0  # the second turn reuses the first
    assert "(5 messages in the history)" in out


def test_asyncio_stream(smollm2_path: Path, tmp_path: Path) -> None:
    args = ["--model", str(smollm2_path), "--max-tokens", "16", *T1]
    out = run_example("asyncio_stream.py", args, tmp_path).stdout
    m = re.search(r"\[(\d+) tokens, (\w+), .* ticked (\d+) times", out)
    assert m, out
    assert int(m.group(1)) > 0 and int(m.group(3)) > 0


def test_json_extraction(smollm2_path: Path, tmp_path: Path) -> None:
    args = [
        "--model",
        str(smollm2_path),
        "--max-tokens",
        "64",
        *T1,
        "Maria Lopez is a 34-year-old architect who lives in Madrid.",
    ]
    out = run_example("json_extraction.py", args, tmp_path).stdout
    line = next(x for x in out.splitlines() if x.startswith("record: "))
    record = json.loads(line[len("record: ") :])
    assert list(record) == ["name", "age", "city"]
    assert isinstance(record["age"], int) and isinstance(record["name"], str)


def test_memory_pressure(smollm2_path: Path, tmp_path: Path) -> None:
    args = ["--model", str(smollm2_path), "--max-tokens", "8", *T1]
    out = run_example("memory_pressure.py", args, tmp_path).stdout
    assert "does not fit" in out and "fits," in out
    assert "pressure (critical)" in out
    assert "is_valid: False" in out and "InitializationException" in out
    assert "reloaded with context 256" in out


def test_readme_python_example(smollm2_path: Path, tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    assert len(code.strip().splitlines()) <= 10
    code = code.replace("context_size=2048", "context_size=2048, num_threads=1")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=TIMEOUT,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout
    # ModelManager().ensure() placed the default model in the models folder
    assert (tmp_path / "models" / "smollm2-135m-instruct-q4_1.gguf").is_file()


def test_every_example_is_tested() -> None:
    tested = {"streaming_chat.py", "asyncio_stream.py", "json_extraction.py", "memory_pressure.py"}
    tested.add("openai_client.py")  # against a real server: tests/test_server.py
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested
