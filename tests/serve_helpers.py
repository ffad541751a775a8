"""Start ``edgeveda serve`` in a subprocess on a free 127.0.0.1 port, for the server tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
#: One ggml thread: the test machine is shared (see test_examples.py).
SERVE_ARGS = ["--threads", "1", "--ctx-size", "2048"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """A running ``python -m edgeveda_ffi serve`` process."""

    def __init__(
        self,
        model: Path,
        *,
        api_key: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        extra: Optional[List[str]] = None,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model_id = model.name
        self.stderr = ""  # what the server printed, after terminate()
        args = [sys.executable, "-m", "edgeveda_ffi", "serve", "--model", str(model)]
        args += ["--port", str(self.port), *SERVE_ARGS, *(extra or [])]
        if api_key is not None:
            args += ["--api-key", api_key]
        full_env = dict(os.environ)
        full_env.pop("EDGEVEDA_API_KEY", None)
        full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")])
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=str(REPO),
        )

    def client(self, api_key: str = "none", **kw: object):  # -> openai.OpenAI
        import openai

        kw.setdefault("max_retries", 0)  # see every status as it is
        kw.setdefault("timeout", 120)
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, **kw)  # type: ignore[arg-type]

    def wait_listening(self, timeout: float = 60) -> None:
        """Until the port accepts connections (the model may still be loading)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"the server did not listen within {timeout} s")

    def wait_ready(self, api_key: str = "none", timeout: float = 120) -> None:
        """Until ``/v1/models`` answers (the model is loaded)."""
        import openai

        self.wait_listening(timeout)
        client = self.client(api_key)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                client.models.list()
                return
            except openai.InternalServerError:  # 503 while loading
                time.sleep(0.1)
        raise TimeoutError(f"the model did not load within {timeout} s")

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            out, err = self.proc.communicate()
            raise RuntimeError(f"the server exited with {self.proc.returncode}: {err[-3000:]}")

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, then the exit code (killed and -9 after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = -9
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.stderr = self.proc.stderr.read()
            self.proc.stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code
