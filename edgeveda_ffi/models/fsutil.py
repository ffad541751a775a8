"""File-system helpers of the model manager: no symlink following, fsync, atomic JSON."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import DownloadException, FailureReason

__all__ = [
    "DISK_FULL_ERRNOS",
    "atomic_write_json",
    "free_bytes",
    "fsync_dir",
    "hash_file",
    "is_private_regular_file",
    "is_regular_file",
    "mb",
    "open_for_write",
    "read_json",
    "sha256_file",
    "unlink_quiet",
    "wrap_os_error",
    "write_all",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)

#: errno values that mean "no room": full disk, file-size limit, quota.
DISK_FULL_ERRNOS = frozenset(
    e for e in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", None)) if e is not None
)


def mb(n: float) -> str:
    """``n`` bytes as megabytes (10^6) with one decimal, e.g. ``"98.4MB"``."""
    return f"{n / 1e6:.1f}MB"


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename in it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def unlink_quiet(path: Path) -> bool:
    """Remove ``path`` (a file or a symlink, never its target); False if it was absent."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        return False


def is_regular_file(path: Path) -> bool:
    """True for a regular file that is not a symlink."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode)


def is_private_regular_file(path: Path) -> bool:
    """A regular file, not a symlink, with no other hard link: safe to append to.

    A ``.tmp`` hard-linked to a file elsewhere (planted) must not be resumed, or
    the download would write into that other file.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def open_for_write(path: Path, append: bool) -> int:
    """Open ``path`` for writing without ever following a symlink; return the fd.

    ``append=False`` removes whatever is at ``path`` (file or planted symlink:
    the link is removed, its target untouched) and creates a new file with
    ``O_EXCL``. ``append=True`` opens an existing regular file for appending;
    a symlink (or a file with another hard link) there is removed and a new
    empty file is created instead.
    """
    if append and is_private_regular_file(path):
        return os.open(str(path), os.O_WRONLY | os.O_APPEND | _NOFOLLOW | _CLOEXEC | _BINARY)
    unlink_quiet(path)
    return os.open(
        str(path),
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY,
        0o644,
    )


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - os.write raises instead
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: unique temp file, fsync, replace, fsync dir."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    data = json.dumps(obj, indent=2, sort_keys=True).encode("utf-8")
    fd = os.open(
        str(tmp),
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY,
        0o644,
    )
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise
    fsync_dir(path.parent)


def read_json(path: Path) -> Optional[dict[str, Any]]:
    """The JSON object in ``path`` (not followed if a symlink); ``None`` if absent or invalid."""
    if not is_regular_file(path):
        return None
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def free_bytes(path: Path) -> Optional[int]:
    """Free bytes on the file system of ``path`` (or its nearest existing parent), or None."""
    p = path
    while True:
        try:
            return shutil.disk_usage(p).free
        except OSError:
            if p.parent == p:
                return None
            p = p.parent


def hash_file(
    path: Path,
    hasher: hashlib._Hash,
    chunk_size: int = 1 << 20,
    limit: Optional[int] = None,
    check: Optional[Callable[[], None]] = None,
    on_bytes: Optional[Callable[[int], None]] = None,
) -> int:
    """Feed ``path`` (up to ``limit`` bytes) into ``hasher``; return the bytes read.

    ``check`` is called before each chunk (to raise on cancellation),
    ``on_bytes`` after it with the bytes hashed so far. The file is opened with
    ``O_NOFOLLOW``.
    """
    fd = os.open(str(path), os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _BINARY)
    total = 0
    try:
        while limit is None or total < limit:
            if check is not None:
                check()
            want = chunk_size if limit is None else min(chunk_size, limit - total)
            block = os.read(fd, want)
            if not block:
                break
            hasher.update(block)
            total += len(block)
            if on_bytes is not None:
                on_bytes(total)
    finally:
        os.close(fd)
    return total


def sha256_file(
    path: Path,
    check: Optional[Callable[[], None]] = None,
    on_bytes: Optional[Callable[[int], None]] = None,
) -> str:
    """The sha256 hex digest of ``path`` (see ``hash_file`` for the callbacks)."""
    h = hashlib.sha256()
    hash_file(path, h, check=check, on_bytes=on_bytes)
    return h.hexdigest()


def wrap_os_error(err: OSError, what: str, where: Path) -> DownloadException:
    """A ``DownloadException`` naming the problem of ``err``: ``reason`` is
    ``DISK_FULL``, ``NOT_WRITABLE`` or ``FILESYSTEM``, ``path`` is ``where``."""
    if err.errno in DISK_FULL_ERRNOS:
        msg, reason = "Disk full", FailureReason.DISK_FULL
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        msg, reason = "Models folder is not writable", FailureReason.NOT_WRITABLE
    else:
        msg, reason = "File system error", FailureReason.FILESYSTEM
    return DownloadException(
        f"{msg} while {what}", f"{where}: {err}", err, reason=reason, path=str(where)
    )
