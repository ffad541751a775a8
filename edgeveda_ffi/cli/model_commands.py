"""``edgeveda models list | download | rm | path | verify | import``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List

from ..errors import ConfigurationException
from .common import (
    EXIT_OK,
    CliError,
    UsageError,
    error_line,
    fetch_model,
    human_bytes,
    verify_model,
)

if TYPE_CHECKING:
    pass

from .engine_commands import _note, manager_of as _manager

__all__ = [
    "cmd_models_list",
    "cmd_models_download",
    "cmd_models_rm",
    "cmd_models_path",
    "cmd_models_verify",
    "cmd_models_import",
]


def cmd_models_list(args: argparse.Namespace) -> int:
    from .. import DEFAULT_MODEL_ID

    manager = _manager(args)
    downloaded = set(manager.list_downloaded())
    rows: List[Dict[str, Any]] = []
    ids = sorted({s.id for s in manager.known_models()} | downloaded)
    for model_id in ids:
        spec = manager.get_spec(model_id)
        path = manager.get_model_path(model_id)
        have = model_id in downloaded
        rows.append(
            {
                "id": model_id,
                "name": spec.name if spec else model_id,
                "size_bytes": path.stat().st_size if have else (spec.size_bytes if spec else None),
                "downloaded": have,
                "path": str(path),
                "default": model_id == DEFAULT_MODEL_ID,
                "sha256": spec.sha256 if spec else None,
                "sources": list(spec.sources) if spec else [],
            }
        )
    if args.format == "json":
        print(json.dumps({"models_dir": str(manager.models_dir), "models": rows}, indent=2))
        return EXIT_OK
    w = max([len(r["id"]) for r in rows] + [2]) + 2
    print(f"  {'ID':<{w}}{'SIZE':>10}  {'STATUS':<16}NAME")
    for r in rows:
        mark = "*" if r["default"] else " "
        status = "downloaded" if r["downloaded"] else "not downloaded"
        print(f"{mark} {r['id']:<{w}}{human_bytes(r['size_bytes']):>10}  {status:<16}{r['name']}")
    print(f"(* default model; models folder: {manager.models_dir})")
    return EXIT_OK


def cmd_models_download(args: argparse.Namespace) -> int:
    from .. import ModelSpec

    manager = _manager(args)
    if args.url is not None:
        try:
            spec = ModelSpec(id=args.id, name=args.id, sources=(args.url,), sha256=args.sha256)
        except ConfigurationException as exc:
            raise UsageError(error_line(exc)) from None
    else:
        if args.sha256 is not None:
            raise UsageError("--sha256 needs --url (registry models carry their own)")
        found = manager.get_spec(args.id)
        if found is None:
            known = ", ".join(sorted(s.id for s in manager.known_models()))
            raise CliError(
                f"unknown model {args.id!r} (known: {known}; use --url for another model)"
            )
        spec = found
    path = fetch_model(manager, spec)
    print(path)
    return EXIT_OK


def cmd_models_rm(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if not manager.delete_model(args.id):
        raise CliError(f"model {args.id!r} is not downloaded in {manager.models_dir}")
    _note(f"removed {args.id}")
    return EXIT_OK


def cmd_models_path(args: argparse.Namespace) -> int:
    manager = _manager(args)
    path = manager.get_model_path(args.id)
    if not manager.is_downloaded(args.id):
        raise CliError(
            f"model {args.id!r} is not downloaded (expected at {path}; "
            f"run `edgeveda models download {args.id}`)"
        )
    print(path)
    return EXIT_OK


def cmd_models_verify(args: argparse.Namespace) -> int:
    report = verify_model(_manager(args), args.id)
    if report.checked_against is None:
        print(f"{args.id}: size ok, no sha256 known (sha256 {report.sha256})")
    else:
        print(f"{args.id}: OK (sha256 {report.sha256}, {human_bytes(report.size_bytes)})")
    return EXIT_OK


def cmd_models_import(args: argparse.Namespace) -> int:
    from .. import CancelToken, ModelSpec
    from ..errors import FailureReason, ModelValidationException
    from .common import _Bar, _run_cancellable

    manager = _manager(args)
    src = Path(args.path).expanduser()
    try:
        spec = ModelSpec(id=args.id, name=args.name or args.id, sha256=args.sha256)
    except ConfigurationException as exc:
        raise UsageError(error_line(exc)) from None
    known = manager.get_spec(args.id) if args.sha256 is None and args.name is None else None
    token = CancelToken()
    bar = _Bar(f"import {args.id}", None)
    try:
        path = _run_cancellable(
            lambda: manager.import_model(
                src, known or spec, cancel_token=token, on_progress=bar.on_progress
            ),
            token.cancel,
            "import",
        )
    except ModelValidationException as exc:
        if exc.reason is FailureReason.SOURCE_MISSING:
            raise CliError(f"file not found: {args.path}") from None
        raise
    finally:
        bar.close()
    print(path)
    return EXIT_OK


# ---------------------------------------------------------------------------- main
