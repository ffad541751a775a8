"""Issue 9, downloader security: what tests/test_model_manager.py does not already cover.

Already covered there: ids and file names with '/', '\\', '..', NUL, absolute
and drive paths, reserved suffixes (test_model_spec_rejects_*,
test_escaping_ids_rejected_everywhere); symlinks planted at the model, its
``.tmp`` and its ``.lock`` (test_symlinks_planted_at_model_tmp_and_lock_...); a
sidecar whose digest is edited to vouch for a bad file, and a sidecar spec whose
file name escapes (test_corrupt_model_detected_..., test_sidecar_only_...).

Added here:
- ids/names that only pass a ``$``-anchored pattern (a trailing newline), and
  Unicode look-alikes of '/' and '.';
- symlinks planted at the sidecar ``<id>.json`` and the resume state
  ``<file>.tmp.json``;
- a hard link planted at ``.tmp`` together with a forged resume state: the
  download must not append into the linked file;
- a forged resume state (``.tmp.json``) that claims wrong bytes are a valid
  prefix or a complete file: the digest still decides, nothing bad is installed;
- a spec without a digest for a registered id (the registry's digest still
  applies), and ``verify=False`` bytes that a later ``ensure()`` does not trust.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from http_server import FaultyHTTPServer, http_server, payload, sha256_hex

from edgeveda_ffi.errors import ChecksumException, ConfigurationException
from edgeveda_ffi.models import ModelManager, ModelSpec

__all__ = ["http_server"]  # the fixture, imported from http_server

SIZE = 400_000
DATA = payload(SIZE, seed=9)
SHA = sha256_hex(DATA)
BAD = payload(SIZE, seed=10)


def make_manager(root: Path, **kw: Any) -> ModelManager:
    opts: dict[str, Any] = dict(
        retry_backoff=(0.01,),
        stall_timeout=2.0,
        connect_timeout=2.0,
        free_space_margin=0,
        chunk_size=16 * 1024,
    )
    opts.update(kw)
    return ModelManager(root / "models", **opts)


def spec_for(url: str, model_id: str = "m", **kw: Any) -> ModelSpec:
    fields: dict[str, Any] = {"size_bytes": SIZE, "sha256": SHA}
    fields.update(kw)
    return ModelSpec(id=model_id, name=model_id, sources=(url,), **fields)


def _victim(tmp_path: Path, name: str) -> Path:
    p = tmp_path / f"victim-{name}"
    p.write_bytes(b"precious " + name.encode())
    return p


def _intact(p: Path) -> bool:
    return p.read_bytes() == b"precious " + p.name.split("-", 1)[1].encode()


# ---------------------------------------------------------------------------------------------
# ids and names
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "abc\n",  # `$` matches before a final newline
        "x.tmp\n",  # ... which would also dodge the reserved-suffix check
        "a\nb",
        "a\r",
        "a\tb",
        "a\u2215b",  # DIVISION SLASH
        "a\u2044b",  # FRACTION SLASH
        "\uff0e\uff0e",  # FULLWIDTH FULL STOPs
        "a\uff0fb",  # FULLWIDTH SOLIDUS
        "\u202eevil",  # RIGHT-TO-LEFT OVERRIDE
    ],
)
def test_ids_and_names_with_control_or_lookalike_characters(bad: str) -> None:
    with pytest.raises(ConfigurationException, match="Invalid model id"):
        ModelSpec(id=bad, name="x")
    with pytest.raises(ConfigurationException, match="Invalid model file name"):
        ModelSpec(id="ok", name="x", filename=bad + ".gguf" if "\n" not in bad else bad)


def test_sha256_with_a_trailing_newline_is_rejected() -> None:
    with pytest.raises(ConfigurationException, match="Invalid sha256"):
        ModelSpec(id="ok", name="x", sha256=SHA + "\n")


# ---------------------------------------------------------------------------------------------
# Planted links
# ---------------------------------------------------------------------------------------------


def test_symlinks_at_sidecar_and_resume_state_are_not_written_through(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    # drop the connection once: the resume state gets written, then used
    http_server.add("/m", DATA, drop_after=SIZE // 3)
    mm = make_manager(tmp_path)
    mm.models_dir.mkdir(parents=True)
    victims = {n: _victim(tmp_path, n) for n in ("sidecar", "state")}
    os.symlink(victims["sidecar"], mm.models_dir / "m.json")
    os.symlink(victims["state"], mm.models_dir / "m.gguf.tmp.json")
    path = mm.download(spec_for(http_server.url("/m")))
    assert path.read_bytes() == DATA
    assert all(_intact(v) for v in victims.values())
    sidecar = mm.models_dir / "m.json"
    assert not sidecar.is_symlink() and json.loads(sidecar.read_text())["sha256"] == SHA
    assert len(http_server.requests_for("/m")) == 2  # it did resume


def test_hardlink_at_tmp_with_forged_resume_state_is_not_appended_to(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    route = http_server.add("/m", DATA)
    mm = make_manager(tmp_path)
    mm.models_dir.mkdir(parents=True)
    # A victim whose bytes happen to be a prefix of the model (so only the link
    # count can tell), hard-linked at .tmp, with a resume state that fits.
    victim = tmp_path / "victim-prefix"
    victim.write_bytes(DATA[:1000])
    tmp = mm.models_dir / "m.gguf.tmp"
    os.link(victim, tmp)
    state = {
        "url": http_server.url("/m"),
        "etag": route.etag,
        "last_modified": None,
        "expected_sha256": SHA,
        "total": SIZE,
    }
    (mm.models_dir / "m.gguf.tmp.json").write_text(json.dumps(state))
    assert mm.download(spec_for(http_server.url("/m"))).read_bytes() == DATA
    assert victim.read_bytes() == DATA[:1000], "the download wrote into a hard-linked file"


# ---------------------------------------------------------------------------------------------
# The checksum cannot be skipped
# ---------------------------------------------------------------------------------------------


def _forge_state(mm: ModelManager, url: str, etag: Any, data: bytes) -> None:
    (mm.models_dir / "m.gguf.tmp").write_bytes(data)
    state = {"url": url, "etag": etag, "last_modified": None, "expected_sha256": SHA, "total": SIZE}
    (mm.models_dir / "m.gguf.tmp.json").write_text(json.dumps(state))


def test_forged_resume_state_with_a_complete_wrong_tmp(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    route = http_server.add("/m", DATA)
    mm = make_manager(tmp_path)
    mm.models_dir.mkdir(parents=True)
    _forge_state(mm, http_server.url("/m"), route.etag, BAD)  # right size, wrong bytes
    assert mm.download(spec_for(http_server.url("/m"))).read_bytes() == DATA
    assert mm.verify("m")


def test_forged_resume_state_with_a_wrong_prefix(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    route = http_server.add("/m", DATA)
    mm = make_manager(tmp_path, max_retries=0)
    mm.models_dir.mkdir(parents=True)
    _forge_state(mm, http_server.url("/m"), route.etag, BAD[: SIZE // 2])
    final = mm.models_dir / "m.gguf"
    try:
        path = mm.download(spec_for(http_server.url("/m")))
    except ChecksumException:
        # resumed onto the forged prefix: caught by the digest, bytes deleted
        assert not final.exists() and not (mm.models_dir / "m.gguf.tmp").exists()
        path = mm.download(spec_for(http_server.url("/m")))
    assert path.read_bytes() == DATA and mm.verify("m")


def test_spec_without_digest_for_a_registered_id_uses_the_registry_digest(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/evil", BAD)
    mm = make_manager(tmp_path)
    mm.register(spec_for(http_server.url("/good"), model_id="m"))  # the registry knows SHA
    evil = ModelSpec(id="m", name="m", sources=(http_server.url("/evil"),), size_bytes=SIZE)
    with pytest.raises(ChecksumException):
        mm.download(evil)
    assert not (mm.models_dir / "m.gguf").exists()


def test_unverified_bytes_are_not_trusted_later(
    http_server: FaultyHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/evil", BAD)
    http_server.add("/good", DATA)
    mm = make_manager(tmp_path)
    mm.register(spec_for(http_server.url("/good"), model_id="m"))
    evil = ModelSpec(
        id="m", name="m", sources=(http_server.url("/evil"),), size_bytes=SIZE, sha256=SHA
    )
    path = mm.download(evil, verify=False)  # the caller's explicit choice
    assert path.read_bytes() == BAD
    meta = mm.get_metadata("m")
    assert meta is not None and meta["verified"] is False and meta["sha256"] == sha256_hex(BAD)
    # The sidecar records the bad digest, but the registry's digest is what counts.
    assert not mm.verify("m") and not mm.is_downloaded("m", verify=True)
    assert mm.ensure("m").read_bytes() == DATA
