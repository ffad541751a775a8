"""``ModelManager``: atomic, verified, resumable model downloads, imports and lookups.

A thin orchestration over ``Store`` (the models folder: paths, sidecar, lock,
checks, verify-then-install; ``store.py`` has the layout) and the fetchers
(``fetchers/``: http(s), local file, installed package). A download and an
import take one path (``_place``): present and valid → done; otherwise, under
the model's lock, the sources are tried in order into ``F.tmp`` and what the
first one delivers is verified and renamed into place.

The folder is ``$EDGEVEDA_MODELS_DIR`` if set, else
``platformdirs.user_data_dir("edgeveda")/models`` (application data, not a
cache that gets swept); the ``models_dir`` argument overrides both.

Guarantees (docs/porting.md §6 has the protocol step by step):

* At the model's path there is either nothing or a complete, verified file;
  a size or sha256 mismatch deletes the bad bytes and raises
  ``ModelValidationException`` / ``ChecksumException`` (``expected``,
  ``actual``). The digest checked is the spec's, else the registry's; a
  sidecar's recorded digest counts only for a model whose spec has none, so
  editing a sidecar never makes a bad file pass.
* Ids and file names cannot escape the folder (``ModelSpec`` validates them);
  symlinks planted at ``F``, ``F.tmp`` or the lock are removed, never written
  through, and never count as a downloaded model.
* Free space is checked once, as soon as the size is known; a full disk
  (ENOSPC/EFBIG/EDQUOT) removes the ``.tmp``. Neither is retried.
* Cancel (``CancelToken`` or ``cancel_download()``) stops before the next
  chunk is written, even on a silent server; an http ``.tmp`` is kept for a
  later resume, a local copy's is removed.
* Progress never goes backwards and reaches 100 % only once the file is in place.
* Failures carry typed attributes (``reason``, ``url``, ``status``, ``field``,
  ``expected``, ``actual``, ``path``): see ``errors.FailureReason``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import platformdirs

from ..errors import (
    ConfigurationException,
    FailureReason,
    ModelValidationException,
)
from .cancel import CancelToken
from .fetchers import Fetcher, FileFetcher, fetch_first, fetcher_for
from .fsutil import is_regular_file
from .progress import ProgressCallback, ProgressReporter
from .registry import DEFAULT_MODEL_ID, KNOWN_MODELS
from .spec import DownloadConfig, DownloadProgress, ModelSpec, validate_model_id
from .staging import Staging
from .store import Expected, Store, VerifyReport

__all__ = [
    "DEFAULT_MODEL_ID",
    "KNOWN_MODELS",
    "MODELS_DIR_ENV",
    "CancelToken",
    "DownloadProgress",
    "ModelManager",
    "ModelSpec",
    "VerifyReport",
    "default_models_dir",
]

_log = logging.getLogger("edgeveda_ffi.model_manager")

#: Environment variable that overrides the default models folder.
MODELS_DIR_ENV = "EDGEVEDA_MODELS_DIR"

SpecOrId = Union[ModelSpec, str]


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
        root = Path(models_dir) if models_dir is not None else default_models_dir()
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
        self.store = Store(root, free_space_margin=free_space_margin, lock_timeout=lock_timeout)
        self._registry: dict[str, ModelSpec] = {s.id: s for s in KNOWN_MODELS}
        for spec in registry or ():
            self.register(spec)
        self._active: set[CancelToken] = set()
        self._active_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModelManager(models_dir={str(self.models_dir)!r})"

    @property
    def models_dir(self) -> Path:
        """The models folder (it may not exist yet)."""
        return self.store.root

    @property
    def lock_timeout(self) -> Optional[float]:
        """Seconds to wait for another holder of a model's lock (``None``: no limit)."""
        return self.store.lock_timeout

    # -- registry -----------------------------------------------------------
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

    def _expected(self, spec: ModelSpec) -> Expected:
        """What a file of ``spec`` must match: its size, and its digest, else the registry's."""
        sha = spec.sha256
        if sha is None:
            reg = self._registry.get(spec.id)
            sha = reg.sha256 if reg is not None else None
        return Expected(spec.size_bytes, sha, "spec" if sha else None)

    def _expected_by_id(self, model_id: str) -> Expected:
        """``_expected`` of the id's spec; what the sidecar recorded fills what it lacks."""
        spec = self.get_spec(model_id)
        return self.store.with_sidecar(model_id, self._expected(spec) if spec else Expected())

    # -- lookups --------------------------------------------------------------
    def get_model_path(self, model_id: str) -> Path:
        """Where the model ``model_id`` lives (or would live) in the models folder."""
        spec = self.get_spec(model_id)
        return self.models_dir / (spec.filename if spec else f"{model_id}.gguf")

    def get_metadata(self, model_id: str) -> Optional[dict[str, Any]]:
        """The parsed sidecar ``<id>.json`` (spec, source, downloaded_at, size, sha256) or None."""
        return self.store.read_sidecar(model_id)

    def check(
        self,
        model_id: str,
        *,
        cancel_token: Optional[CancelToken] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> VerifyReport:
        """Hash the model's file and check it; a ``VerifyReport`` when it passes.

        The expected size and sha256 are the spec's (or the registry's); the
        sidecar's recorded values are used only where the spec has none.
        ``on_progress`` gets ``DownloadProgress`` events while hashing (100 %
        once it passed).

        Raises:
            ConfigurationException: an invalid id.
            ModelValidationException: ``reason`` ``NOT_DOWNLOADED`` (no file)
                or ``SIZE_MISMATCH`` (``expected``/``actual`` sizes).
            ChecksumException: the digest differs (``expected``/``actual``).
        """
        expected = self._expected_by_id(model_id)
        path = self.get_model_path(model_id)
        reporter = ProgressReporter(on_progress)
        size = os.lstat(path).st_size if is_regular_file(path) else 0
        reporter.begin(0, size)
        report = self.store.check(
            model_id,
            path,
            expected,
            token=cancel_token,
            on_bytes=lambda n: reporter.update(n, size),
        )
        reporter.complete(report.size_bytes)
        return report

    def verify(self, model_id: str) -> bool:
        """``check(model_id)`` as a bool: False if the file is absent or bad."""
        try:
            self.check(model_id)
        except ModelValidationException:
            return False
        return True

    def is_downloaded(self, model_id: str, verify: bool = False) -> bool:
        """True if the model's file is there (a regular file of the right size).

        With ``verify=True`` the sha256 is checked too (see ``verify``).
        """
        if verify:
            return self.verify(model_id)
        expected = self._expected_by_id(model_id)
        return self.store.is_present(
            model_id, self.get_model_path(model_id), Expected(expected.size_bytes)
        )

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
        Otherwise the spec's sources are tried in order (``fetchers.fetch_first``).

        Raises:
            ConfigurationException: unknown id, invalid spec, no sources.
            DownloadCancelledException: cancelled (``.tmp`` kept for http).
            ChecksumException / ModelValidationException: wrong digest/size;
                the bad bytes are deleted.
            DownloadException: network/HTTP failure after the retries, no disk
                space, disk full, unwritable folder, lock timeout.
        """
        spec = self._spec(spec_or_id)

        def fetchers() -> list[Fetcher]:
            if not spec.sources:
                raise ConfigurationException("Model has no sources", spec.id)
            return [fetcher_for(source, self.config) for source in spec.sources]

        return self._place(spec, fetchers, cancel_token, on_progress, verify, "Download")

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

        The same path as ``download`` with the file as the only source.
        ``spec_or_id`` may be a spec, a known id, or a new id (then a spec
        with no digest is made for it). A source of the wrong size raises
        ``ModelValidationException`` before anything is written, a missing one
        too (``reason`` ``SOURCE_MISSING``); a present and valid model is
        returned without copying; the source itself being the model's file is
        accepted after validation.
        """
        if isinstance(spec_or_id, ModelSpec):
            spec = spec_or_id
        else:
            known = self.get_spec(spec_or_id)
            spec = known if known is not None else ModelSpec(id=spec_or_id, name=spec_or_id)
        src = Path(path)
        if not src.is_file():
            raise ModelValidationException(
                "Source file not found",
                str(src),
                reason=FailureReason.SOURCE_MISSING,
                path=str(src),
                model_id=spec.id,
            )

        def fetchers() -> list[Fetcher]:
            return [FileFetcher(src, self.config.chunk_size)]

        return self._place(spec, fetchers, cancel_token, on_progress, verify, "Import")

    def _place(
        self,
        spec: ModelSpec,
        make_fetchers: Callable[[], Sequence[Fetcher]],
        cancel_token: Optional[CancelToken],
        on_progress: Optional[ProgressCallback],
        verify: bool,
        what: str,
    ) -> Path:
        """Present and valid → its path; else fetch, verify and install under the lock."""
        store = self.store
        token = cancel_token if cancel_token is not None else CancelToken()
        reporter = ProgressReporter(on_progress)
        expected = self._expected(spec)
        wanted = expected if verify else Expected(expected.size_bytes)
        final = store.final(spec)
        with self._activity(token):
            token.raise_if_cancelled(what)
            # A file at the model's path only ever arrives by a rename of a
            # verified .tmp, so it can be checked without the lock (or a write).
            if store.is_present(spec.id, final, wanted, token):
                reporter.complete(os.lstat(final).st_size)
                return final
            store.ensure_dir()
            with store.lock(spec, token):
                if store.is_present(spec.id, final, wanted, token):  # another process did it
                    reporter.complete(os.lstat(final).st_size)
                    return final
                fetchers = make_fetchers()
                if os.path.lexists(final) and any(f.reads(final) for f in fetchers):
                    # the invalid model file is the very file to import: raise
                    # why (ModelValidationException / ChecksumException), keep it
                    store.check(spec.id, final, wanted, token=token)
                    reporter.complete(os.lstat(final).st_size)  # valid after all
                    return final
                store.remove_invalid(spec)
                staging = Staging(store, spec, expected.sha256, reporter, token, what)
                # the size is known before any request: check it (and free space) now
                staging.announce(spec.size_bytes, staging.existing_size(), "the spec")
                source, fetched = fetch_first(fetchers, staging)
                return store.install(
                    spec, fetched, expected, verify=verify, source=source, reporter=reporter
                )

    # -- inventory --------------------------------------------------------------
    def delete_model(self, model_id: str) -> bool:
        """Delete the model's file, sidecar and partial download; True if the model was there."""
        validate_model_id(model_id)
        spec = self.get_spec(model_id) or ModelSpec(id=model_id, name=model_id)
        return self.store.delete(spec)

    def list_downloaded(self) -> list[str]:
        """Ids of the models whose file is in the folder (sidecar, registry, bare ``<id>.gguf``)."""
        named, bare = self.store.scan()
        named |= set(self._registry)
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

    def resolve(
        self,
        id_or_path: Union[str, os.PathLike[str]],
        *,
        verify: bool = True,
        cancel_token: Optional[CancelToken] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Path:
        """A model file path from a path or an id.

        An existing file path is returned as is (no copy). A known id is
        ``download``ed (present and valid → no request; ``verify=False``
        checks the size only). A bare ``<id>.gguf`` in the models folder with
        no spec is returned as is. Anything else raises
        ``ConfigurationException`` ("Model not found").
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
        spec = self.get_spec(raw)
        if spec is not None:
            return self.download(spec, cancel_token, on_progress, verify=verify)
        if self.is_downloaded(raw):
            return self.get_model_path(raw)
        raise ConfigurationException(
            "Model not found",
            f"{raw!r} is neither an existing file nor a known model id",
        )
