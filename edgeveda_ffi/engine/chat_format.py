"""OpenAI chat messages as the ``{"role", "content"}`` strings the model's
chat template takes, and tool calls back out of the model's text.

llama.cpp's built-in chat templates (``llama_chat_apply_template``) have no
tool syntax, so tools reach every model the same way, the documented
fallback: a system message that lists the functions with their parameter
schemas and asks for a reply of only ``{"name": ..., "arguments": {...}}``
when the model calls one. An assistant turn that called tools is rendered as
that JSON; a ``role: "tool"`` message keeps its role (ChatML and most
templates print any role) with the call id and the result as its content.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..errors import ConfigurationException, GenerationException
from .tools import parse_tool_call, tool_names

__all__ = ["render_messages", "tools_system_prompt", "tool_calls_from_text"]

_ROLES = ("system", "developer", "user", "assistant", "tool")


def _bad(index: int, why: str) -> ConfigurationException:
    return ConfigurationException(
        "Invalid parameter", f"messages[{index}]: {why}", field="messages"
    )


def _text(content: Any, index: int) -> str:
    """A message's content as text: a string, or OpenAI content parts of type text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise _bad(index, f"content part {kind!r} is not supported (text only)")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise _bad(index, "content must be a string or a list of text parts")


def _call_json(call: Mapping[str, Any], index: int) -> str:
    try:
        fn = call["function"]
        name, arguments = fn["name"], fn.get("arguments", "{}")
        args = json.loads(arguments) if isinstance(arguments, str) else arguments
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(index, f"a tool_call needs function.name and JSON arguments ({exc})") from None
    return json.dumps({"name": name, "arguments": args}, ensure_ascii=False)


def tools_system_prompt(tools: Sequence[Mapping[str, Any]]) -> str:
    """The fallback system text that describes ``tools`` (OpenAI shape)."""
    lines = ["You can call these functions:"]
    for tool in tools:
        fn = tool.get("function", {}) if isinstance(tool, Mapping) else {}
        spec = {
            "name": fn.get("name"),
            "description": fn.get("description", ""),
            "parameters": fn.get("parameters", {"type": "object", "properties": {}}),
        }
        lines.append(json.dumps(spec, ensure_ascii=False))
    lines.append(
        'To call a function, reply with only a JSON object: {"name": <function name>, '
        '"arguments": <an object of its parameters>}. Otherwise answer normally.'
    )
    return "\n".join(lines)


def render_messages(
    messages: Sequence[Mapping[str, Any]], tool_prompt: Optional[str] = None
) -> List[Dict[str, str]]:
    """``messages`` (OpenAI shape) as role/content strings for the chat template,
    with ``tool_prompt`` joined to the first system message (or added as one)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ConfigurationException(
            "Invalid parameter", "messages must be a list of messages", field="messages"
        )
    out: List[Dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise _bad(i, "must be a mapping with 'role' and 'content'")
        role = m.get("role")
        if role not in _ROLES:
            raise _bad(i, f"role {role!r} is not one of {', '.join(_ROLES)}")
        text = _text(m.get("content"), i)
        if role == "developer":
            role = "system"
        if role == "assistant" and m.get("tool_calls"):
            calls = [_call_json(c, i) for c in m["tool_calls"]]
            text = "\n".join(([text] if text else []) + calls)
        elif role == "tool":
            call_id = m.get("tool_call_id")
            text = f"[result of {call_id}] {text}" if call_id else text
        out.append({"role": str(role), "content": text})
    if tool_prompt:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{tool_prompt}"}
        else:
            out.insert(0, {"role": "system", "content": tool_prompt})
    return out


def tool_calls_from_text(
    text: str, tools: Optional[Sequence[Mapping[str, Any]]]
) -> Optional[List[Dict[str, Any]]]:
    """The OpenAI ``tool_calls`` for ``text`` when it is a whole call of one of
    ``tools`` (``{"name": ..., "arguments": {...}}``), else None (an answer, or
    a call cut short by ``max_tokens``)."""
    try:
        name, arguments = parse_tool_call(text.strip())
    except GenerationException:
        return None
    if name not in tool_names(tools or ()):
        return None
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
    ]
