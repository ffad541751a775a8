"""HTTP downloads against a real fault-injecting server on 127.0.0.1 (tests/http_server.py).

After every test the model's path holds either the valid file or nothing.
"""

from __future__ import annotations

import hashlib
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from http_server import FaultyHTTPServer, Route, closed_port_url, http_server, payload, sha256_hex

from edgeveda_ffi.errors import (
    ChecksumException,
    ConfigurationException,
    DownloadCancelledException,
    DownloadException,
    ModelValidationException,
)
from edgeveda_ffi.models import CancelToken, DownloadProgress, ModelManager, ModelSpec

__all__ = ["http_server"]  # the fixture, imported from http_server

SIZE = 1_000_000
DATA = payload(SIZE, seed=1)
SHA = sha256_hex(DATA)


def make_manager(root: Path, **kw: Any) -> ModelManager:
    opts: dict[str, Any] = dict(
        retry_backoff=(0.01, 0.02, 0.04),
        stall_timeout=1.0,
        connect_timeout=2.0,
        free_space_margin=0,
        chunk_size=16 * 1024,
    )
    opts.update(kw)
    return ModelManager(root / "models", **opts)


def spec_for(url: str, data: Optional[bytes] = DATA, model_id: str = "m", **kw: Any) -> ModelSpec:
    fields: dict[str, Any] = {}
    if data is not None:
        fields = {"size_bytes": len(data), "sha256": sha256_hex(data)}
    fields.update(kw)
    return ModelSpec(id=model_id, name=model_id, sources=(url,), **fields)


class Recorder:
    """on_progress that also notes whether the final file existed at each event."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.events: list[DownloadProgress] = []
        self.final_seen: list[bool] = []

    def __call__(self, ev: DownloadProgress) -> None:
        self.events.append(ev)
        self.final_seen.append(self.final.exists())

    def check(self) -> None:
        ev = self.events
        assert ev, "no events"
        assert [e.downloaded_bytes for e in ev] == sorted(e.downloaded_bytes for e in ev)
        pcts = [e.percent for e in ev if e.percent is not None]
        assert pcts == sorted(pcts), "percent went backwards"
        assert ev[-1].is_complete and ev[-1].percent == 100.0
        assert not any(e.is_complete for e in ev[:-1]), "100 % before the rename"
        assert self.final_seen[-1] and not any(self.final_seen[:-1])


def assert_valid_or_absent(mm: ModelManager, spec: ModelSpec, data: bytes = DATA) -> None:
    final = mm.models_dir / spec.filename
    if final.exists():
        assert final.read_bytes() == data


def assert_absent(mm: ModelManager, spec: ModelSpec, tmp_too: bool = True) -> None:
    final = mm.models_dir / spec.filename
    assert not final.exists()
    if tmp_too:
        assert not Path(f"{final}.tmp").exists()


# ---------------------------------------------------------------------------------------------
# Truths 1-4: progress, checksum, no refetch, atomic
# ---------------------------------------------------------------------------------------------


def test_progress_0_to_100_and_final_event_after_rename(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m.gguf", DATA)
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/m.gguf"))
    rec = Recorder(mm.models_dir / "m.gguf")
    path = mm.download(spec, on_progress=rec)
    assert path.read_bytes() == DATA
    rec.check()
    first = rec.events[0]
    assert (first.downloaded_bytes, first.total_bytes, first.percent) == (0, SIZE, 0.0)
    assert len(rec.events) > 10 and any(e.eta_seconds is not None for e in rec.events)
    assert all(e.speed_bytes_per_second >= 0 for e in rec.events)
    reqs = http_server.requests_for("/m.gguf")
    assert len(reqs) == 1 and reqs[0].headers.get("Accept-Encoding") == "identity"
    assert not Path(f"{path}.tmp").exists() and not Path(f"{path}.tmp.json").exists()
    meta = mm.get_metadata("m")
    assert meta is not None and meta["sha256"] == SHA and meta["source"] == spec.sources[0]


def test_total_from_spec_without_content_length_and_indeterminate(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/nocl", DATA, content_length=False)
    mm = make_manager(tmp_path)
    rec = Recorder(mm.models_dir / "a.gguf")
    mm.download(spec_for(http_server.url("/nocl"), model_id="a"), on_progress=rec)
    rec.check()
    assert {e.total_bytes for e in rec.events} == {SIZE}  # from size_bytes
    # neither Content-Length nor size: indeterminate (None), no division by zero
    rec2 = Recorder(mm.models_dir / "b.gguf")
    spec = spec_for(http_server.url("/nocl"), data=None, model_id="b", sha256=SHA)
    assert mm.download(spec, on_progress=rec2).read_bytes() == DATA
    assert all(e.total_bytes is None and e.percent is None for e in rec2.events[:-1])
    assert rec2.events[-1].total_bytes == SIZE and rec2.events[-1].percent == 100.0
    assert rec2.final_seen[-1] and not any(rec2.final_seen[:-1])


def test_checksum_mismatch_deletes_bytes_and_is_not_retried(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    wrong = payload(SIZE, seed=2)
    http_server.add("/wrong", wrong)
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/wrong"))
    with pytest.raises(ChecksumException) as ei:
        mm.download(spec)
    assert isinstance(ei.value, ModelValidationException)
    assert SHA in str(ei.value.details) and sha256_hex(wrong) in str(ei.value.details)
    assert_absent(mm, spec)
    assert not (mm.models_dir / "m.gguf.tmp.json").exists()
    assert len(http_server.requests_for("/wrong")) == 1


def test_html_error_page_with_status_200(http_server: FaultyHTTPServer, tmp_path: Path) -> None:
    page = b"<html><body>Rate limited, try later</body></html>"
    http_server.add("/html", page)
    mm = make_manager(tmp_path)
    no_size = spec_for(http_server.url("/html"), data=None, sha256=SHA)
    with pytest.raises(ChecksumException):
        mm.download(no_size)
    assert_absent(mm, no_size)
    with pytest.raises(ModelValidationException, match="Size mismatch"):  # before any body byte
        mm.download(spec_for(http_server.url("/html")))
    assert_absent(mm, no_size)


def test_present_and_valid_makes_no_request_and_corrupt_is_refetched(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA)
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/m"))
    path = mm.download(spec)
    assert len(http_server.requests_for("/m")) == 1
    assert mm.download(spec) == path and mm.ensure(spec) == path
    offline = spec_for(closed_port_url("/m"))  # would fail if anything were fetched
    assert mm.ensure(offline) == path
    assert len(http_server.requests_for("/m")) == 1  # no request
    path.write_bytes(DATA[:-1] + b"\x00")  # same size, bad digest
    assert mm.download(spec).read_bytes() == DATA
    assert len(http_server.requests_for("/m")) == 2
    path.write_bytes(DATA[:100])  # wrong size: refetched even with verify=False
    assert mm.download(spec, verify=False).read_bytes() == DATA


def test_complete_tmp_from_an_earlier_run_is_verified_without_request(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, drop_after=SIZE // 2)
    mm = make_manager(tmp_path, max_retries=0)
    spec = spec_for(http_server.url("/m"))
    with pytest.raises(DownloadException):
        mm.download(spec)
    tmp = mm.models_dir / "m.gguf.tmp"
    assert tmp.stat().st_size == SIZE // 2
    with open(tmp, "ab") as f:  # as if the previous run died between fsync and rename
        f.write(DATA[SIZE // 2 :])
    assert mm.download(spec).read_bytes() == DATA
    assert len(http_server.requests_for("/m")) == 1


# ---------------------------------------------------------------------------------------------
# Truth 6: retries on transient errors only
# ---------------------------------------------------------------------------------------------


def test_5xx_retried_with_backoff_then_success(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, fail_first=3, fail_status=503)
    mm = make_manager(tmp_path, retry_backoff=(0.1, 0.2, 0.4))
    spec = spec_for(http_server.url("/m"))
    t0 = time.monotonic()
    assert mm.download(spec).read_bytes() == DATA
    assert time.monotonic() - t0 >= 0.7  # waited 0.1 + 0.2 + 0.4
    assert [r.status for r in http_server.requests_for("/m")] == [503, 503, 503, 200]


def test_5xx_gives_up_after_three_retries(http_server: FaultyHTTPServer, tmp_path: Path) -> None:
    http_server.add("/m", DATA, fail_first=100, fail_status=500)
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/m"))
    with pytest.raises(DownloadException, match="after 3 retries") as ei:
        mm.download(spec)
    assert type(ei.value) is DownloadException and "HTTP 500" in str(ei.value.details)
    assert len(http_server.requests_for("/m")) == 4
    assert_absent(mm, spec)


def test_default_backoff_is_1_2_4_seconds(tmp_path: Path) -> None:
    mm = ModelManager(tmp_path)
    assert mm.config.retry_backoff == (1.0, 2.0, 4.0) and mm.config.max_retries == 3


def test_429_honours_retry_after(http_server: FaultyHTTPServer, tmp_path: Path) -> None:
    http_server.add("/m", DATA, fail_first=1, fail_status=429, retry_after="1")
    mm = make_manager(tmp_path)
    t0 = time.monotonic()
    assert mm.download(spec_for(http_server.url("/m"))).read_bytes() == DATA
    assert time.monotonic() - t0 >= 1.0  # backoff is 0.01 s: the wait is Retry-After's
    assert [r.status for r in http_server.requests_for("/m")] == [429, 200]
    http_server.add("/later", DATA, fail_first=1, fail_status=429, retry_after="3600")
    with pytest.raises(DownloadException, match="retry later"):
        mm.download(spec_for(http_server.url("/later"), model_id="l"))
    assert len(http_server.requests_for("/later")) == 1


@pytest.mark.parametrize("status", [404, 403, 410, 400])
def test_4xx_is_not_retried(http_server: FaultyHTTPServer, tmp_path: Path, status: int) -> None:
    http_server.add("/m", DATA, status=status)
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/m"))
    with pytest.raises(DownloadException, match=f"HTTP {status}"):
        mm.download(spec)
    assert len(http_server.requests_for("/m")) == 1
    assert_absent(mm, spec)


def test_connection_refused_is_retried_then_fails(tmp_path: Path) -> None:
    mm = make_manager(tmp_path, retry_backoff=(0.05, 0.1, 0.2))
    spec = spec_for(closed_port_url("/m"))
    t0 = time.monotonic()
    with pytest.raises(DownloadException, match="after 3 retries") as ei:
        mm.download(spec)
    assert time.monotonic() - t0 >= 0.35
    assert "request failed" in str(ei.value.details)
    assert_absent(mm, spec)


def test_redirect_followed_and_redirect_loop_fails(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/real", DATA)
    http_server.add("/moved", redirect_to="/real")
    http_server.add("/loop-a", redirect_to="/loop-b")
    http_server.add("/loop-b", redirect_to="/loop-a")
    mm = make_manager(tmp_path)
    assert mm.download(spec_for(http_server.url("/moved"))).read_bytes() == DATA
    spec = spec_for(http_server.url("/loop-a"), model_id="loop")
    with pytest.raises(DownloadException, match="Too many redirects"):
        mm.download(spec)
    hops = len(http_server.requests_for("/loop-a")) + len(http_server.requests_for("/loop-b"))
    assert hops == 11  # the request + max_redirects=10, and no retry
    assert_absent(mm, spec)


def test_unsupported_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationException, match="Unsupported model source"):
        ModelSpec(id="x", name="x", sources=("ftp://127.0.0.1/x",))


# ---------------------------------------------------------------------------------------------
# Resume: Range + If-Range (206 append, 200 restart, 416 restart once), changed file
# ---------------------------------------------------------------------------------------------


def test_dropped_connection_resumes_with_range_and_if_range(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    route = http_server.add("/m", DATA, drop_after=400_000, drop_count=2)
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/m"))
    rec = Recorder(mm.models_dir / "m.gguf")
    assert mm.download(spec, on_progress=rec).read_bytes() == DATA
    rec.check()
    reqs = http_server.requests_for("/m")
    assert [r.status for r in reqs] == [200, 206, 206]
    assert reqs[1].headers["Range"] == "bytes=400000-"
    assert reqs[1].headers["If-Range"] == route.etag
    assert reqs[2].headers["Range"] == "bytes=800000-"
    # the resumed attempts start at the offset (first event of each attempt)
    assert any(e.downloaded_bytes == 400_000 and e.speed_bytes_per_second == 0 for e in rec.events)


def test_if_range_uses_last_modified_without_etag(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    route = http_server.add("/m", DATA, etag=None, drop_after=300_000)
    mm = make_manager(tmp_path)
    assert mm.download(spec_for(http_server.url("/m"))).read_bytes() == DATA
    second = http_server.requests_for("/m")[1]
    assert second.headers["If-Range"] == route.last_modified and second.status == 206


def test_range_ignoring_server_restarts_from_zero(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, support_ranges=False, drop_after=600_000)
    mm = make_manager(tmp_path)
    rec = Recorder(mm.models_dir / "m.gguf")
    assert mm.download(spec_for(http_server.url("/m")), on_progress=rec).read_bytes() == DATA
    rec.check()  # the bar waits at 60 % while the restart catches up: never backwards
    reqs = http_server.requests_for("/m")
    assert [r.status for r in reqs] == [200, 200] and "Range" in reqs[1].headers


def test_file_changed_between_attempts_restarts_no_mixed_bytes(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    new = payload(SIZE, seed=3)

    def swap(route: Route, n: int) -> None:
        if n == 1:
            route.set_data(new, last_modified="Thu, 22 Oct 2015 07:28:00 GMT")

    http_server.add("/m", DATA, drop_after=500_000, after_request=swap)
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/m"), data=new)  # the spec knows the new file
    rec = Recorder(mm.models_dir / "m.gguf")
    assert mm.download(spec, on_progress=rec).read_bytes() == new
    rec.check()
    reqs = http_server.requests_for("/m")
    assert reqs[1].headers.get("If-Range") and reqs[1].status == 200  # stale validator → full


def test_file_changed_and_spec_has_old_digest_fails_cleanly(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    def swap(route: Route, n: int) -> None:
        if n == 1:
            route.set_data(payload(SIZE, seed=4))

    http_server.add("/m", DATA, drop_after=500_000, after_request=swap)
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/m"))
    with pytest.raises(ChecksumException):
        mm.download(spec)
    assert_absent(mm, spec)


def test_416_restarts_once(http_server: FaultyHTTPServer, tmp_path: Path) -> None:
    route = http_server.add("/m", DATA, etag=None, drop_after=800_000)
    spec = spec_for(http_server.url("/m"), data=None)  # resumable through Last-Modified
    with pytest.raises(DownloadException, match="after 0 retries"):
        make_manager(tmp_path, max_retries=0).download(spec)
    mm = make_manager(tmp_path)
    assert (mm.models_dir / "m.gguf.tmp").stat().st_size == 800_000
    short = DATA[:500_000]  # the file shrank, Last-Modified unchanged: the Range is past its end
    route.set_data(short)
    assert mm.download(spec).read_bytes() == short
    reqs = http_server.requests_for("/m")
    assert [r.status for r in reqs] == [200, 416, 200]
    assert reqs[1].headers["Range"] == "bytes=800000-" and "Range" not in reqs[2].headers


def test_tmp_without_validator_or_digest_is_not_resumed(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, etag=None, last_modified=None, drop_after=300_000)
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/m"), data=None)  # no size, no sha256
    assert mm.download(spec).read_bytes() == DATA  # the short body is retried from 0
    reqs = http_server.requests_for("/m")
    assert len(reqs) == 2 and "Range" not in reqs[1].headers


# ---------------------------------------------------------------------------------------------
# Wrong lengths, stalls, trickles
# ---------------------------------------------------------------------------------------------


def test_content_length_larger_than_body(http_server: FaultyHTTPServer, tmp_path: Path) -> None:
    http_server.add("/m", DATA, content_length_delta=100)
    mm = make_manager(tmp_path)
    with pytest.raises(ModelValidationException, match="Size mismatch"):  # vs the spec's size
        mm.download(spec_for(http_server.url("/m")))
    spec = spec_for(http_server.url("/m"), data=None, sha256=SHA)
    assert mm.download(spec).read_bytes() == DATA  # the body ends short: transient, resume...
    reqs = http_server.requests_for("/m")  # ...416 "bytes */SIZE": the .tmp was complete
    assert [r.status for r in reqs] == [200, 200, 416]
    http_server.add("/m2", DATA, content_length_delta=100, etag=None, last_modified=None)
    spec2 = spec_for(http_server.url("/m2"), data=None, model_id="m2")  # nothing to resume by
    with pytest.raises(DownloadException, match="after 3 retries") as ei:
        mm.download(spec2)
    assert "connection" in str(ei.value.details)
    assert_absent(mm, spec2, tmp_too=False)


def test_server_sends_more_than_announced(http_server: FaultyHTTPServer, tmp_path: Path) -> None:
    http_server.add("/short-cl", DATA, content_length_delta=-100)
    http_server.add("/nocl", DATA, content_length=False)
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/short-cl"), data=None, sha256=SHA)
    with pytest.raises(ChecksumException):  # only the announced bytes are read
        mm.download(spec)
    assert_absent(mm, spec)
    spec2 = spec_for(http_server.url("/nocl"), data=None, size_bytes=SIZE - 100, model_id="n")
    with pytest.raises(ModelValidationException, match="more bytes than announced"):
        mm.download(spec2)
    assert_absent(mm, spec2)


def test_stall_is_a_transient_error_and_resumes(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, stall_after=300_000, stall_seconds=10)
    mm = make_manager(tmp_path, stall_timeout=0.5)
    t0 = time.monotonic()
    assert mm.download(spec_for(http_server.url("/m"))).read_bytes() == DATA
    assert time.monotonic() - t0 < 5
    reqs = http_server.requests_for("/m")
    assert [r.status for r in reqs] == [200, 206] and reqs[1].headers["Range"] == "bytes=300000-"


def test_stall_every_time_fails_after_retries(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, stall_after=0, stall_seconds=10, stall_count=100)
    mm = make_manager(tmp_path, stall_timeout=0.3, max_retries=1)
    spec = spec_for(http_server.url("/m"))
    with pytest.raises(DownloadException, match="after 1 retries"):
        mm.download(spec)
    assert_absent(mm, spec, tmp_too=False)


def test_slow_trickle_completes(http_server: FaultyHTTPServer, tmp_path: Path) -> None:
    data = DATA[:200_000]
    http_server.add("/m", data, trickle=(4096, 0.002))
    mm = make_manager(tmp_path, stall_timeout=0.5)
    rec = Recorder(mm.models_dir / "m.gguf")
    assert (
        mm.download(spec_for(http_server.url("/m"), data=data), on_progress=rec).read_bytes()
        == data
    )
    rec.check()


# ---------------------------------------------------------------------------------------------
# Truth 5: cancellation
# ---------------------------------------------------------------------------------------------


def _cancel_when(
    pred: Callable[[DownloadProgress], bool], token: CancelToken
) -> Callable[[DownloadProgress], None]:
    def on_progress(ev: DownloadProgress) -> None:
        if pred(ev):
            token.cancel()

    return on_progress


def test_cancel_from_another_thread_keeps_tmp_then_resume(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, trickle=(16 * 1024, 0.01))
    mm = make_manager(tmp_path)
    spec = spec_for(http_server.url("/m"))
    token = CancelToken()
    tmp = mm.models_dir / "m.gguf.tmp"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            mm.download(spec, cancel_token=token)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 10
    while not (tmp.exists() and tmp.stat().st_size > 100_000) and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    token.cancel()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - t0 < 1.0
    assert len(errors) == 1 and type(errors[0]) is DownloadCancelledException
    kept = tmp.stat().st_size
    assert 100_000 <= kept < SIZE and not (mm.models_dir / "m.gguf").exists()
    token.reset()
    http_server.routes["/m"].trickle = None
    rec = Recorder(mm.models_dir / "m.gguf")
    assert mm.download(spec, cancel_token=token, on_progress=rec).read_bytes() == DATA
    assert rec.events[0].downloaded_bytes == kept  # the first event is the resume offset
    assert http_server.requests_for("/m")[-1].headers["Range"] == f"bytes={kept}-"


def test_cancel_interrupts_a_silent_server_at_once(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, stall_after=100_000, stall_seconds=20)
    mm = make_manager(tmp_path, stall_timeout=30)
    token = CancelToken()
    on_progress = _cancel_when(lambda e: False, token)
    threading.Timer(0.5, token.cancel).start()
    t0 = time.monotonic()
    with pytest.raises(DownloadCancelledException):
        mm.download(spec_for(http_server.url("/m")), cancel_token=token, on_progress=on_progress)
    assert time.monotonic() - t0 < 2.0  # not the 30 s stall timeout
    assert (mm.models_dir / "m.gguf.tmp").stat().st_size == 100_000


def test_cancel_download_without_a_token_and_during_backoff(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/slow", DATA, trickle=(16 * 1024, 0.01))
    http_server.add("/fail", DATA, fail_first=100)
    mm = make_manager(tmp_path, retry_backoff=(30.0,))
    for path in ("/slow", "/fail"):
        timer = threading.Timer(0.3, mm.cancel_download)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(DownloadCancelledException):
            mm.download(spec_for(http_server.url(path), model_id=path[1:]))
        assert time.monotonic() - t0 < 2.0
        timer.join()
    assert mm.cancel_download() is False  # nothing running any more


def test_cancel_within_one_chunk(http_server: FaultyHTTPServer, tmp_path: Path) -> None:
    http_server.add("/m", DATA)
    mm = make_manager(tmp_path, chunk_size=16 * 1024)
    token = CancelToken()
    events: list[DownloadProgress] = []

    def on_progress(ev: DownloadProgress) -> None:
        events.append(ev)
        if ev.downloaded_bytes >= 200_000:
            token.cancel()

    with pytest.raises(DownloadCancelledException):
        mm.download(spec_for(http_server.url("/m")), cancel_token=token, on_progress=on_progress)
    at_cancel = events[-1].downloaded_bytes
    assert (mm.models_dir / "m.gguf.tmp").stat().st_size - at_cancel <= 16 * 1024


# ---------------------------------------------------------------------------------------------
# Sources, memory
# ---------------------------------------------------------------------------------------------


def test_next_source_after_a_failing_one(http_server: FaultyHTTPServer, tmp_path: Path) -> None:
    http_server.add("/gone", status=404)
    http_server.add("/m", DATA)
    mm = make_manager(tmp_path)
    spec = ModelSpec(
        id="m",
        name="m",
        sources=(http_server.url("/gone"), http_server.url("/m")),
        size_bytes=SIZE,
        sha256=SHA,
    )
    assert mm.download(spec).read_bytes() == DATA
    assert mm.get_metadata("m")["source"] == http_server.url("/m")  # type: ignore[index]


def test_memory_stays_flat_on_a_large_download(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    big = payload(48 * 1024 * 1024, seed=5)
    http_server.add("/big", big)
    mm = make_manager(tmp_path, chunk_size=256 * 1024)
    spec = spec_for(http_server.url("/big"), data=big)
    tracemalloc.start()
    try:
        mm.download(spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a 48 MB download"
    assert hashlib.sha256((mm.models_dir / "m.gguf").read_bytes()).hexdigest() == spec.sha256


def test_lock_timeout_and_cancel_while_waiting_for_another_download(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/m", DATA, trickle=(16 * 1024, 0.01))  # ~0.7 s
    spec = spec_for(http_server.url("/m"))
    holder = make_manager(tmp_path)
    t = threading.Thread(target=holder.download, args=(spec,))
    t.start()
    tmp = holder.models_dir / "m.gguf.tmp"
    deadline = time.monotonic() + 10
    while not tmp.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(DownloadException, match="Timed out waiting"):
        make_manager(tmp_path, lock_timeout=0.2).download(spec)
    token = CancelToken()
    threading.Timer(0.1, token.cancel).start()
    with pytest.raises(DownloadCancelledException):
        make_manager(tmp_path).download(spec, cancel_token=token)
    t.join(10)
    assert (holder.models_dir / "m.gguf").read_bytes() == DATA
    assert len(http_server.requests_for("/m")) == 1  # the waiters never fetched
