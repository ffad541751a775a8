"""Structured output (issue 17): JSON Schema -> GBNF, response_format, tool-call grammars, CLI.

Every grammar is checked by llama.cpp itself (generating with it must not fail)
and, with SmolLM2 at temperature 0, its output must parse with ``json.loads``
and validate with the ``jsonschema`` package. Schemas keep strings short
(``maxLength``) so a 135M model finishes (finish reason STOP, not LENGTH).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import jsonschema
import pytest

from edgeveda_ffi import (
    JSON_OBJECT_GBNF,
    ConfigurationException,
    FinishReason,
    GenerationException,
    response_format_grammar,
    schema_to_gbnf,
)
from edgeveda_ffi.engine.tools import parse_tool_call, tool_call_gbnf

REPO = Path(__file__).resolve().parent.parent

NAME = {"type": "string", "minLength": 1, "maxLength": 16}

# Schemas that the compiler must accept; each is also run through llama.cpp.
COMPILE_CASES: Dict[str, Dict[str, Any]] = {
    "empty": {},
    "string": {"type": "string"},
    "string-lengths": {"type": "string", "minLength": 2, "maxLength": 4},
    "string-min-only": {"type": "string", "minLength": 1},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "null": {"type": "null"},
    "type-list": {"type": ["string", "null"], "maxLength": 3},
    "const-string": {"const": 'say "hi"\n'},
    "const-object": {"const": {"a": [1, 2.5, None]}},
    "enum-scalars": {"enum": ["red", 1, 2.5, True, None, "é"]},
    "array-any": {"type": "array"},
    "array-empty": {"type": "array", "maxItems": 0},
    "array-at-most-one": {"type": "array", "items": {"type": "integer"}, "maxItems": 1},
    "array-exactly-one": {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 1,
        "maxItems": 1,
    },
    "array-at-least-two": {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
    "array-bounded": {"type": "array", "items": NAME, "minItems": 1, "maxItems": 3},
    "object-any": {"type": "object"},
    "object-closed-empty": {"type": "object", "additionalProperties": False},
    "object-all-optional": {"type": "object", "properties": {"a": NAME, "b": {"type": "integer"}}},
    "object-mixed": {
        "type": "object",
        "properties": {"a": NAME, "b": {"type": "integer"}, "c": NAME, "d": {"type": "null"}},
        "required": ["b", "d"],
        "additionalProperties": False,
    },
    "object-untyped": {"properties": {"x": {"type": "number"}}, "required": ["x"]},
    "object-odd-keys": {
        "type": "object",
        "properties": {'q"uo\\te': NAME, "ünï code": NAME, "": NAME},
        "required": ['q"uo\\te'],
    },
    "nested": {
        "type": "object",
        "properties": {"inner": {"type": "object", "properties": {"deep": {"type": "array"}}}},
    },
    "anyOf": {"anyOf": [{"type": "integer"}, NAME, {"type": "object", "properties": {}}]},
    "defs": {
        "$defs": {"name": NAME, "string": {"type": "integer"}},
        "type": "object",
        "properties": {"who": {"$ref": "#/$defs/name"}, "n": {"$ref": "#/$defs/string"}},
        "required": ["who", "n"],
    },
    "definitions": {"definitions": {"x": {"type": "boolean"}}, "$ref": "#/definitions/x"},
    "recursive": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            }
        },
        "$ref": "#/$defs/node",
    },
    "root-ref": {
        "type": "object",
        "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
    },
    "annotations": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "x",
        "title": "t",
        "description": "d",
        "default": 1,
        "examples": [1],
        "$comment": "c",
        "type": "integer",
    },
}


@pytest.mark.parametrize("case", sorted(COMPILE_CASES))
def test_grammar_compiles_in_llama_cpp(case: str, tiny_engine: Any) -> None:
    grammar = schema_to_gbnf(COMPILE_CASES[case])
    assert grammar.startswith("root ::= ")
    # llama.cpp parses the grammar before sampling; a bad grammar fails here.
    tiny_engine.generate("x", grammar=grammar, max_tokens=4, temperature=0)


FUZZ_CASES = ["object-mixed", "object-all-optional", "object-odd-keys", "array-bounded"]
FUZZ_CASES += [
    "array-at-least-two",
    "recursive",
    "anyOf",
    "type-list",
    "enum-scalars",
    "const-string",
]


@pytest.mark.parametrize("case", FUZZ_CASES)
def test_random_model_output_validates(case: str, tiny_varied_engine: Any) -> None:
    # The tiny random llama at temperature 1 wanders over everything the grammar
    # allows (optional properties left out or not, array lengths, branches): every
    # finished output must still validate.
    schema = COMPILE_CASES[case]
    grammar = schema_to_gbnf(schema)
    for seed in range(3):
        result = tiny_varied_engine.generate(
            "{", grammar=grammar, temperature=1.0, seed=seed, max_tokens=48
        )
        if result.finish_reason == FinishReason.STOP:
            jsonschema.validate(json.loads(result.text), schema)


def test_json_object_grammar_compiles(tiny_engine: Any) -> None:
    tiny_engine.generate("x", grammar=JSON_OBJECT_GBNF, max_tokens=4, temperature=0)
    assert schema_to_gbnf({"type": "integer"}, root="start").startswith("start ::= ")


# ---------------------------------------------------------------------------- generation

PERSON = {
    "type": "object",
    "properties": {"name": NAME, "age": {"type": "integer"}, "city": NAME},
    "required": ["name", "age"],
    "additionalProperties": False,
}
GENERATE_CASES: List[Any] = [
    ("Alice is 30 and lives in Paris. Describe her as JSON.", PERSON),
    (
        "What color is the sky? Answer in JSON.",
        {
            "type": "object",
            "properties": {"color": {"enum": ["red", "green", "blue"]}},
            "required": ["color"],
        },
    ),
    (
        "Bob (age 40) works at Acme in Berlin. Give JSON.",
        {
            "type": "object",
            "properties": {
                "person": {
                    "type": "object",
                    "properties": {"name": NAME, "age": {"type": "integer"}},
                    "required": ["name", "age"],
                },
                "company": {
                    "type": "object",
                    "properties": {"name": NAME, "city": NAME},
                    "required": ["name"],
                },
            },
            "required": ["person", "company"],
        },
    ),
    (
        "List two or three fruits as JSON.",
        {
            "type": "object",
            "properties": {
                "fruits": {"type": "array", "items": NAME, "minItems": 2, "maxItems": 3}
            },
            "required": ["fruits"],
        },
    ),
    (
        "Give the answer to 2 + 2 as JSON.",
        {
            "type": "object",
            "properties": {"answer": {"anyOf": [{"type": "integer"}, NAME]}},
            "required": ["answer"],
        },
    ),
    (
        "A line goes from (0, 0) to (3, 4). Give it as JSON.",
        {
            "$defs": {
                "point": {
                    "type": "object",
                    "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                    "required": ["x", "y"],
                }
            },
            "type": "object",
            "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
            "required": ["start", "end"],
        },
    ),
    (
        "Is water wet? Give JSON with a flag, a score, a count and a note.",
        {
            "type": "object",
            "properties": {
                "flag": {"type": "boolean"},
                "score": {"type": "number"},
                "count": {"type": "integer"},
                "note": {"type": "null"},
                "maybe": {"type": ["string", "null"], "maxLength": 8},
            },
            "required": ["flag", "score", "count", "note", "maybe"],
        },
    ),
    ("Pick a number.", {"type": "array", "items": {"type": "integer"}, "maxItems": 2}),
]


@pytest.mark.smollm2
@pytest.mark.parametrize("prompt,schema", GENERATE_CASES, ids=lambda v: str(v)[:24])
def test_generated_json_validates(prompt: str, schema: Dict[str, Any], smollm2_engine: Any) -> None:
    result = smollm2_engine.generate(
        prompt, grammar=schema_to_gbnf(schema), temperature=0, max_tokens=160
    )
    assert result.finish_reason == FinishReason.STOP, result.text
    assert result.text == result.text.strip()  # the value ends the output
    jsonschema.validate(json.loads(result.text), schema)


@pytest.mark.smollm2
def test_response_format_shapes(smollm2_engine: Any) -> None:
    assert response_format_grammar({"type": "text"}) is None
    assert response_format_grammar(None) is None
    assert response_format_grammar({"type": "json_object"}) == JSON_OBJECT_GBNF
    rf = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    assert response_format_grammar(rf) == schema_to_gbnf(PERSON)
    assert response_format_grammar({"type": "json_object", "schema": PERSON}) == schema_to_gbnf(
        PERSON
    )
    result = smollm2_engine.generate(
        "Alice is 30. JSON please.",
        grammar=response_format_grammar({"type": "json_object"}),
        temperature=0,
        max_tokens=120,
    )
    if result.finish_reason == FinishReason.STOP:
        assert isinstance(json.loads(result.text), dict)


@pytest.mark.parametrize(
    "bad",
    [
        "json_object",
        {},
        {"type": "xml"},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": "x"},
        {"type": "json_schema", "json_schema": {"schema": [1]}},
    ],
)
def test_bad_response_format(bad: Any) -> None:
    with pytest.raises(ConfigurationException) as info:
        response_format_grammar(bad)
    assert info.value.field == "response_format"


# ---------------------------------------------------------------------------- refused keywords

UNSUPPORTED = [
    ("pattern", {"type": "string", "pattern": "^a"}),
    ("format", {"type": "string", "format": "date"}),
    ("oneOf", {"oneOf": [{"type": "string"}, {"type": "integer"}]}),
    ("allOf", {"allOf": [{"type": "string"}]}),
    ("not", {"not": {"type": "string"}}),
    ("if", {"if": {"type": "string"}, "then": {"maxLength": 2}}),
    ("patternProperties", {"type": "object", "patternProperties": {"^a": {}}}),
    ("minimum", {"type": "number", "minimum": 0}),
    ("maximum", {"type": "number", "maximum": 9}),
    ("exclusiveMinimum", {"type": "number", "exclusiveMinimum": 0}),
    ("multipleOf", {"type": "integer", "multipleOf": 2}),
    ("uniqueItems", {"type": "array", "uniqueItems": True}),
    ("prefixItems", {"type": "array", "prefixItems": [{}]}),
    ("contains", {"type": "array", "contains": {"type": "integer"}}),
    ("minProperties", {"type": "object", "minProperties": 1}),
    ("propertyNames", {"type": "object", "propertyNames": {"maxLength": 3}}),
    ("dependentRequired", {"type": "object", "dependentRequired": {"a": ["b"]}}),
    (
        "additionalProperties",
        {"type": "object", "properties": {"a": {}}, "additionalProperties": True},
    ),
    ("additionalProperties", {"type": "object", "additionalProperties": {"type": "string"}}),
    ("items", {"type": "array", "items": [{"type": "string"}]}),
    ("$ref", {"$ref": "https://example.com/schema.json"}),
    ("maxLength", {"type": "string", "maxLength": 100000}),
    ("type", {"$defs": {"a": {}}, "$ref": "#/$defs/a", "type": "object"}),
    ("type", {"anyOf": [{"type": "string"}], "type": "string"}),
]


@pytest.mark.parametrize("keyword,schema", UNSUPPORTED, ids=[k for k, _ in UNSUPPORTED])
def test_unsupported_keyword_is_named(keyword: str, schema: Dict[str, Any]) -> None:
    nested = {"type": "object", "properties": {"field": schema}, "required": ["field"]}
    with pytest.raises(ConfigurationException) as info:
        schema_to_gbnf(nested)
    err = info.value
    assert err.field == "response_format"
    assert f"'{keyword}'" in (err.details or ""), err.details
    assert "$.properties.field" in (err.details or ""), err.details
    assert isinstance(err, ValueError)


def test_unsupported_keyword_message() -> None:
    with pytest.raises(ConfigurationException, match="Unsupported JSON schema keyword") as info:
        response_format_grammar(
            {"type": "json_schema", "json_schema": {"schema": {"type": "string", "pattern": "x"}}}
        )
    assert info.value.details == "unsupported keyword 'pattern' at $"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "strange"},
        {"type": []},
        {"enum": []},
        {"anyOf": "x"},
        {"type": "object", "properties": {"a": {}}, "required": ["b"]},
        {"type": "string", "minLength": -1},
        {"type": "array", "minItems": 3, "maxItems": 2},
        {"$ref": "#/$defs/missing"},
        {"properties": {"a": 5}},
    ],
)
def test_invalid_schema(schema: Dict[str, Any]) -> None:
    with pytest.raises(ConfigurationException) as info:
        schema_to_gbnf(schema)
    assert info.value.field == "response_format"


# ---------------------------------------------------------------------------- tool calls

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": NAME, "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    },
    {"type": "function", "function": {"name": "now"}},
]


def _params(name: str) -> Dict[str, Any]:
    for tool in TOOLS:
        if tool["function"]["name"] == name:
            return tool["function"].get("parameters", {"type": "object", "properties": {}})
    raise AssertionError(name)


@pytest.mark.smollm2
@pytest.mark.parametrize(
    "prompt,choice,expected",
    [
        (
            "What is the weather in Paris?",
            {"type": "function", "function": {"name": "get_weather"}},
            "get_weather",
        ),
        ("What is 2 plus 3?", {"type": "function", "function": {"name": "add"}}, "add"),
        ("What time is it?", {"type": "function", "function": {"name": "now"}}, "now"),
        ("What is the weather in Rome?", "required", None),
    ],
)
def test_tool_call_validates(prompt: str, choice: Any, expected: Any, smollm2_engine: Any) -> None:
    grammar = tool_call_gbnf(TOOLS, choice)
    assert grammar is not None
    result = smollm2_engine.generate(prompt, grammar=grammar, temperature=0, max_tokens=160)
    assert result.finish_reason == FinishReason.STOP, result.text
    name, arguments = parse_tool_call(result.text)
    if expected is not None:
        assert name == expected
    jsonschema.validate(json.loads(arguments), _params(name))


def test_tool_choice_without_grammar() -> None:
    assert tool_call_gbnf(TOOLS, "none") is None
    assert tool_call_gbnf(TOOLS, "auto") is None
    assert tool_call_gbnf(TOOLS, None) is None


@pytest.mark.parametrize(
    "tools,choice,field",
    [
        (TOOLS, {"type": "function", "function": {"name": "nope"}}, "tool_choice"),
        (TOOLS, {"type": "function"}, "tool_choice"),
        (TOOLS, "always", "tool_choice"),
        ([], "required", "tool_choice"),
        ([{"type": "retrieval"}], "required", "tools"),
        ([{"type": "function", "function": {"name": ""}}], "required", "tools"),
        ([{"type": "function", "function": {"name": "x", "parameters": 3}}], "required", "tools"),
        (TOOLS + [TOOLS[0]], "required", "tools"),
        (
            [
                {
                    "type": "function",
                    "function": {"name": "x", "parameters": {"type": "string", "format": "uri"}},
                }
            ],
            "required",
            "tools",
        ),
    ],
)
def test_bad_tools(tools: Any, choice: Any, field: str) -> None:
    with pytest.raises(ConfigurationException) as info:
        tool_call_gbnf(tools, choice)
    assert info.value.field == field


def test_parameters_keyword_error_names_the_tool() -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "x", "parameters": {"type": "string", "format": "uri"}},
        }
    ]
    with pytest.raises(ConfigurationException) as info:
        tool_call_gbnf(tools, "required")
    assert info.value.details == "unsupported keyword 'format' at tools[0].function.parameters"


def test_parse_tool_call() -> None:
    assert parse_tool_call('{"name": "add", "arguments": {"a": 1}}\n') == ("add", '{"a": 1}')
    for bad in ('{"name": "add", "arguments": {"a": 1', '{"name": "add"}', "[1]"):
        with pytest.raises(GenerationException):
            parse_tool_call(bad)


# ---------------------------------------------------------------------------- CLI


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("EDGEVEDA_MODEL", None)
    env["EDGEVEDA_MODELS_DIR"] = str(tmp_path / "models")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "edgeveda_ffi.cli", *args],
        input="",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=str(tmp_path),
    )


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgeveda: error: "), proc.stderr
    return lines[0]


@pytest.mark.smollm2
def test_cli_json_schema(tmp_path: Path, smollm2_path: Path) -> None:
    schema_file = tmp_path / "person.json"
    schema_file.write_text(json.dumps(PERSON))
    base = ("generate", "-m", str(smollm2_path), "--threads", "1", "-t", "0", "-n", "120")
    p = _cli(
        tmp_path,
        *base,
        "--json-schema",
        str(schema_file),
        "--format",
        "json",
        "Alice is 30. JSON please.",
    )
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["finish_reason"] == "stop", result
    jsonschema.validate(json.loads(result["text"]), PERSON)

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"type": "object", "properties": {"code": {"type": "string", "pattern": "^a"}}})
    )
    line = _error_line(_cli(tmp_path, *base, "--json-schema", str(bad), "hi"))
    assert "--json-schema" in line and "'pattern'" in line and "$.properties.code" in line

    line = _error_line(_cli(tmp_path, *base, "--json-schema", str(schema_file), "--json", "hi"))
    assert "--json and --json-schema" in line
    grammar = tmp_path / "g.gbnf"
    grammar.write_text('root ::= "x"\n')
    line = _error_line(
        _cli(tmp_path, *base, "--json-schema", str(schema_file), "--grammar", str(grammar), "hi")
    )
    assert "--grammar and --json-schema" in line
    not_json = tmp_path / "not.json"
    not_json.write_text("{")
    assert "not JSON" in _error_line(_cli(tmp_path, "chat", "--json-schema", str(not_json)))
