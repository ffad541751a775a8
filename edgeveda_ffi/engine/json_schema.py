"""JSON Schema -> GBNF: structured output for :meth:`EdgeVeda.generate`.

``schema_to_gbnf(schema)`` compiles a subset of JSON Schema into a llama.cpp
GBNF grammar (``GenerationParams.grammar``); text sampled under it parses with
``json.loads`` and validates against the schema. ``response_format_grammar``
maps the OpenAI ``response_format`` shapes onto it.

Supported: ``type`` (one or a list), ``const``, ``enum`` (any JSON values),
``properties`` + ``required`` (properties come out in declaration order; the
optional ones may be left out), ``additionalProperties: false``, ``items``,
``minItems``/``maxItems``, ``minLength``/``maxLength``, ``minimum``/``maximum``
and ``exclusiveMinimum``/``exclusiveMaximum`` on integers (draft 4's flags
too; :mod:`.json_schema_ranges`), ``anyOf``, ``$ref`` to
``#/$defs/...``, ``#/definitions/...`` or any other local pointer (recursion
allowed), and the annotations ``title``, ``description``, ``default``,
``examples``, ``$schema``, ``$id``, ``$comment``, ``deprecated``,
``readOnly``, ``writeOnly``, which do not constrain values.

Choices made for generation (the output still validates):

- an object with ``properties`` gets only those properties: a missing
  ``additionalProperties`` is treated as ``false`` (a model that invents keys
  is rarely what a caller wants); ``additionalProperties: true`` or a schema
  there is refused rather than silently narrowed;
- an object schema without ``properties`` (``{"type": "object"}``) allows any
  JSON object;
- whitespace between tokens is bounded (at most one newline and 20 indents,
  as in llama.cpp's own converter) so a small model cannot loop on it, and
  none is allowed before or after the value, so generation ends at its end.

Any other keyword (``pattern``, ``format``, ``oneOf``, ``allOf``, ``not``,
``multipleOf``, ``uniqueItems``, ``minimum`` on a non-integer number, ...)
raises :class:`ConfigurationException` naming the keyword and where it is,
never ignored: a constraint we cannot enforce must not look enforced. Pure
Python: no native library is loaded.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import ConfigurationException
from .json_schema_ranges import BOUND_KEYWORDS, integer_bounds, integer_range_gbnf

__all__ = [
    "JSON_OBJECT_GBNF",
    "schema_to_gbnf",
    "response_format_grammar",
    "SchemaCompiler",
]

# Bounded whitespace (llama.cpp's converter allows "\n"{1,2}; one newline is
# enough for pretty-printed JSON and gives a looping model less rope).
_WS = '| " " | "\\n" [ \\t]{0,20}'

# The shared building blocks, by name. A value rule has no whitespace around it:
# its container adds ``ws`` after each value, so the top-level value ends the
# output with nothing after it (the model must stop right there).
_PRIMITIVES: Dict[str, str] = {
    "ws": _WS,
    "char": r'[^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )',
    "string": '"\\"" char* "\\""',
    "integer": '"-"? ( [0-9] | [1-9] [0-9]{0,15} )',
    "number": '"-"? ( [0-9] | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,4} )?',
    "boolean": '"true" | "false"',
    "null": '"null"',
    "value": "object | array | string | number | boolean | null",
    "object": '"{" ws ( member ( "," ws member )* )? "}"',
    "member": 'string ws ":" ws value ws',
    "array": '"[" ws ( value ws ( "," ws value ws )* )? "]"',
}
_DEPENDS: Dict[str, Tuple[str, ...]] = {
    "ws": (),
    "char": (),
    "string": ("char",),
    "integer": (),
    "number": (),
    "boolean": (),
    "null": (),
    "value": ("object", "array", "string", "number", "boolean", "null"),
    "object": ("ws", "member"),
    "member": ("string", "ws", "value"),
    "array": ("ws", "value"),
}

#: A grammar for one JSON object of any shape (``response_format={"type": "json_object"}``
#: and the CLI's ``--json``), after llama.cpp's ``grammars/json.gbnf``.
JSON_OBJECT_GBNF = "root ::= object\n" + "".join(
    f"{name} ::= {_PRIMITIVES[name]}\n"
    for name in ("value", "object", "member", "array", "string", "char", "number")
    + ("boolean", "null", "ws")
)

# Keywords that never constrain a value, so they are safe to skip.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated"}
    | {"readOnly", "writeOnly", "$defs", "definitions", "strict"}
)
_SUPPORTED = frozenset(
    {"type", "const", "enum", "properties", "required", "additionalProperties", "items"}
    | {"minItems", "maxItems", "minLength", "maxLength", "anyOf", "$ref"}
    | set(BOUND_KEYWORDS)
)
_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
# llama.cpp refuses repetitions above 2000 rule copies (and silently unbounds
# larger maxima); an array item repeat costs three symbols, so stay well below.
_MAX_BOUND = 500


def _literal(text: str) -> str:
    """``text`` as a GBNF double-quoted literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def _json_literal(value: Any) -> str:
    """The compact JSON text of ``value`` as a GBNF literal."""
    return _literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _rule_name(hint: str) -> str:
    """A GBNF rule name (letters, digits, ``-``) from any text."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", hint).strip("-")
    return name or "rule"


class SchemaCompiler:
    """Turns schemas into GBNF rules; one instance builds one grammar.

    ``field`` is the ``ConfigurationException.field`` of every error
    (``"response_format"``, ``"tools"``). :mod:`.tools` uses this to compile
    several schemas into one grammar.
    """

    def __init__(self, field: str = "response_format") -> None:
        self.field = field
        self.rules: Dict[str, str] = {}
        self._primitive: Dict[str, str] = {}  # primitive -> its rule name here
        self._refs: Dict[Tuple[int, str], str] = {}  # (document, pointer) -> rule

    # ------------------------------------------------------------------ output

    def grammar(self) -> str:
        """The GBNF text of every rule added so far."""
        return "".join(f"{name} ::= {body}\n" for name, body in self.rules.items())

    def add_rule(self, hint: str, body: str) -> str:
        """Add ``hint ::= body`` (renamed ``hint-1``, ... if taken); its name."""
        base = _rule_name(hint)
        name, n = base, 0
        while name in self.rules and self.rules[name] != body:
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = body
        return name

    def primitive(self, name: str) -> str:
        """The rule name of a shared building block (added with its dependencies)."""
        if name not in self._primitive:
            # Reserve the name first: the building blocks refer to one another.
            rule = self.reserve(name)
            self._primitive[name] = rule
            deps = {dep: self.primitive(dep) for dep in _DEPENDS[name]}
            body = _PRIMITIVES[name]
            if any(dep != dep_rule for dep, dep_rule in deps.items()):
                body = re.sub(r"\b[a-z]+\b", lambda m: deps.get(m.group(0), m.group(0)), body)
            self.rules[rule] = body
        return self._primitive[name]

    def reserve(self, hint: str) -> str:
        """A fresh rule name from ``hint``, its body to be set in ``rules``."""
        base = _rule_name(hint)
        name, n = base, 0
        while name in self.rules:
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = ""  # filled in by the caller
        return name

    def _fail(self, message: str, path: str, details: str) -> ConfigurationException:
        return ConfigurationException(message, f"{details} at {path}", field=self.field)

    # ------------------------------------------------------------------ schemas

    def compile(self, schema: Any, name: str, *, document: Any = None, path: str = "$") -> str:
        """Add the rules of ``schema`` under ``name``; the name of its rule.

        ``document`` is the schema that ``$ref`` pointers are resolved in
        (``schema`` itself when None).
        """
        return self._visit(schema, name, schema if document is None else document, path)

    def _visit(self, schema: Any, hint: str, doc: Any, path: str) -> str:
        if schema is True or schema == {}:
            return self.primitive("value")
        if not isinstance(schema, Mapping):
            raise self._fail(
                "Invalid JSON schema", path, f"a schema must be an object or true, got {schema!r}"
            )
        for key in schema:
            if key not in _SUPPORTED and key not in _ANNOTATIONS:
                raise self._fail(
                    "Unsupported JSON schema keyword", path, f"unsupported keyword {key!r}"
                )
        if "$ref" in schema:
            extra = [k for k in schema if k in _SUPPORTED and k != "$ref"]
            if extra:
                raise self._fail(
                    "Unsupported JSON schema keyword",
                    path,
                    f"unsupported keyword {extra[0]!r} next to '$ref'",
                )
            return self._ref(schema["$ref"], doc, path)
        if "const" in schema:
            return self.add_rule(hint, _json_literal(schema["const"]))
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise self._fail("Invalid JSON schema", path, "'enum' must be a non-empty array")
            choices = " | ".join(_json_literal(v) for v in values)
            return self.add_rule(hint, choices)
        if "anyOf" in schema:
            options = schema["anyOf"]
            if not isinstance(options, list) or not options:
                raise self._fail("Invalid JSON schema", path, "'anyOf' must be a non-empty array")
            # A constraint beside anyOf applies to every branch; merging it into
            # branches that may be $refs is not done, so it is refused instead.
            beside = [k for k in schema if k in _SUPPORTED and k != "anyOf"]
            if beside:
                raise self._fail(
                    "Unsupported JSON schema keyword",
                    path,
                    f"unsupported keyword {beside[0]!r} next to 'anyOf'",
                )
            alts = [
                self._visit(option, f"{hint}-{i}", doc, f"{path}.anyOf[{i}]")
                for i, option in enumerate(options)
            ]
            return self.add_rule(hint, " | ".join(alts))
        types = schema.get("type")
        if types is None:
            types = self._implied_type(schema)
            if types is None:  # nothing constrains the value
                return self.primitive("value")
        if isinstance(types, list):
            if not types:
                raise self._fail("Invalid JSON schema", path, "'type' must not be empty")
            alts = [
                self._visit({**schema, "type": t}, f"{hint}-{t}", doc, path)
                for t in types
                if self._check_type(t, path)
            ]
            return alts[0] if len(alts) == 1 else self.add_rule(hint, " | ".join(alts))
        self._check_type(types, path)
        if types == "object":
            return self._object(schema, hint, doc, path)
        if types == "array":
            return self._array(schema, hint, doc, path)
        if types == "string":
            return self._string(schema, hint, path)
        if types in ("integer", "number"):
            return self._number(schema, str(types), hint, path)
        return self.primitive(str(types))

    @staticmethod
    def _implied_type(schema: Mapping[str, Any]) -> Any:
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "minItems" in schema or "maxItems" in schema:
            return "array"
        if "minLength" in schema or "maxLength" in schema:
            return "string"
        if any(key in schema for key in BOUND_KEYWORDS):
            return "number"
        return None

    def _check_type(self, name: Any, path: str) -> bool:
        if name not in _TYPES:
            raise self._fail("Invalid JSON schema", path, f"unknown type {name!r}")
        return True

    def _bound(self, schema: Mapping[str, Any], key: str, path: str) -> Optional[int]:
        value = schema.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._fail("Invalid JSON schema", path, f"{key!r} must be an integer >= 0")
        if value > _MAX_BOUND:
            raise self._fail(
                "Unsupported JSON schema keyword",
                path,
                f"unsupported keyword value {key!r}={value} (at most {_MAX_BOUND})",
            )
        return value

    @staticmethod
    def _repeat(item: str, lo: int, hi: Optional[int], sep: str = "") -> str:
        """``lo`` to ``hi`` copies of ``item`` (``hi`` None: no maximum), ``sep`` between."""
        if hi == 0:
            return ""
        more_hi = "" if hi is None else str(hi - 1)
        more = f"( {sep}{item} ){{{max(lo - 1, 0)},{more_hi}}}" if hi != 1 else ""
        body = " ".join(part for part in (item, more) if part)
        return body if lo >= 1 else f"( {body} )?"

    def _string(self, schema: Mapping[str, Any], hint: str, path: str) -> str:
        lo = self._bound(schema, "minLength", path) or 0
        hi = self._bound(schema, "maxLength", path)
        if lo == 0 and hi is None:
            return self.primitive("string")
        if hi is not None and hi < lo:
            raise self._fail("Invalid JSON schema", path, "'maxLength' < 'minLength'")
        char = self.primitive("char")
        count = f"{{{lo},{'' if hi is None else hi}}}"
        return self.add_rule(hint, f'"\\"" {char}{count} "\\""')

    def _number(self, schema: Mapping[str, Any], kind: str, hint: str, path: str) -> str:
        bounds = [key for key in BOUND_KEYWORDS if key in schema]
        if not bounds:
            return self.primitive(kind)
        if kind == "number":
            raise self._fail(
                "Unsupported JSON schema keyword",
                path,
                f"unsupported keyword {bounds[0]!r} on a number that may have a fraction"
                " (bounds are supported with 'type': 'integer')",
            )
        try:
            lo, hi = integer_bounds(schema)
            return self.add_rule(hint, integer_range_gbnf(lo, hi))
        except ValueError as exc:
            raise self._fail("Invalid JSON schema", path, str(exc)) from None

    def _array(self, schema: Mapping[str, Any], hint: str, doc: Any, path: str) -> str:
        items = schema.get("items", True)
        if isinstance(items, list):
            raise self._fail(
                "Unsupported JSON schema keyword", path, "unsupported keyword 'items' as a list"
            )
        item = self._visit(items, f"{hint}-item", doc, f"{path}.items")
        lo = self._bound(schema, "minItems", path) or 0
        hi = self._bound(schema, "maxItems", path)
        if hi is not None and hi < lo:
            raise self._fail("Invalid JSON schema", path, "'maxItems' < 'minItems'")
        ws = self.primitive("ws")
        body = self._repeat(f"{item} {ws}", lo, hi, sep=f'"," {ws} ')
        inner = f"{body} " if body else ""
        return self.add_rule(hint, f'"[" {ws} {inner}"]"')

    def _object(self, schema: Mapping[str, Any], hint: str, doc: Any, path: str) -> str:
        props = schema.get("properties")
        if props is None and "required" not in schema:
            if schema.get("additionalProperties", True) is True:
                return self.primitive("object")  # {"type": "object"}: any object
        extra = schema.get("additionalProperties", False)
        if extra is not False:
            raise self._fail(
                "Unsupported JSON schema keyword",
                path,
                "unsupported keyword 'additionalProperties' (only false is supported)",
            )
        props = props or {}
        required = schema.get("required", [])
        if not isinstance(props, Mapping) or not isinstance(required, list):
            raise self._fail(
                "Invalid JSON schema", path, "'properties' must be an object, 'required' an array"
            )
        missing = [r for r in required if r not in props]
        if missing:
            raise self._fail(
                "Invalid JSON schema", path, f"required {missing[0]!r} is not in properties"
            )
        ws = self.primitive("ws")
        pairs: List[Tuple[str, bool]] = []
        for key, sub in props.items():
            value = self._visit(sub, f"{hint}-{key}", doc, f"{path}.properties.{key}")
            pairs.append((f'{_json_literal(key)} {ws} ":" {ws} {value} {ws}', key in required))
        return self.add_rule(hint, f'"{{" {ws} {self._members(pairs, ws)}"}}"')

    @staticmethod
    def _members(pairs: List[Tuple[str, bool]], ws: str) -> str:
        """The properties in order, optional ones skippable, commas only between.

        ``first(i)`` is the text from property i on when nothing was written
        yet; every property after the first written one comes as ``"," kv``.
        """
        text = ""
        for i in range(len(pairs) - 1, -1, -1):
            kv, needed = pairs[i]
            rest = " ".join(
                f'"," {ws} {k}' if req else f'( "," {ws} {k} )?' for k, req in pairs[i + 1 :]
            )
            here = f"{kv} {rest}".strip()
            if needed:
                text = here
            elif text:
                text = f"( {here} | {text} )"
            else:
                text = f"( {here} )?"
        return f"{text} " if text else ""

    def _ref(self, ref: Any, doc: Any, path: str) -> str:
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise self._fail(
                "Unsupported JSON schema keyword",
                path,
                f"unsupported keyword '$ref' to {ref!r} (only local '#/...' pointers)",
            )
        key = (id(doc), ref)
        if key not in self._refs:
            target = doc
            for part in ref[2:].split("/") if ref != "#" else []:
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, Mapping) or part not in target:
                    raise self._fail("Invalid JSON schema", path, f"'$ref' {ref!r} not found")
                target = target[part]
            # Name the rule before compiling it, so a recursive schema refers to itself.
            name = self.reserve(ref.rsplit("/", 1)[-1] if ref != "#" else "root-ref")
            self._refs[key] = name
            body_rule = self._visit(target, f"{name}-body", doc, ref)
            self.rules[name] = body_rule
        return self._refs[key]


def schema_to_gbnf(schema: Mapping[str, Any], *, root: str = "root") -> str:
    """A GBNF grammar (start rule ``root``) for JSON values that validate against ``schema``.

    Raises:
        ConfigurationException: ``field="response_format"``; a keyword outside
            the supported subset (named with its JSON path in ``details``), or
            a malformed schema.
    """
    compiler = SchemaCompiler("response_format")
    top = compiler.reserve(root)
    compiler.rules[top] = compiler.compile(schema, f"{root}-value")
    return compiler.grammar()


def response_format_grammar(response_format: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The grammar of an OpenAI ``response_format`` (None: free text).

    Accepts ``{"type": "text"}``, ``{"type": "json_object"}`` (with an optional
    ``"schema"``, as llama-cpp-python does) and ``{"type": "json_schema",
    "json_schema": {"name": ..., "schema": {...}, "strict": ...}}``
    (``name`` and ``strict`` are not used; output always follows the schema).

    Raises:
        ConfigurationException: ``field="response_format"`` for a bad shape or schema.
    """
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise ConfigurationException(
            "Invalid response_format",
            f"expected an object such as {{'type': 'json_object'}}, "
            f"got {type(response_format).__name__}",
            field="response_format",
        )
    kind = response_format.get("type")
    schema: Any = None
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
    elif kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping):
            raise ConfigurationException(
                "Invalid response_format",
                "type 'json_schema' needs a 'json_schema' object with a 'schema'",
                field="response_format",
            )
        schema = spec.get("schema")
    else:
        raise ConfigurationException(
            "Invalid response_format",
            f"type must be 'text', 'json_object' or 'json_schema', got {kind!r}",
            field="response_format",
        )
    if schema is None:
        return JSON_OBJECT_GBNF
    if not isinstance(schema, Mapping):
        raise ConfigurationException(
            "Invalid response_format",
            f"'schema' must be a JSON object, got {type(schema).__name__}",
            field="response_format",
        )
    return schema_to_gbnf(schema)
