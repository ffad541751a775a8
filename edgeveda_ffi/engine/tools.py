"""Tool calls: the grammar of a forced or required call, and its parser.

With OpenAI-shape ``tools`` and ``tool_choice`` ``"required"`` or
``{"type": "function", "function": {"name": X}}``, :func:`tool_call_gbnf`
returns a grammar for exactly one call object::

    {"name": "<a tool's name>", "arguments": <an object valid for that tool's parameters>}

and :func:`parse_tool_call` reads it back. ``"none"`` and ``"auto"`` give
None: a grammar that allows either free text or a call would let a small model
start a call and wander off it, so ``"auto"`` is left to the prompt (the chat
template) and parsing, not to sampling. Pure Python.
"""

from __future__ import annotations

import json
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from ..errors import ConfigurationException, GenerationException
from .json_schema import SchemaCompiler

__all__ = ["tool_call_gbnf", "parse_tool_call", "tool_names"]

# A tool without "parameters" takes no arguments (as in OpenAI's API).
_NO_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}


def _bad(details: str, field: str = "tools") -> ConfigurationException:
    return ConfigurationException(f"Invalid {field.replace('_', ' ')}", details, field=field)


def _tool_function(tool: Any, index: int) -> Mapping[str, Any]:
    """The ``function`` object of ``tools[index]``, its shape checked."""
    where = f"tools[{index}]"
    if not isinstance(tool, Mapping) or tool.get("type") != "function":
        raise _bad(f"{where} must be {{'type': 'function', 'function': {{...}}}}")
    function = tool.get("function")
    if not isinstance(function, Mapping):
        raise _bad(f"{where}.function must be an object")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.function.name must be a non-empty string")
    params = function.get("parameters", _NO_PARAMETERS)
    if not isinstance(params, Mapping):
        raise _bad(f"{where}.function.parameters must be a JSON schema object")
    return function


def tool_names(tools: Sequence[Mapping[str, Any]]) -> List[str]:
    """The function names of ``tools`` (shapes checked; names must be unique)."""
    names: List[str] = []
    for i, tool in enumerate(tools):
        name = _tool_function(tool, i)["name"]
        if name in names:
            raise _bad(f"tools[{i}]: the name {name!r} is used twice")
        names.append(name)
    return names


def _chosen(tools: Sequence[Mapping[str, Any]], tool_choice: Any) -> Optional[List[int]]:
    """Indexes of the tools a call may use (None: no grammar)."""
    names = tool_names(tools)
    if tool_choice is None or tool_choice in ("none", "auto"):
        return None
    if tool_choice == "required":
        if not names:
            raise _bad("'required' needs at least one tool", "tool_choice")
        return list(range(len(names)))
    function = tool_choice.get("function") if isinstance(tool_choice, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(tool_choice, Mapping) or tool_choice.get("type") != "function" or not name:
        raise ConfigurationException(
            "Invalid tool_choice",
            "expected 'none', 'auto', 'required' or "
            f"{{'type': 'function', 'function': {{'name': ...}}}}, got {tool_choice!r}",
            field="tool_choice",
        )
    if name not in names:
        raise _bad(f"no tool is named {name!r} (tools: {names})", "tool_choice")
    return [names.index(name)]


def tool_call_gbnf(tools: Sequence[Mapping[str, Any]], tool_choice: Any) -> Optional[str]:
    """The GBNF grammar of one call to a tool that ``tool_choice`` allows.

    Returns None for ``"none"``, ``"auto"`` and None (no constraint).

    Raises:
        ConfigurationException: ``field="tools"`` for a malformed tool or a
            parameters schema outside the supported subset (see
            :mod:`.json_schema`), ``field="tool_choice"`` for an unknown name
            or shape.
    """
    chosen = _chosen(tools, tool_choice)
    if chosen is None:
        return None
    compiler = SchemaCompiler("tools")
    root = compiler.reserve("root")  # first, so the grammar starts with it
    ws = compiler.primitive("ws")
    calls = []
    for i in chosen:
        function = tools[i]["function"]
        params = function.get("parameters", _NO_PARAMETERS)
        args = compiler.compile(
            params, f"{function['name']}-arguments", path=f"tools[{i}].function.parameters"
        )
        name = json.dumps(function["name"], ensure_ascii=False)
        name_literal = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        calls.append(
            f'"{{" {ws} "\\"name\\"" {ws} ":" {ws} {name_literal} {ws} "," {ws} '
            f'"\\"arguments\\"" {ws} ":" {ws} {args} {ws} "}}"'
        )
    compiler.rules[root] = " | ".join(f"( {c} )" for c in calls)
    return compiler.grammar()


def parse_tool_call(text: str) -> Tuple[str, str]:
    """``(name, arguments)`` of a call generated under :func:`tool_call_gbnf`.

    ``arguments`` is a JSON string, as in OpenAI's ``tool_calls[].function.arguments``.

    Raises:
        GenerationException: the text is not a complete call (for example the
            generation stopped at ``max_tokens``).
    """
    try:
        call = json.loads(text)
    except ValueError as exc:
        raise GenerationException(
            "The output is not a complete tool call", f"{exc}: {text[:200]!r}"
        ) from None
    if (
        not isinstance(call, dict)
        or not isinstance(call.get("name"), str)
        or not isinstance(call.get("arguments"), dict)
    ):
        raise GenerationException(
            "The output is not a tool call", f"expected {{'name', 'arguments'}}: {text[:200]!r}"
        )
    return call["name"], json.dumps(call["arguments"], ensure_ascii=False)
