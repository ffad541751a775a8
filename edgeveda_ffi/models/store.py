"""``Store``: the models folder: paths, sidecar, lock, checks, verify-then-install.

Layout (one model whose file name is ``F``, ``ModelSpec.filename``)::

    F             the model: absent, or complete and verified; only ever made by a rename
    F.tmp         bytes being fetched (see ``staging.Staging``)
    F.tmp.json    resume state of an http download
    F.lock        the per-model lock (``lock.ModelLock``, filelock)
    <id>.json     the sidecar, written atomically once F is in place

Every rule about what a model file must be lives here, so ``ModelManager`` and
the ``edgeveda`` command judge a file the same way: one size check
(``check_size``), one digest check (``check``), one free-space check
(``check_free_space``), one way into place (``install``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import (
    ChecksumException,
    ConfigurationException,
    DownloadException,
    FailureReason,
    ModelValidationException,
)
from .cancel import CancelToken
from .fsutil import (
    atomic_write_json,
    free_bytes,
    fsync_dir,
    is_regular_file,
    mb,
    read_json,
    sha256_file,
    unlink_quiet,
    wrap_os_error,
)
from .lock import ModelLock
from .progress import ProgressReporter
from .spec import ModelSpec, validate_model_id, validate_sha256

__all__ = ["SIDECAR_FORMAT", "Expected", "Fetched", "Store", "VerifyReport"]

_log = logging.getLogger("edgeveda_ffi.model_manager")

#: Version of the sidecar's layout (``"format"`` key).
SIDECAR_FORMAT = 1


@dataclass(frozen=True)
class Fetched:
    """What a fetcher left in the fsync'd ``.tmp``: its sha256 and size."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Expected:
    """What a model file must match; ``None`` fields are not checked.

    ``against`` says where the digest comes from: ``"spec"`` (the spec's or the
    registry's) or ``"sidecar"`` (recorded when the model was placed).
    """

    size_bytes: Optional[int] = None
    sha256: Optional[str] = None
    against: Optional[str] = None


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of ``ModelManager.check``: the file passed every known check.

    ``sha256`` is the file's digest; ``checked_against`` is ``"spec"``,
    ``"sidecar"``, or ``None`` when no digest was known (only the size, if
    known, was checked).
    """

    model_id: str
    path: Path
    size_bytes: int
    sha256: str
    checked_against: Optional[str]


class Store:
    """One models folder (created on first write).

    Args:
        root: the folder.
        free_space_margin: bytes that must stay free beyond a model's size.
        lock_timeout: seconds to wait for another holder of a model's lock;
            ``None`` waits as long as it takes.
    """

    def __init__(
        self,
        root: Path,
        *,
        free_space_margin: int = 100 * 1024 * 1024,
        lock_timeout: Optional[float] = None,
    ) -> None:
        self.root = root
        self.free_space_margin = free_space_margin
        self.lock_timeout = lock_timeout

    # -- paths ----------------------------------------------------------------
    def final(self, spec: ModelSpec) -> Path:
        """The model's path."""
        return self.root / spec.filename

    def tmp(self, spec: ModelSpec) -> Path:
        """Where its bytes are fetched: ``F.tmp``."""
        return self.root / f"{spec.filename}.tmp"

    def resume_state(self, spec: ModelSpec) -> Path:
        """The http resume state of the ``.tmp``: ``F.tmp.json``."""
        return self.root / f"{spec.filename}.tmp.json"

    def sidecar(self, model_id: str) -> Path:
        """The metadata sidecar ``<id>.json`` (the id is validated)."""
        return self.root / f"{validate_model_id(model_id)}.json"

    def read_sidecar(self, model_id: str) -> Optional[dict[str, Any]]:
        """The parsed sidecar, or ``None`` if absent or not a JSON object."""
        return read_json(self.sidecar(model_id))

    def with_sidecar(self, model_id: str, expected: Expected) -> Expected:
        """``expected`` with what the sidecar recorded filling the fields it lacks."""
        meta = self.read_sidecar(model_id) or {}
        size, sha, against = expected.size_bytes, expected.sha256, expected.against
        if sha is None:
            try:
                sha = validate_sha256(meta.get("sha256"))
            except ConfigurationException:
                sha = None
            against = "sidecar" if sha else None
        side_size = meta.get("size_bytes")
        if size is None and isinstance(side_size, int) and not isinstance(side_size, bool):
            size = side_size
        return Expected(size, sha, against)

    # -- folder and lock --------------------------------------------------------
    def ensure_dir(self) -> None:
        """Create the folder; ``DownloadException`` (``NOT_WRITABLE``) if it cannot be written."""
        d = self.root
        if d.exists() and not d.is_dir():
            raise ConfigurationException("Models folder is not a directory", str(d))
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise wrap_os_error(e, "creating the models folder", d) from e
        if not os.access(d, os.W_OK):
            raise DownloadException(
                "Models folder is not writable",
                str(d),
                reason=FailureReason.NOT_WRITABLE,
                path=str(d),
            )

    def lock(self, spec: ModelSpec, token: Optional[CancelToken] = None) -> ModelLock:
        """The model's lock (a context manager), ``F.lock``."""
        return ModelLock(self.root / f"{spec.filename}.lock", self.lock_timeout, token)

    # -- checks -----------------------------------------------------------------
    def check_free_space(self, needed: int, name: str) -> None:
        """Raise ``DownloadException`` (``DISK_SPACE``, MB figures) unless
        ``needed`` + the margin are free."""
        free = free_bytes(self.root)
        if free is None or needed <= 0:
            return
        required = needed + self.free_space_margin
        if free < required:
            raise DownloadException(
                "Insufficient disk space",
                f"{mb(free)} free, {mb(required)} required for {name} "
                f"({mb(needed)} + {mb(self.free_space_margin)} margin) in {self.root}",
                reason=FailureReason.DISK_SPACE,
                path=str(self.root),
            )

    @staticmethod
    def check_size(model_id: str, expected: Optional[int], actual: int, where: str) -> None:
        """Raise ``ModelValidationException`` (``SIZE_MISMATCH``) unless ``actual == expected``.

        ``where`` names what has ``actual`` bytes (a file, a source, a response).
        """
        if expected is not None and actual != expected:
            raise ModelValidationException(
                "Size mismatch",
                f"{model_id}: {where} has {actual} bytes, expected {expected}",
                reason=FailureReason.SIZE_MISMATCH,
                field="size_bytes",
                expected=expected,
                actual=actual,
                model_id=model_id,
            )

    @staticmethod
    def check_sha256(model_id: str, expected: Optional[str], actual: str, where: str) -> None:
        """Raise ``ChecksumException`` unless ``actual == expected`` (``None``: not checked)."""
        if expected is not None and actual != expected:
            raise ChecksumException(
                "SHA256 checksum mismatch",
                f"{model_id}: expected {expected}, actual {actual} ({where})",
                expected=expected,
                actual=actual,
                model_id=model_id,
            )

    def check(
        self,
        model_id: str,
        path: Path,
        expected: Expected,
        *,
        token: Optional[CancelToken] = None,
        on_bytes: Optional[Callable[[int], None]] = None,
    ) -> VerifyReport:
        """Check the file at ``path`` against ``expected``: size first, then sha256.

        Raises ``ModelValidationException`` (``NOT_DOWNLOADED`` when there is no
        regular file, ``SIZE_MISMATCH``) or ``ChecksumException``; each carries
        ``path``. ``on_bytes`` is called with the bytes hashed so far.
        """
        if not is_regular_file(path):
            raise ModelValidationException(
                "Model not downloaded",
                f"{model_id}: no model file at {path}",
                reason=FailureReason.NOT_DOWNLOADED,
                path=str(path),
                model_id=model_id,
            )
        size = os.lstat(path).st_size
        check = token.raise_if_cancelled if token is not None else None
        try:
            self.check_size(model_id, expected.size_bytes, size, str(path))
            digest = sha256_file(path, check=check, on_bytes=on_bytes)
            self.check_sha256(model_id, expected.sha256, digest, str(path))
        except ModelValidationException as e:
            e.path = str(path)
            raise
        return VerifyReport(
            model_id, path, size, digest, expected.against if expected.sha256 else None
        )

    def is_present(
        self,
        model_id: str,
        path: Path,
        expected: Expected,
        token: Optional[CancelToken] = None,
    ) -> bool:
        """True when ``path`` is a regular file matching ``expected``.

        The file is hashed only when ``expected.sha256`` is set.
        """
        if not is_regular_file(path):
            return False
        if expected.sha256 is None:
            size = expected.size_bytes
            return size is None or os.lstat(path).st_size == size
        try:
            self.check(model_id, path, expected, token=token)
        except ModelValidationException:
            return False
        return True

    def scan(self) -> tuple[set[str], set[str]]:
        """Ids named by the folder: those with a sidecar, and the stems of
        ``*.gguf``/``*.bin`` files (``.tmp``, lock and hidden files skipped)."""
        named: set[str] = set()
        bare: set[str] = set()
        if not self.root.is_dir():
            return named, bare
        for p in self.root.iterdir():
            name = p.name
            if name.startswith(".") or name.endswith((".tmp", ".tmp.json", ".lock")):
                continue
            if name.endswith(".json"):
                named.add(name[: -len(".json")])
            elif name.endswith((".gguf", ".bin")):
                bare.add(name.rsplit(".", 1)[0])
        return named, bare

    # -- writing ------------------------------------------------------------------
    def discard_tmp(self, spec: ModelSpec) -> None:
        """Remove the ``.tmp`` and its resume state."""
        unlink_quiet(self.tmp(spec))
        unlink_quiet(self.resume_state(spec))

    def remove_invalid(self, spec: ModelSpec) -> None:
        """Delete whatever is at the model's path (a bad file or a link) and its sidecar."""
        path = self.final(spec)
        if os.path.lexists(path):
            _log.warning("removing invalid model file %s", path)
            if unlink_quiet(path):
                fsync_dir(self.root)
            unlink_quiet(self.sidecar(spec.id))

    def install(
        self,
        spec: ModelSpec,
        fetched: Fetched,
        expected: Expected,
        *,
        verify: bool,
        source: str,
        reporter: ProgressReporter,
    ) -> Path:
        """Check the fsync'd ``.tmp``, rename it into place, write the sidecar, send 100 %.

        A wrong size (always checked) or digest (when ``verify``) deletes the
        ``.tmp`` and raises; nothing reaches the model's path.
        """
        tmp, final = self.tmp(spec), self.final(spec)
        try:
            self.check_size(spec.id, expected.size_bytes, fetched.size, source)
            if verify:
                self.check_sha256(spec.id, expected.sha256, fetched.sha256, f"from {source}")
        except ModelValidationException as e:
            self.discard_tmp(spec)
            e.path = str(tmp)
            raise
        if not is_regular_file(tmp):
            raise DownloadException(
                "Download file vanished before rename",
                str(tmp),
                reason=FailureReason.FILESYSTEM,
                path=str(tmp),
            )
        try:
            os.replace(tmp, final)  # replaces a planted symlink, never follows it
        except OSError as e:
            self.discard_tmp(spec)
            raise wrap_os_error(e, "moving the model into place", final) from e
        fsync_dir(self.root)
        unlink_quiet(self.resume_state(spec))
        meta = {
            "format": SIDECAR_FORMAT,
            "id": spec.id,
            "spec": spec.to_dict(),
            "source": source,
            "downloaded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "size_bytes": fetched.size,
            "sha256": fetched.sha256,
            "verified": bool(verify and expected.sha256 is not None),
        }
        try:
            atomic_write_json(self.sidecar(spec.id), meta)
        except OSError as e:  # the model is in place and valid; metadata is a nicety
            _log.warning("could not write the metadata of %s: %s", spec.id, e)
        reporter.complete(fetched.size)
        return final

    def delete(self, spec: ModelSpec) -> bool:
        """Under the lock, remove the model, its sidecar and any partial download.

        True if the model's file was there.
        """
        if not self.root.is_dir():
            return False
        with self.lock(spec):
            existed = unlink_quiet(self.final(spec))
            unlink_quiet(self.sidecar(spec.id))
            self.discard_tmp(spec)
        fsync_dir(self.root)
        return existed
