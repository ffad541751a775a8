"""The Store under both the manager and the CLI, and the typed attributes of model failures.

Real files, a real HTTP server on 127.0.0.1 (tests/http_server.py) and the real
``edgeveda`` command in a subprocess; no mocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import filelock
import pytest
from http_server import FaultyHTTPServer, closed_port_url, http_server, payload, sha256_hex

from edgeveda_ffi.errors import (
    ChecksumException,
    DownloadCancelledException,
    DownloadException,
    FailureReason,
    ModelValidationException,
)
from edgeveda_ffi.models import CancelToken, DownloadProgress, ModelManager, ModelSpec

__all__ = ["http_server"]  # the fixture, imported from http_server

REPO = Path(__file__).resolve().parent.parent
SIZE = 300_000
DATA = payload(SIZE, seed=21)
SHA = sha256_hex(DATA)


def make_manager(root: Path, **kw: Any) -> ModelManager:
    opts: dict[str, Any] = dict(
        retry_backoff=(0.01,),
        stall_timeout=0.5,
        connect_timeout=2.0,
        free_space_margin=0,
        chunk_size=16 * 1024,
    )
    opts.update(kw)
    return ModelManager(root, **opts)


def cli(models_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EDGEVEDA_MODELS_DIR=str(models_dir), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "edgeveda_ffi.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        input="",
    )


def _flip_byte(path: Path, at: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


# ---------------------------------------------------------------------------------------------
# One set of rules: the CLI and the manager judge a file the same way
# ---------------------------------------------------------------------------------------------


def test_cli_verify_and_manager_check_agree_on_a_corrupted_file(tmp_path: Path) -> None:
    models = tmp_path / "models"
    src = tmp_path / "m.gguf"
    src.write_bytes(DATA)
    mm = make_manager(models)
    spec = ModelSpec(id="m", name="m", size_bytes=SIZE, sha256=SHA)
    mm.import_model(src, spec)

    # Intact: both pass, against the digest the spec carried (recorded in the sidecar)
    report = mm.check("m")
    assert (report.sha256, report.size_bytes, report.checked_against) == (SHA, SIZE, "spec")
    ok = cli(models, "models", "verify", "m")
    assert ok.returncode == 0 and f"OK (sha256 {SHA}" in ok.stdout

    bad = _flip_byte(models / "m.gguf", 1234)
    with pytest.raises(ChecksumException) as ei:
        mm.check("m")
    exc = ei.value
    assert exc.expected == SHA and exc.actual == sha256_hex(bad)
    assert exc.path == str(models / "m.gguf") and exc.model_id == "m" and exc.field == "sha256"
    assert mm.verify("m") is False and not mm.is_downloaded("m", verify=True)
    failed = cli(models, "models", "verify", "m")
    assert failed.returncode == 1 and "ChecksumException" in failed.stderr
    assert sha256_hex(bad) in failed.stderr and SHA in failed.stderr

    # Truncated: both report the size, before hashing
    (models / "m.gguf").write_bytes(DATA[:1000])
    with pytest.raises(ModelValidationException) as si:
        mm.check("m")
    assert si.value.reason is FailureReason.SIZE_MISMATCH and si.value.field == "size_bytes"
    assert (si.value.expected, si.value.actual) == (SIZE, 1000)
    truncated = cli(models, "models", "verify", "m")
    assert truncated.returncode == 1 and "Size mismatch" in truncated.stderr

    # Absent: the manager's reason is what the CLI words as "not downloaded"
    (models / "m.gguf").unlink()
    with pytest.raises(ModelValidationException) as ni:
        mm.check("m")
    assert ni.value.reason is FailureReason.NOT_DOWNLOADED
    gone = cli(models, "models", "verify", "m")
    assert gone.returncode == 1 and "not downloaded" in gone.stderr


def test_check_reports_progress_and_a_sidecar_only_digest(tmp_path: Path) -> None:
    src = tmp_path / "x.gguf"
    src.write_bytes(DATA)
    mm = make_manager(tmp_path / "models")
    mm.import_model(src, "new-id")  # no digest known: the sidecar records the one computed
    events: list[DownloadProgress] = []
    report = mm.check("new-id", on_progress=events.append)
    assert report.checked_against == "sidecar" and report.sha256 == SHA
    assert events[0].downloaded_bytes == 0 and events[-1].is_complete
    assert [e.downloaded_bytes for e in events] == sorted(e.downloaded_bytes for e in events)
    p = cli(tmp_path / "models", "models", "verify", "new-id")
    assert p.returncode == 0 and f"OK (sha256 {SHA}" in p.stdout


def test_import_and_download_leave_identical_sidecars(tmp_path: Path) -> None:
    src = tmp_path / "src" / "m.gguf"
    src.parent.mkdir()
    src.write_bytes(DATA)
    spec = ModelSpec(id="m", name="M", sources=(src.as_uri(),), size_bytes=SIZE, sha256=SHA)
    imported = make_manager(tmp_path / "a").import_model(src, spec)
    downloaded = make_manager(tmp_path / "b").download(spec)
    assert imported.read_bytes() == downloaded.read_bytes() == DATA
    a = json.loads((tmp_path / "a" / "m.json").read_text())
    b = json.loads((tmp_path / "b" / "m.json").read_text())
    assert a.pop("downloaded_at") and b.pop("downloaded_at")
    assert a == b and a["verified"] is True and a["sha256"] == SHA and a["source"] == src.as_uri()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        p.name for p in (tmp_path / "b").iterdir()
    )


def test_cli_first_use_and_manager_resolve_agree(tmp_path: Path) -> None:
    """A model file placed by hand (no spec, no sidecar) is found by both."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "handmade.gguf").write_bytes(b"GGUF" + b"\x00" * 100)
    mm = make_manager(models)
    assert mm.resolve("handmade") == models / "handmade.gguf"
    # `models path` goes through the same lookup
    p = cli(models, "models", "path", "handmade")
    assert p.returncode == 0 and p.stdout.strip() == str(models / "handmade.gguf")


# ---------------------------------------------------------------------------------------------
# Typed attributes: read, never parsed
# ---------------------------------------------------------------------------------------------


def _spec(url: str, model_id: str = "m", **kw: Any) -> ModelSpec:
    fields: dict[str, Any] = {"size_bytes": SIZE, "sha256": SHA}
    fields.update(kw)
    return ModelSpec(id=model_id, name=model_id, sources=(url,), **fields)


def test_http_failures_carry_reason_status_and_url(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/gone", status=404)
    http_server.add("/busy", DATA, fail_first=100, fail_status=503)
    http_server.add("/later", DATA, fail_first=1, fail_status=429, retry_after="3600")
    http_server.add("/stall", DATA, stall_after=0, stall_seconds=5, stall_count=100)
    mm = make_manager(tmp_path / "models", max_retries=1)
    cases = [
        ("/gone", FailureReason.HTTP_STATUS, 404),
        ("/busy", FailureReason.HTTP_STATUS, 503),
        ("/later", FailureReason.RETRY_LATER, 429),
        ("/stall", FailureReason.STALLED, None),
    ]
    for path, reason, status in cases:
        with pytest.raises(DownloadException) as ei:
            mm.download(_spec(http_server.url(path), model_id=path[1:]))
        exc = ei.value
        assert (exc.reason, exc.status, exc.url) == (reason, status, http_server.url(path)), path
        assert type(exc) is DownloadException
    assert len(http_server.requests_for("/busy")) == 2  # one retry, by urllib3's Retry
    refused = closed_port_url("/m")
    with pytest.raises(DownloadException) as ri:
        mm.download(_spec(refused, model_id="refused"))
    assert (ri.value.reason, ri.value.status, ri.value.url) == (
        FailureReason.CONNECTION,
        None,
        refused,
    )
    assert "after 1 retries" in ri.value.message


def test_every_source_failing_keeps_the_last_failure_attributes(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/gone", status=410)
    spec = ModelSpec(
        id="m",
        name="m",
        sources=("package://not-installed-dist/x/m.gguf", http_server.url("/gone")),
        sha256=SHA,
    )
    with pytest.raises(DownloadException, match="every source") as ei:
        make_manager(tmp_path / "models").download(spec)
    assert (ei.value.reason, ei.value.status) == (FailureReason.HTTP_STATUS, 410)
    assert isinstance(ei.value.original_error, DownloadException)


def test_validation_and_local_failures_carry_their_fields(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    wrong = payload(SIZE, seed=22)
    http_server.add("/wrong", wrong)
    http_server.add("/short", DATA[:1000])
    mm = make_manager(tmp_path / "models")
    with pytest.raises(ChecksumException) as ci:
        mm.download(_spec(http_server.url("/wrong")))
    assert (ci.value.expected, ci.value.actual) == (SHA, sha256_hex(wrong))
    assert ci.value.path == str(mm.models_dir / "m.gguf.tmp") and not Path(ci.value.path).exists()
    with pytest.raises(ModelValidationException) as si:  # announced by Content-Length
        mm.download(_spec(http_server.url("/short"), model_id="s"))
    assert (si.value.reason, si.value.field) == (FailureReason.SIZE_MISMATCH, "size_bytes")
    assert (si.value.expected, si.value.actual) == (SIZE, 1000)
    with pytest.raises(ModelValidationException) as mi:
        mm.import_model(tmp_path / "missing.gguf", "x")
    assert mi.value.reason is FailureReason.SOURCE_MISSING
    huge = make_manager(tmp_path / "models", free_space_margin=10**16)
    with pytest.raises(DownloadException) as di:
        huge.download(_spec(http_server.url("/wrong"), model_id="big"))
    assert di.value.reason is FailureReason.DISK_SPACE and di.value.path == str(mm.models_dir)
    token = CancelToken()
    token.cancel()
    with pytest.raises(DownloadCancelledException) as xi:
        mm.download(_spec(http_server.url("/wrong"), model_id="c"), cancel_token=token)
    assert xi.value.reason is FailureReason.CANCELLED


def test_the_lock_is_filelock_on_the_lock_file(tmp_path: Path) -> None:
    """Any program holding filelock's lock on F.lock keeps the manager out."""
    src = tmp_path / "m.gguf"
    src.write_bytes(DATA)
    models = tmp_path / "models"
    models.mkdir()
    held = filelock.FileLock(str(models / "m.gguf.lock"))
    acquired = threading.Event()
    release = threading.Event()

    def hold() -> None:  # filelock locks per thread: hold it in another one
        with held:
            acquired.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert acquired.wait(5)
    try:
        with pytest.raises(DownloadException) as ei:
            make_manager(models, lock_timeout=0.2).import_model(src, "m")
        assert ei.value.reason is FailureReason.LOCK_TIMEOUT
        assert ei.value.path == str(models / "m.gguf.lock")
        assert not (models / "m.gguf").exists()
    finally:
        release.set()
        holder.join(10)
    path = make_manager(models, lock_timeout=5).import_model(src, "m")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
