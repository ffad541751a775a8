"""Names a package imports on first use (PEP 562), so that importing the
package never loads what those names need (the compiled extension)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Mapping, Tuple


def lazy_names(
    package: str, namespace: Dict[str, Any], table: Mapping[str, str]
) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``table`` maps a name to the
    submodule (relative to ``package``) that defines it; a name is imported once
    and then kept in ``namespace`` (the package's globals)."""

    def getattr_(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def dir_() -> List[str]:
        return sorted(set(namespace) | set(table))

    return getattr_, dir_
