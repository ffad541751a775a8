"""Disk and process faults: a full (real, small) file system, RLIMIT_FSIZE, a read-only folder,
SIGKILL mid-download then resume, two processes downloading the same model at once.

The small file systems are tmpfs mounts (needs root; skipped with the reason otherwise). The
RLIMIT_FSIZE test (EFBIG in a subprocess) and the free-space pre-check through
``free_space_margin`` run everywhere.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from http_server import FaultyHTTPServer, http_server, payload, sha256_hex

from edgeveda_ffi.errors import DownloadException
from edgeveda_ffi.models import ModelManager, ModelSpec

__all__ = ["http_server"]  # the fixture, imported from http_server

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
DATA = payload(3 * MB, seed=11)
SHA = sha256_hex(DATA)

CHILD = r"""
import json, signal, sys, time
args = json.loads(sys.argv[1])
if args.get("fsize"):
    import resource
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (args["fsize"], args["fsize"]))
from edgeveda_ffi.models import ModelManager, ModelSpec
mm = ModelManager(args["dir"], retry_backoff=(0.01,), free_space_margin=0, stall_timeout=5.0,
                  chunk_size=16384)
spec = ModelSpec.from_dict(args["spec"])
out = {"started": time.time()}
print(json.dumps({"event": "started"}), flush=True)
try:
    out["path"] = str(mm.download(spec))
except Exception as e:
    orig = getattr(e, "original_error", None)
    out.update(error=type(e).__name__, message=str(e), errno=getattr(orig, "errno", None))
out["finished"] = time.time()
print(json.dumps(out), flush=True)
"""


def start_child(models_dir: Path, spec: ModelSpec, **extra: Any) -> subprocess.Popen[str]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    arg = json.dumps({"dir": str(models_dir), "spec": spec.to_dict(), **extra})
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, arg],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def child_result(proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, f"child printed nothing; stderr:\n{err}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def make_spec(url: str, data: bytes | None = DATA, model_id: str = "m", **kw: Any) -> ModelSpec:
    fields: dict[str, Any] = {"sha256": SHA}
    if data is not None:
        fields = {"size_bytes": len(data), "sha256": sha256_hex(data)}
    fields.update(kw)
    return ModelSpec(id=model_id, name=model_id, sources=(url,), **fields)


def mount_tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("a real small file system needs root (mount -t tmpfs)")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs."""
    yield from mount_tmpfs(tmp_path / "small", "size=2m")


@pytest.fixture
def readonly_fs(tmp_path: Path) -> Iterator[Path]:
    """A real read-only tmpfs."""
    yield from mount_tmpfs(tmp_path / "ro", "ro,size=1m")


# ---------------------------------------------------------------------------------------------
# Disk
# ---------------------------------------------------------------------------------------------


def test_disk_full_mid_write_on_a_real_small_filesystem(
    http_server: FaultyHTTPServer, small_fs: Path
) -> None:
    http_server.add("/m", DATA, content_length=False)  # no size known: the pre-check can't help
    mm = ModelManager(small_fs, free_space_margin=0, retry_backoff=(0.01,))
    keep = small_fs / "keep.gguf"
    keep.write_bytes(b"another model")
    spec = make_spec(http_server.url("/m"), data=None)
    with pytest.raises(DownloadException, match="Disk full") as ei:
        mm.download(spec)
    assert isinstance(ei.value.original_error, OSError)
    assert ei.value.original_error.errno == errno.ENOSPC
    assert sorted(p.name for p in small_fs.iterdir()) == ["keep.gguf", "m.gguf.lock"]
    assert keep.read_bytes() == b"another model"
    assert len(http_server.requests_for("/m")) == 1  # a full disk is not retried


def test_free_space_precheck_on_a_real_small_filesystem(
    http_server: FaultyHTTPServer, small_fs: Path
) -> None:
    http_server.add("/m", DATA)
    mm = ModelManager(small_fs, free_space_margin=0)
    spec = make_spec(http_server.url("/m"))
    with pytest.raises(DownloadException, match="Insufficient disk space") as ei:
        mm.download(spec)
    assert "MB free" in str(ei.value.details) and "3.1MB required" in str(ei.value.details)
    assert http_server.log == []  # refused before any request
    # size unknown up front: the check runs on Content-Length, before the body
    with pytest.raises(DownloadException, match="Insufficient disk space"):
        mm.download(make_spec(http_server.url("/m"), data=None))
    assert len(http_server.requests_for("/m")) == 1
    assert not (small_fs / "m.gguf").exists() and not (small_fs / "m.gguf.tmp").exists()


def test_free_space_precheck_counts_the_margin(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA)
    mm = ModelManager(tmp_path / "models", free_space_margin=10**16)  # 10 PB more than free
    spec = make_spec(http_server.url("/m"))
    with pytest.raises(DownloadException, match="Insufficient disk space") as ei:
        mm.download(spec)
    details = str(ei.value.details)
    assert "MB free" in details and "MB required for m" in details and "margin" in details
    assert http_server.log == []
    assert ModelManager(tmp_path / "m2").config.free_space_margin == 100 * MB  # the default


def test_file_size_limit_mid_write_in_a_subprocess(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, content_length=False)
    models = tmp_path / "models"
    spec = make_spec(http_server.url("/m"), data=None)
    res = child_result(start_child(models, spec, fsize=1 * MB))
    assert res.get("error") == "DownloadException" and "Disk full" in res["message"]
    assert res["errno"] == errno.EFBIG
    assert not (models / "m.gguf").exists() and not (models / "m.gguf.tmp").exists()
    assert len(http_server.requests_for("/m")) == 1


def test_read_only_models_folder(http_server: FaultyHTTPServer, readonly_fs: Path) -> None:
    http_server.add("/m", DATA)
    spec = make_spec(http_server.url("/m"))
    for where in (readonly_fs, readonly_fs / "models"):
        with pytest.raises(DownloadException, match="not writable"):
            ModelManager(where, free_space_margin=0).download(spec)
    assert http_server.log == []


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def test_sigkill_mid_download_then_rerun_resumes(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    route = http_server.add("/m", DATA, trickle=(32 * 1024, 0.01))
    models = tmp_path / "models"
    spec = make_spec(http_server.url("/m"))
    proc = start_child(models, spec)
    tmp = models / "m.gguf.tmp"
    deadline = time.monotonic() + 20
    while not (tmp.exists() and tmp.stat().st_size > 512 * 1024):
        assert time.monotonic() < deadline and proc.poll() is None, "child never got going"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    kept = tmp.stat().st_size
    assert 0 < kept < len(DATA) and not (models / "m.gguf").exists()
    assert (models / "m.gguf.tmp.json").exists()  # the resume state survived
    route.trickle = None
    mm = ModelManager(models, free_space_margin=0, retry_backoff=(0.01,))
    events: list[int] = []
    path = mm.download(spec, on_progress=lambda e: events.append(e.downloaded_bytes))
    assert path.read_bytes() == DATA and events[0] == kept
    last = http_server.requests_for("/m")[-1]
    assert last.headers["Range"] == f"bytes={kept}-" and last.status == 206
    assert last.body_bytes == len(DATA) - kept


def test_two_processes_download_once_and_both_get_the_valid_path(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, trickle=(32 * 1024, 0.01))  # ~1 s
    models = tmp_path / "models"
    spec = make_spec(http_server.url("/m"))
    procs = [start_child(models, spec) for _ in range(2)]
    results = [child_result(p, timeout=60) for p in procs]
    for r in results:
        assert "error" not in r, r
        assert r["path"] == str(models / "m.gguf")
    assert max(r["started"] for r in results) < min(r["finished"] for r in results)  # overlapped
    assert (models / "m.gguf").read_bytes() == DATA
    gets = http_server.requests_for("/m")
    assert len(gets) == 1 and gets[0].body_bytes == len(DATA)
