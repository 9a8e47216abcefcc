"""JSON as exact text: check that bytes are one JSON document, and cut a JSON object into the
exact bytes of its members' values.

The pipeline delivers the bytes it accepted, so JSON is checked, never re-serialised. Any
RFC 8259 document up to :data:`MAX_DEPTH` levels deep passes, including what a float or a
64-bit integer cannot hold (``123456789012345678901234567890``, ``1e400``), duplicate keys and
lone surrogate escapes. orjson checks the common case quickly; the standard library's parser
(numbers kept as text, NaN and Infinity refused) decides what orjson refuses.
"""

from __future__ import annotations

import json
import re
import sys
from json.decoder import scanstring  # type: ignore[attr-defined]  # exists; typeshed omits it
from typing import Any, NoReturn

import orjson

MAX_DEPTH = 1024  # orjson's own limit; deeper documents are refused
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# The standard library's parser recurses once per level: leave room for MAX_DEPTH levels.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 3 * MAX_DEPTH + 1000))


class JsonTextError(ValueError):
    """The bytes are not one JSON document."""


class NotAnObject(JsonTextError):
    """The bytes are one JSON document, but not the JSON object that is required."""


def _keep_text(text: str) -> str:
    return text


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_TEXT_NUMBERS = json.JSONDecoder(
    parse_int=_keep_text, parse_float=_keep_text, parse_constant=_refuse_constant, strict=True
)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonTextError(f"not UTF-8: {exc}") from None


def check(data: bytes) -> None:
    """Raise :class:`JsonTextError` unless ``data`` is one JSON document."""
    try:
        orjson.loads(data)
        return
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise JsonTextError(f"nested deeper than {MAX_DEPTH} levels") from None
        first = str(exc)
    text = _text(data)
    try:
        _TEXT_NUMBERS.decode(text)
    except RecursionError:
        raise JsonTextError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise JsonTextError(first) from None


def members(data: bytes) -> dict[str, bytes]:
    """The members of the JSON object ``data``: name -> the exact bytes of its value.

    Raises :class:`JsonTextError` when ``data`` is not one JSON object or names a member twice
    (which member counts would be ambiguous).
    """
    check(data)
    text = _text(data)
    idx = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("{", idx):
        raise NotAnObject("not a JSON object")
    found: dict[str, bytes] = {}
    idx = _WHITESPACE.match(text, idx + 1).end()  # type: ignore[union-attr]
    if text.startswith("}", idx):
        return found
    while True:
        name, idx = scanstring(text, idx + 1)  # idx is at the opening quote
        idx = _WHITESPACE.match(text, idx).end() + 1  # type: ignore[union-attr]  # past ':'
        start = _WHITESPACE.match(text, idx).end()  # type: ignore[union-attr]
        try:
            _, end = _TEXT_NUMBERS.raw_decode(text, start)
        except RecursionError:
            raise JsonTextError(f"nested deeper than {MAX_DEPTH} levels") from None
        if name in found:
            raise JsonTextError(f"member {name!r} appears more than once")
        found[name] = text[start:end].encode()
        idx = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith("}", idx):
            return found
        idx = _WHITESPACE.match(text, idx + 1).end()  # type: ignore[union-attr]  # past ','


def value(member: bytes) -> Any:
    """A member's value decoded (for small fields: names, ids, metadata)."""
    try:
        return orjson.loads(member)
    except orjson.JSONDecodeError:
        return _TEXT_NUMBERS.decode(member.decode())
