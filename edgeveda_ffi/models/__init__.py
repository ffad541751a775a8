"""The model manager: the models folder (store), where models come from
(fetchers: HTTP, local file, installed package) and the registry of known
models. Needs no compiled extension."""

from __future__ import annotations

from .cancel import CancelToken
from .manager import MODELS_DIR_ENV, ModelManager, default_models_dir
from .registry import DEFAULT_MODEL_ID, KNOWN_MODELS
from .spec import DownloadProgress, ModelSpec
from .store import VerifyReport

__all__ = [
    "CancelToken",
    "DEFAULT_MODEL_ID",
    "DownloadProgress",
    "KNOWN_MODELS",
    "ModelManager",
    "ModelSpec",
    "MODELS_DIR_ENV",
    "VerifyReport",
    "default_models_dir",
]
