"""Integer bounds in JSON schemas (``minimum``, ``maximum``, ``exclusiveMinimum``,
``exclusiveMaximum``): the range grammar matches exactly the integers in range,
llama.cpp accepts it, and generated output validates with ``jsonschema``.

The exactness check translates the range expression (digit literals, digit
classes, repetitions, groups and alternatives only) into a Python regular
expression and tries every integer of a window around each bound, plus the
spellings JSON does not use for an integer ("-0", leading zeros).
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional

import jsonschema
import pytest

from edgeveda_ffi import ConfigurationException, FinishReason, schema_to_gbnf
from edgeveda_ffi.engine.json_schema_ranges import (
    LARGEST,
    integer_bounds,
    integer_range_gbnf,
)


def _regex(expr: str) -> re.Pattern[str]:
    parts: List[str] = []
    for tok in re.findall(r'"[^"]*"|\[[^\]]*\]|\{\d+(?:,\d*)?\}|[()|]|\S+', expr):
        if tok.startswith('"'):
            assert re.fullmatch(r'"[0-9-]+"', tok), tok
            parts.append(re.escape(tok[1:-1]))
        elif tok[0] in "[{" or tok in "|)":
            parts.append(tok)
        elif tok == "(":
            parts.append("(?:")
        else:
            raise AssertionError(f"unexpected token {tok!r} in {expr}")
    return re.compile("".join(parts))


EDGES = [0, 1, 9, 10, 99, 100, 999, 1000, 10**5, 10**15, LARGEST]
POINTS = sorted({s * (e + d) for e in EDGES for d in (-1, 0, 1) for s in (1, -1)})
BOUNDS: List[Optional[int]] = [None, 0, 1, -1, 7, -7, 9, 10, 19, 20, 99, 100, 101, 199]
BOUNDS += [255, 999, 1000, 1234, -123, -999, -1000, 10**15, -(10**15), LARGEST, 48213, -90817]


@pytest.mark.parametrize("lo", BOUNDS, ids=str)
def test_range_matches_exactly_the_integers_in_range(lo: Optional[int]) -> None:
    for hi in BOUNDS:
        if lo is not None and hi is not None and lo > hi:
            continue
        expr = integer_range_gbnf(lo, hi)
        rx = _regex(expr)
        low = -LARGEST if lo is None else lo
        high = LARGEST if hi is None else hi
        window = set(range(-1100, 1100)) | set(POINTS)
        for bound in (lo, hi):
            if bound is not None:
                window |= {bound + d for d in range(-3, 4)}
        for n in sorted(window):
            expected = low <= n <= high and abs(n) <= LARGEST
            assert bool(rx.fullmatch(str(n))) == expected, (lo, hi, n, expr)
        for spelling in ("-0", "00", "007", "-01", "+1", "1.0", "1e2", ""):
            assert not rx.fullmatch(spelling), (lo, hi, spelling, expr)


def test_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="no integer"):
        integer_range_gbnf(5, 4)
    with pytest.raises(ValueError, match="no integer"):
        integer_range_gbnf(LARGEST + 1, None)


@pytest.mark.parametrize(
    "schema,expected",
    [
        ({"minimum": 0}, (0, None)),
        ({"maximum": -3}, (None, -3)),
        ({"minimum": 0.5, "maximum": 9.9}, (1, 9)),
        ({"minimum": -2.5}, (-2, None)),
        ({"exclusiveMinimum": 0, "exclusiveMaximum": 10}, (1, 9)),
        ({"exclusiveMinimum": 2.5, "minimum": 1}, (3, None)),
        ({"exclusiveMaximum": -2.5}, (None, -3)),
        ({"minimum": 3, "exclusiveMinimum": 3, "maximum": 9, "exclusiveMaximum": 12}, (4, 9)),
        # draft 4: the exclusive keywords are flags on minimum/maximum
        ({"minimum": 3, "exclusiveMinimum": True, "maximum": 7, "exclusiveMaximum": True}, (4, 6)),
        ({"minimum": 3, "exclusiveMinimum": False}, (3, None)),
        ({"minimum": 5.5, "exclusiveMinimum": True}, (6, None)),
    ],
)
def test_integer_bounds(schema: Dict[str, Any], expected: Any) -> None:
    assert integer_bounds(schema) == expected
    # and the grammar's range is what jsonschema says, at the edges
    lo, hi = expected
    rx = _regex(integer_range_gbnf(lo, hi))
    draft4 = isinstance(schema.get("exclusiveMinimum"), bool)
    validator_class = jsonschema.Draft4Validator if draft4 else jsonschema.Draft202012Validator
    validator = validator_class({"type": "integer", **schema})
    for n in {x + d for x in (lo, hi) if x is not None for d in (-2, -1, 0, 1, 2)}:
        assert bool(rx.fullmatch(str(n))) == validator.is_valid(n), (schema, n)


BAD = [
    ({"type": "integer", "minimum": "1"}, "Invalid JSON schema", "'minimum' must be a finite"),
    ({"type": "integer", "maximum": True}, "Invalid JSON schema", "'maximum' must be a finite"),
    ({"type": "integer", "exclusiveMinimum": True}, "Invalid JSON schema", "needs 'minimum'"),
    ({"type": "integer", "minimum": 5, "maximum": 4}, "Invalid JSON schema", "no integer"),
    ({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}, "Invalid", "no integer"),
    ({"type": "number", "minimum": 0}, "Unsupported JSON schema keyword", "'minimum' on a number"),
    ({"type": ["number", "null"], "maximum": 1}, "Unsupported", "'maximum' on a number"),
    ({"exclusiveMaximum": 1}, "Unsupported JSON schema keyword", "'exclusiveMaximum' on a number"),
    ({"$ref": "#/$defs/a", "minimum": 1, "$defs": {"a": {}}}, "Unsupported", "next to '$ref'"),
]


@pytest.mark.parametrize("schema,message,details", BAD, ids=lambda v: str(v)[:40])
def test_bad_bounds_are_named(schema: Dict[str, Any], message: str, details: str) -> None:
    nested = {"type": "object", "properties": {"n": schema}, "required": ["n"]}
    with pytest.raises(ConfigurationException, match=message) as info:
        schema_to_gbnf(nested)
    assert details in (info.value.details or ""), info.value.details
    assert "$.properties.n" in (info.value.details or "")
    assert info.value.field == "response_format"


RANGED: Dict[str, Dict[str, Any]] = {
    "small": {"type": "integer", "minimum": 1, "maximum": 5},
    "negative": {"type": "integer", "minimum": -250, "maximum": -40},
    "across-zero": {"type": "integer", "exclusiveMinimum": -13, "exclusiveMaximum": 1200},
    "open-above": {"type": "integer", "minimum": 1000},
    "open-below": {"type": "integer", "maximum": -7},
    "in-object": {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "year": {"type": ["integer", "null"], "minimum": 1900, "maximum": 2100},
            "stars": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 5}},
        },
        "required": ["age", "year", "stars"],
    },
}


@pytest.mark.parametrize("case", sorted(RANGED))
def test_ranged_grammar_in_llama_cpp(case: str, tiny_varied_engine: Any) -> None:
    # llama.cpp parses the grammar (a bad one fails the call); the tiny random
    # llama at temperature 1 wanders over the values it allows: each finished
    # output must validate.
    schema = RANGED[case]
    grammar = schema_to_gbnf(schema)
    finished = 0
    for seed in range(4):
        result = tiny_varied_engine.generate(
            "{", grammar=grammar, temperature=1.0, seed=seed, max_tokens=64
        )
        if result.finish_reason == FinishReason.STOP:
            finished += 1
            jsonschema.validate(json.loads(result.text), schema)
    if case != "in-object":  # a bare integer always ends within 64 tokens
        assert finished == 4


@pytest.mark.smollm2
def test_bounds_hold_against_the_prompt(smollm2_engine: Any) -> None:
    # The prompt states values outside the bounds; the output still validates.
    schema = {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "year": {"type": "integer", "minimum": 1900, "exclusiveMaximum": 2000},
        },
        "required": ["age", "year"],
        "additionalProperties": False,
    }
    result = smollm2_engine.generate(
        "Bob is 430 years old and was born in the year 2024. As JSON:",
        grammar=schema_to_gbnf(schema),
        temperature=0,
        max_tokens=60,
    )
    assert result.finish_reason == FinishReason.STOP, result.text
    value = json.loads(result.text)
    jsonschema.validate(value, schema)
    assert 0 <= value["age"] <= 120 and 1900 <= value["year"] < 2000


@pytest.mark.smollm2
def test_pydantic_field_bounds(smollm2_engine: Any) -> None:
    # pydantic writes ge/le/gt/lt as these keywords; its own validator checks the output
    pydantic = pytest.importorskip("pydantic")

    class Review(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        stars: int = pydantic.Field(ge=1, le=5)
        votes: int = pydantic.Field(gt=0)
        year: Optional[int] = pydantic.Field(default=None, ge=1900, lt=2100)

    result = smollm2_engine.generate(
        "A review: ten stars, -3 votes, written in 1850. As JSON:",
        grammar=schema_to_gbnf(Review.model_json_schema()),
        temperature=0,
        max_tokens=60,
    )
    assert result.finish_reason == FinishReason.STOP, result.text
    review = Review.model_validate_json(result.text)
    assert 1 <= review.stars <= 5 and review.votes > 0
