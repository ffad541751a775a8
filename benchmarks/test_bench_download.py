"""ModelManager.download from a 127.0.0.1 server, sha256 checked inline (compare.py: vs curl)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Tuple


def test_download(
    benchmark: Any, file_server: Tuple[str, Path], tmp_path: Path, quick: bool
) -> None:
    from edgeveda_ffi import ModelManager, ModelSpec

    base, folder = file_server
    size = (4 if quick else 64) * 1024 * 1024
    data = os.urandom(size)
    (folder / "blob.bin").write_bytes(data)
    spec = ModelSpec(
        id="bench-blob",
        name="bench blob",
        sources=(f"{base}/blob.bin",),
        size_bytes=size,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    del data
    dirs: List[Path] = []

    def setup() -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        d = tmp_path / f"models-{len(dirs)}"
        dirs.append(d)
        return (ModelManager(d, max_retries=0),), {}

    def download(manager: Any) -> Path:
        return Path(manager.download(spec))

    path = benchmark.pedantic(download, setup=setup, rounds=1 if quick else 5, iterations=1)
    assert path.stat().st_size == size
    benchmark.extra_info["bytes"] = size
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
