"""``ModelManager``: atomic, verified, resumable model downloads, imports and lookups.

Layout of the models folder (``ModelManager.models_dir``)::

    <file>            the model (``ModelSpec.file_name``, default ``<id>.gguf``)
    <file>.tmp        bytes being downloaded or copied (resumable for http)
    <file>.tmp.json   resume state: url, ETag/Last-Modified, expected sha256
    <file>.lock       per-model lock (fcntl.flock; works across processes)
    <id>.json         metadata sidecar, written atomically after the model is in place

The folder is ``$EDGEVEDA_MODELS_DIR`` if set, else
``platformdirs.user_data_dir("edgeveda")/models`` (application data, not a
cache that gets swept); the ``models_dir`` argument overrides both.

Guarantees:

* At the model's path there is either nothing or a complete, verified file:
  bytes go to ``<file>.tmp``, are hashed while they stream, fsync'd, checked
  (size, and sha256 when ``verify``), then ``os.replace``'d into place and the
  folder is fsync'd. A mismatch raises ``ChecksumException`` (a
  ``ModelValidationException``) with the expected and actual digests and
  deletes the bad bytes. An invalid file found at the path is deleted first.
* The sha256 that is checked is the spec's, else the registry's for that id.
  The sidecar's recorded digest is used only for a model whose spec has none,
  so editing a sidecar can never make a bad file pass.
* Ids and file names are validated by ``ModelSpec`` (``ConfigurationException``):
  no ``/``, ``\\``, ``..``, NUL or absolute path can escape the folder.
* Symlinks: a symlink planted at ``<file>``, ``<file>.tmp`` or the lock is
  removed, never written through (``os.replace`` replaces the link itself; the
  ``.tmp`` is opened with ``O_NOFOLLOW``/``O_EXCL``), and a symlink at the
  model's path never counts as a downloaded model.
* Disk: free space is checked before starting (size + ``free_space_margin``,
  ``DownloadException`` "Insufficient disk space" with MB figures). A write
  that fails with ENOSPC/EFBIG/EDQUOT raises ``DownloadException`` "Disk full
  ..." (``original_error`` is the ``OSError``); the ``.tmp`` is removed, the
  model's path is untouched. Neither is retried.
* Cancel (``CancelToken`` or ``cancel_download()``) raises
  ``DownloadCancelledException`` before the next chunk is written (the read in
  progress is interrupted by shutting the socket); an http ``.tmp`` is kept
  for a later resume, a local copy's ``.tmp`` is removed.
* Progress: see ``ProgressReporter`` in ``_download.py``: 0 % (or the resume
  offset) first, never backwards, 100 % only once the file is in place.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import platformdirs

from ..errors import (
    ChecksumException,
    ConfigurationException,
    DownloadCancelledException,
    DownloadException,
    ModelValidationException,
)
from .cancel import CancelToken
from .download import (
    DownloadConfig,
    HttpDownload,
    ProgressReporter,
    check_free_space,
    copy_to_tmp,
    resume_state_path,
)
from .fsutil import (
    atomic_write_json,
    fsync_dir,
    is_regular_file,
    read_json,
    sha256_file,
    unlink_quiet,
    wrap_os_error,
)
from .lock import ModelLock
from .registry import DEFAULT_MODEL_ID, KNOWN_MODELS
from .sources import (
    describe_source,
    is_source_failure,
    resolve_file_source,
    resolve_package_source,
    source_scheme,
)
from .spec import DownloadProgress, ModelSpec, validate_model_id

__all__ = [
    "DEFAULT_MODEL_ID",
    "KNOWN_MODELS",
    "MODELS_DIR_ENV",
    "CancelToken",
    "DownloadProgress",
    "ModelManager",
    "ModelSpec",
    "default_models_dir",
]

_log = logging.getLogger("edgeveda_ffi.model_manager")

#: Environment variable that overrides the default models folder.
MODELS_DIR_ENV = "EDGEVEDA_MODELS_DIR"

SpecOrId = Union[ModelSpec, str]
ProgressCallback = Callable[[DownloadProgress], None]
_SIDECAR_FORMAT = 1


def default_models_dir() -> Path:
    """``$EDGEVEDA_MODELS_DIR`` if set and non-empty, else ``user_data_dir("edgeveda")/models``."""
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("edgeveda")) / "models"


class ModelManager:
    """Downloads, imports, verifies and finds model files (see the module doc).

    Args:
        models_dir: the models folder; default ``default_models_dir()``.
            Created on first write.
        registry: extra ``ModelSpec`` entries, added to (and overriding by id)
            the built-in ``KNOWN_MODELS``.
        max_retries: retries after a transient error (default 3).
        retry_backoff: seconds to wait before retry 1, 2, 3... (the last value
            repeats); default ``(1.0, 2.0, 4.0)``. Tests pass tiny values.
        stall_timeout: seconds without a byte (or before the response headers)
            after which an attempt fails as transient (default 30).
        connect_timeout: TCP connect timeout in seconds (default 15).
        chunk_size: bytes read per chunk (default 256 KiB); cancel and
            progress act at this granularity.
        free_space_margin: bytes that must stay free beyond the model's size
            (default 100 MiB).
        max_retry_after: longest ``Retry-After`` honoured, seconds (default
            60); a longer one fails the source.
        max_redirects: HTTP redirects followed (default 10).
        lock_timeout: seconds to wait for another process downloading the same
            model; ``None`` (default) waits as long as it takes.
    """

    def __init__(
        self,
        models_dir: Optional[Union[str, os.PathLike[str]]] = None,
        *,
        registry: Optional[Iterable[ModelSpec]] = None,
        max_retries: int = 3,
        retry_backoff: Iterable[float] = (1.0, 2.0, 4.0),
        stall_timeout: float = 30.0,
        connect_timeout: float = 15.0,
        chunk_size: int = 256 * 1024,
        free_space_margin: int = 100 * 1024 * 1024,
        max_retry_after: float = 60.0,
        max_redirects: int = 10,
        lock_timeout: Optional[float] = None,
    ) -> None:
        self._models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
        backoff = tuple(float(b) for b in retry_backoff)
        if max_retries < 0 or any(b < 0 for b in backoff):
            raise ConfigurationException("Invalid retry settings", "values must be >= 0")
        if chunk_size <= 0 or stall_timeout <= 0 or connect_timeout <= 0:
            raise ConfigurationException(
                "Invalid download settings", "chunk_size and timeouts must be > 0"
            )
        if free_space_margin < 0:
            raise ConfigurationException("Invalid free_space_margin", str(free_space_margin))
        self.config = DownloadConfig(
            max_retries=max_retries,
            retry_backoff=backoff,
            stall_timeout=stall_timeout,
            connect_timeout=connect_timeout,
            chunk_size=chunk_size,
            max_retry_after=max_retry_after,
            max_redirects=max_redirects,
            free_space_margin=free_space_margin,
        )
        self.lock_timeout = lock_timeout
        self._registry: dict[str, ModelSpec] = {s.id: s for s in KNOWN_MODELS}
        for spec in registry or ():
            self.register(spec)
        self._active: set[CancelToken] = set()
        self._active_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModelManager(models_dir={str(self._models_dir)!r})"

    # -- registry -----------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        """The models folder (it may not exist yet)."""
        return self._models_dir

    def register(self, spec: ModelSpec) -> None:
        """Add ``spec`` to this manager's registry (replacing an entry with its id)."""
        if not isinstance(spec, ModelSpec):
            raise ConfigurationException("Invalid model spec", repr(spec))
        self._registry[spec.id] = spec

    def known_models(self) -> list[ModelSpec]:
        """Every spec of this manager's registry."""
        return list(self._registry.values())

    def get_spec(self, model_id: str) -> Optional[ModelSpec]:
        """The spec for ``model_id``: the registry's, else the sidecar's; ``None`` if unknown."""
        validate_model_id(model_id)
        spec = self._registry.get(model_id)
        if spec is not None:
            return spec
        meta = self.get_metadata(model_id)
        if meta is None or not isinstance(meta.get("spec"), dict):
            return None
        try:
            side = ModelSpec.from_dict(meta["spec"])
        except ConfigurationException:
            return None
        return side if side.id == model_id else None

    def _spec(self, spec_or_id: SpecOrId) -> ModelSpec:
        if isinstance(spec_or_id, ModelSpec):
            return spec_or_id
        spec = self.get_spec(spec_or_id)
        if spec is None:
            raise ConfigurationException(
                "Unknown model id",
                f"{spec_or_id!r} is not in the registry ({', '.join(sorted(self._registry))})",
            )
        return spec

    def _expected_sha256(self, spec: ModelSpec) -> Optional[str]:
        if spec.sha256 is not None:
            return spec.sha256
        reg = self._registry.get(spec.id)
        return reg.sha256 if reg is not None else None

    # -- paths ----------------------------------------------------------------
    def _final(self, spec: ModelSpec) -> Path:
        return self._models_dir / spec.file_name

    def _tmp(self, spec: ModelSpec) -> Path:
        return self._models_dir / f"{spec.file_name}.tmp"

    def _sidecar(self, model_id: str) -> Path:
        return self._models_dir / f"{model_id}.json"

    def get_model_path(self, model_id: str) -> Path:
        """Where the model ``model_id`` lives (or would live) in the models folder."""
        spec = self.get_spec(model_id)
        return self._models_dir / (spec.file_name if spec else f"{model_id}.gguf")

    def get_metadata(self, model_id: str) -> Optional[dict[str, Any]]:
        """The parsed sidecar ``<id>.json`` (spec, source, downloaded_at, size, sha256) or None."""
        validate_model_id(model_id)
        return read_json(self._sidecar(model_id))

    # -- checks ---------------------------------------------------------------
    def _present_valid(
        self, spec: ModelSpec, verify: bool, token: Optional[CancelToken] = None
    ) -> bool:
        path = self._final(spec)
        if not is_regular_file(path):
            return False
        size = os.lstat(path).st_size
        if spec.size_bytes is not None and size != spec.size_bytes:
            return False
        expected = self._expected_sha256(spec)
        if verify and expected is not None:
            check = token.raise_if_cancelled if token is not None else None
            return sha256_file(path, check=check) == expected
        return True

    def is_downloaded(self, model_id: str, verify: bool = False) -> bool:
        """True if the model's file is there (a regular file of the right size).

        With ``verify=True`` the sha256 is checked too (see ``verify``).
        """
        if verify:
            return self.verify(model_id)
        path = self.get_model_path(model_id)
        if not is_regular_file(path):
            return False
        spec = self.get_spec(model_id)
        return spec is None or spec.size_bytes is None or os.lstat(path).st_size == spec.size_bytes

    def verify(self, model_id: str) -> bool:
        """Check the model's file against its size and sha256; False if absent or bad.

        The expected digest is the registry's/spec's; the sidecar's recorded
        digest is used only when the spec has none.
        """
        spec = self.get_spec(model_id)
        path = self.get_model_path(model_id)
        if not is_regular_file(path):
            return False
        meta = self.get_metadata(model_id) or {}
        expected_size = spec.size_bytes if spec is not None else None
        expected_sha = self._expected_sha256(spec) if spec is not None else None
        if expected_sha is None:
            side_sha = meta.get("sha256")
            if isinstance(side_sha, str) and len(side_sha) == 64:
                expected_sha = side_sha.lower()
            if expected_size is None and isinstance(meta.get("size_bytes"), int):
                expected_size = meta["size_bytes"]
        if expected_size is not None and os.lstat(path).st_size != expected_size:
            return False
        return expected_sha is None or sha256_file(path) == expected_sha

    # -- bookkeeping ----------------------------------------------------------
    @contextlib.contextmanager
    def _activity(self, token: CancelToken) -> Iterator[None]:
        with self._active_lock:
            self._active.add(token)
        try:
            yield
        finally:
            with self._active_lock:
                self._active.discard(token)

    def cancel_download(self) -> bool:
        """Cancel every download/import running in this manager; True if there was one."""
        with self._active_lock:
            tokens = list(self._active)
        for t in tokens:
            t.cancel()
        return bool(tokens)

    def _ensure_dir(self) -> None:
        d = self._models_dir
        if d.exists() and not d.is_dir():
            raise ConfigurationException("Models folder is not a directory", str(d))
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise wrap_os_error(e, "creating the models folder", d) from e
        if not os.access(d, os.W_OK):
            raise DownloadException("Models folder is not writable", str(d))

    def _lock(self, spec: ModelSpec, token: Optional[CancelToken]) -> ModelLock:
        return ModelLock(self._models_dir / f"{spec.file_name}.lock", self.lock_timeout, token)

    def _remove_invalid(self, spec: ModelSpec) -> None:
        path = self._final(spec)
        if os.path.lexists(path):
            _log.warning("removing invalid model file %s", path)
            if unlink_quiet(path):
                fsync_dir(self._models_dir)
            unlink_quiet(self._sidecar(spec.id))

    def _discard_tmp(self, spec: ModelSpec) -> None:
        tmp = self._tmp(spec)
        unlink_quiet(tmp)
        unlink_quiet(resume_state_path(tmp))

    def _install(
        self,
        spec: ModelSpec,
        digest: str,
        size: int,
        verify: bool,
        source: str,
        reporter: ProgressReporter,
    ) -> Path:
        """Verify the fsync'd ``.tmp``, rename it into place, write the sidecar, send 100 %."""
        tmp, final = self._tmp(spec), self._final(spec)
        if spec.size_bytes is not None and size != spec.size_bytes:
            self._discard_tmp(spec)
            raise ModelValidationException(
                "Size mismatch",
                f"{spec.id}: got {size} bytes from {describe_source(source)}, "
                f"expected {spec.size_bytes}",
            )
        expected = self._expected_sha256(spec)
        if verify and expected is not None and digest != expected:
            self._discard_tmp(spec)
            raise ChecksumException(
                "SHA256 checksum mismatch",
                f"{spec.id}: expected {expected}, actual {digest} (from {describe_source(source)})",
            )
        if not is_regular_file(tmp):
            raise DownloadException("Download file vanished before rename", str(tmp))
        try:
            os.replace(tmp, final)
        except OSError as e:
            self._discard_tmp(spec)
            raise wrap_os_error(e, "moving the model into place", final) from e
        fsync_dir(self._models_dir)
        unlink_quiet(resume_state_path(tmp))
        meta = {
            "format": _SIDECAR_FORMAT,
            "id": spec.id,
            "spec": spec.to_dict(),
            "source": source,
            "downloaded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "size_bytes": size,
            "sha256": digest,
            "verified": bool(verify and expected is not None),
        }
        try:
            atomic_write_json(self._sidecar(spec.id), meta)
        except OSError as e:  # the model is in place and valid; metadata is a nicety
            _log.warning("could not write the metadata of %s: %s", spec.id, e)
        reporter.complete(size)
        return final

    # -- download / import ----------------------------------------------------
    def download(
        self,
        spec_or_id: SpecOrId,
        cancel_token: Optional[CancelToken] = None,
        on_progress: Optional[ProgressCallback] = None,
        verify: bool = True,
    ) -> Path:
        """Make the model present and valid; return its path.

        A model already present and valid (size, and sha256 when ``verify`` and
        known) is returned without any request (one 100 % event is sent).
        Otherwise the spec's sources are tried in order; a source-side failure
        (HTTP error, retries exhausted, package not installed) moves on to the
        next source, anything else is raised at once.

        Raises:
            ConfigurationException: unknown id, invalid spec, no sources.
            DownloadCancelledException: cancelled (``.tmp`` kept for http).
            ChecksumException / ModelValidationException: wrong digest/size;
                the bad bytes are deleted.
            DownloadException: network/HTTP failure after the retries, no disk
                space, disk full, unwritable folder, lock timeout.
        """
        spec = self._spec(spec_or_id)
        token = cancel_token if cancel_token is not None else CancelToken()
        reporter = ProgressReporter(on_progress)
        with self._activity(token):
            token.raise_if_cancelled()
            self._ensure_dir()
            with self._lock(spec, token):
                final = self._final(spec)
                if self._present_valid(spec, verify, token):
                    reporter.complete(os.lstat(final).st_size)
                    return final
                self._remove_invalid(spec)
                if not spec.sources:
                    raise ConfigurationException("Model has no sources", spec.id)
                if spec.size_bytes is not None:
                    tmp = self._tmp(spec)
                    have = os.lstat(tmp).st_size if is_regular_file(tmp) else 0
                    check_free_space(
                        self._models_dir,
                        max(0, spec.size_bytes - have),
                        self.config.free_space_margin,
                        spec.name,
                    )
                return self._fetch_from_sources(spec, token, reporter, verify)

    def _fetch_from_sources(
        self,
        spec: ModelSpec,
        token: CancelToken,
        reporter: ProgressReporter,
        verify: bool,
    ) -> Path:
        failures: list[DownloadException] = []
        for source in spec.sources:
            token.raise_if_cancelled()
            try:
                digest, size = self._fetch(spec, source, token, reporter)
            except DownloadCancelledException:
                raise
            except DownloadException as e:
                if not is_source_failure(e):
                    raise
                _log.warning("source %s of %s failed: %s", describe_source(source), spec.id, e)
                failures.append(e)
                continue
            return self._install(spec, digest, size, verify, source, reporter)
        if len(failures) == 1:
            raise failures[0]
        raise DownloadException(
            "Failed to download model from every source",
            "; ".join(f"{describe_source(s)}: {e}" for s, e in zip(spec.sources, failures)),
            failures[-1],
        )

    def _fetch(
        self,
        spec: ModelSpec,
        source: str,
        token: CancelToken,
        reporter: ProgressReporter,
    ) -> tuple[str, int]:
        scheme = source_scheme(source)
        if scheme in ("http", "https"):
            return HttpDownload(
                source,
                self._tmp(spec),
                spec.name,
                spec.size_bytes,
                self._expected_sha256(spec),
                self.config,
                reporter,
                token,
            ).run()
        if scheme == "package":
            src = resolve_package_source(source)
        elif scheme == "file":
            src = resolve_file_source(source)
        else:  # ModelSpec validates schemes; this is a guard
            raise ConfigurationException("Unsupported model source", source)
        # a local source never resumes: a stale http .tmp is not ours to append to
        self._discard_tmp(spec)
        return copy_to_tmp(
            src,
            self._tmp(spec),
            spec.name,
            spec.size_bytes,
            self.config,
            reporter,
            token,
        )

    def ensure(
        self,
        spec_or_id: SpecOrId = DEFAULT_MODEL_ID,
        cancel_token: Optional[CancelToken] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Path:
        """``download(spec_or_id, verify=True)``: present and valid → its path, no request."""
        return self.download(spec_or_id, cancel_token, on_progress, verify=True)

    def import_model(
        self,
        path: Union[str, os.PathLike[str]],
        spec_or_id: SpecOrId,
        *,
        verify: bool = True,
        cancel_token: Optional[CancelToken] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Path:
        """Copy a local model file into the models folder (verify, then rename).

        ``spec_or_id`` may be a spec, a known id, or a new id (then a spec
        with no digest is made for it). A source of the wrong size raises
        ``ModelValidationException`` before anything is written, a missing one
        ``ModelValidationException`` too; a present and valid model is returned
        without copying; the source itself being the model's file is accepted
        after validation.
        """
        if isinstance(spec_or_id, ModelSpec):
            spec = spec_or_id
        else:
            known = self.get_spec(spec_or_id)
            spec = known if known is not None else ModelSpec(id=spec_or_id, name=spec_or_id)
        src = Path(path)
        if not src.is_file():
            raise ModelValidationException("Source file not found", str(src))
        token = cancel_token if cancel_token is not None else CancelToken()
        reporter = ProgressReporter(on_progress)
        with self._activity(token):
            token.raise_if_cancelled("Import")
            self._ensure_dir()
            with self._lock(spec, token):
                final = self._final(spec)
                same = is_regular_file(final) and os.path.samefile(src, final)
                if self._present_valid(spec, verify, token):
                    reporter.complete(os.lstat(final).st_size)
                    return final
                if same:
                    raise ModelValidationException(
                        "The model file in place is invalid and is the import source",
                        str(src),
                    )
                self._remove_invalid(spec)
                self._discard_tmp(spec)
                digest, size = copy_to_tmp(
                    src,
                    self._tmp(spec),
                    spec.name,
                    spec.size_bytes,
                    self.config,
                    reporter,
                    token,
                )
                return self._install(spec, digest, size, verify, src.resolve().as_uri(), reporter)

    # -- inventory --------------------------------------------------------------
    def delete_model(self, model_id: str) -> bool:
        """Delete the model's file, sidecar and partial download; True if the model was there."""
        validate_model_id(model_id)
        spec = self.get_spec(model_id) or ModelSpec(id=model_id, name=model_id)
        if not self._models_dir.is_dir():
            return False
        with self._lock(spec, None):
            existed = unlink_quiet(self._final(spec))
            unlink_quiet(self._sidecar(model_id))
            self._discard_tmp(spec)
        fsync_dir(self._models_dir)
        return existed

    def list_downloaded(self) -> list[str]:
        """Ids of the models whose file is in the folder (sidecar, registry, bare ``<id>.gguf``)."""
        d = self._models_dir
        if not d.is_dir():
            return []
        named: set[str] = set(self._registry)
        bare: set[str] = set()
        for p in d.iterdir():
            name = p.name
            if name.startswith(".") or name.endswith((".tmp", ".tmp.json", ".lock")):
                continue
            if name.endswith(".json"):
                named.add(name[: -len(".json")])
            elif name.endswith((".gguf", ".bin")):
                bare.add(name.rsplit(".", 1)[0])
        ids: set[str] = set()
        claimed: set[Path] = set()
        for model_id in named:
            try:
                path = self.get_model_path(model_id)
            except ConfigurationException:
                continue
            if is_regular_file(path):
                ids.add(model_id)
                claimed.add(path)
        for model_id in bare - named:  # a model file with neither sidecar nor registry entry
            try:
                path = self.get_model_path(model_id)
            except ConfigurationException:
                continue
            if path not in claimed and is_regular_file(path):
                ids.add(model_id)
        return sorted(ids)

    def total_size(self) -> int:
        """Bytes used by the downloaded models (``list_downloaded``)."""
        return sum(os.lstat(self.get_model_path(i)).st_size for i in self.list_downloaded())

    def resolve(self, id_or_path: Union[str, os.PathLike[str]]) -> Path:
        """A model file path from a path or an id.

        An existing file path is returned as is (no copy); a known id is
        ``ensure``d (present and valid → no request). Anything else raises
        ``ConfigurationException``.
        """
        raw = os.fspath(id_or_path)
        p = Path(raw)
        if p.is_file():
            return p
        try:
            validate_model_id(raw)
        except ConfigurationException:
            raise ConfigurationException(
                "Model not found", f"{raw!r} is neither an existing file nor a model id"
            ) from None
        if self.get_spec(raw) is None:
            raise ConfigurationException(
                "Model not found",
                f"{raw!r} is neither an existing file nor a known model id",
            )
        return self.ensure(raw)
