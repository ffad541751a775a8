"""Integer ranges as GBNF, for the ``minimum``/``maximum`` keywords (and their
exclusive forms) of an ``integer`` schema in :mod:`.json_schema`.

``integer_range_gbnf(lo, hi)`` is a GBNF expression matching exactly the
integers ``lo <= n <= hi`` as JSON writes them: no leading zeros, no ``-0``,
at most :data:`MAX_DIGITS` digits like the plain ``integer`` rule. ``None``
leaves a side open. It is built the way a regular expression for a numeric
range is written by hand: negatives and non-negatives apart, one alternative
per digit count, and within one digit count the prefix both ends share, then
the digits between them. Pure Python, no native library.
"""

from __future__ import annotations

import math
from typing import Any, List, Mapping, Optional, Tuple

__all__ = ["MAX_DIGITS", "LARGEST", "BOUND_KEYWORDS", "integer_bounds", "integer_range_gbnf"]

#: The most digits an integer may have (the ``integer`` rule of json_schema.py).
MAX_DIGITS = 16
#: The largest magnitude with :data:`MAX_DIGITS` digits.
LARGEST = 10**MAX_DIGITS - 1


#: The keywords that bound a number.
BOUND_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _number(schema: Mapping[str, Any], key: str) -> Optional[float]:
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key!r} must be a finite number, got {value!r}")
    return value


def integer_bounds(schema: Mapping[str, Any]) -> Tuple[Optional[int], Optional[int]]:
    """The smallest and largest integer ``schema``'s bound keywords allow
    (``None``: no bound on that side). ``exclusiveMinimum``/``exclusiveMaximum``
    are numbers (JSON Schema draft 6 and later) or, draft 4, flags on
    ``minimum``/``maximum``.

    Raises:
        ValueError: a bound is not a number, or a draft-4 flag has no bound.
    """
    sides = []
    for inclusive, exclusive, toward in (
        ("minimum", "exclusiveMinimum", 1),
        ("maximum", "exclusiveMaximum", -1),
    ):
        bound = _number(schema, inclusive)
        # the integer nearest the bound on its allowed side (the bound itself if whole)
        limit = None if bound is None else (math.ceil(bound) if toward > 0 else math.floor(bound))
        flag = schema.get(exclusive)
        if isinstance(flag, bool):
            if bound is None:
                raise ValueError(f"{exclusive!r}: {str(flag).lower()} needs {inclusive!r}")
            if flag and limit == bound:
                limit = limit + toward
        else:
            strict = _number(schema, exclusive)
            if strict is not None:
                beyond = (math.floor(strict) + 1) if toward > 0 else (math.ceil(strict) - 1)
                if limit is None:
                    limit = beyond
                else:
                    limit = max(limit, beyond) if toward > 0 else min(limit, beyond)
        sides.append(limit)
    return sides[0], sides[1]


def integer_range_gbnf(lo: Optional[int], hi: Optional[int]) -> str:
    """A GBNF expression for the integers from ``lo`` to ``hi`` (inclusive,
    ``None``: unbounded, within :data:`LARGEST` either way).

    Raises:
        ValueError: no integer of at most :data:`MAX_DIGITS` digits is in the range.
    """
    low = -LARGEST if lo is None else max(lo, -LARGEST)
    high = LARGEST if hi is None else min(hi, LARGEST)
    if low > high:
        raise ValueError(f"no integer of at most {MAX_DIGITS} digits is in [{lo}, {hi}]")
    alternatives: List[str] = []
    if low < 0:  # "-" and a magnitude from max(1, -high) up to -low ("-0" is not JSON's 0)
        alternatives.append('"-" ' + _group(_naturals(max(1, -high), -low)))
    if high >= 0:
        alternatives.append(_naturals(max(0, low), high))
    return " | ".join(alternatives)


def _group(expr: str) -> str:
    """``expr`` ready to be followed or preceded in a sequence."""
    return f"( {expr} )" if " | " in expr else expr


def _digit(first: str, last: str) -> str:
    return f"[{first}]" if first == last else f"[{first}-{last}]"


def _any_digits(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _naturals(low: int, high: int) -> str:
    """The integers ``0 <= low <= n <= high``, one alternative per digit count;
    digit counts taken whole (100..999) are merged into one repetition."""
    parts: List[str] = []
    full_from = 0  # first digit count of the run of whole counts being merged
    full_to = 0
    for digits in range(len(str(low)), len(str(high)) + 1):
        first = low if digits == len(str(low)) else 10 ** (digits - 1)
        last = high if digits == len(str(high)) else 10**digits - 1
        if digits >= 2 and first == 10 ** (digits - 1) and last == 10**digits - 1:
            full_from = full_from or digits
            full_to = digits
            continue
        if full_from:
            parts.append(_whole_counts(full_from, full_to))
            full_from = 0
        parts.append(_same_length(str(first), str(last)))
    if full_from:
        parts.append(_whole_counts(full_from, full_to))
    return " | ".join(parts)


def _whole_counts(shortest: int, longest: int) -> str:
    """Every integer with ``shortest`` to ``longest`` digits (``shortest >= 2``)."""
    if shortest == longest:
        return f"[1-9] {_any_digits(shortest - 1)}"
    return f"[1-9] [0-9]{{{shortest - 1},{longest - 1}}}"


def _same_length(low: str, high: str) -> str:
    """The digit strings from ``low`` to ``high``, both of the same length
    (inner positions may start with 0: they follow a leading digit)."""
    if low == high:
        return f'"{low}"'
    if len(low) == 1:
        return _digit(low, high)
    if low[0] == high[0]:
        return f'"{low[0]}" ' + _group(_same_length(low[1:], high[1:]))
    rest = len(low) - 1
    parts: List[str] = []
    first, last = low[0], high[0]
    if low[1:] != "0" * rest:  # the lowest leading digit covers only part of its span
        parts.append(f'"{low[0]}" ' + _group(_same_length(low[1:], "9" * rest)))
        first = chr(ord(first) + 1)
    tail = None
    if high[1:] != "9" * rest:  # so does the highest
        tail = f'"{high[0]}" ' + _group(_same_length("0" * rest, high[1:]))
        last = chr(ord(last) - 1)
    if first <= last:
        parts.append(f"{_digit(first, last)} {_any_digits(rest)}")
    if tail is not None:
        parts.append(tail)
    return " | ".join(parts)
