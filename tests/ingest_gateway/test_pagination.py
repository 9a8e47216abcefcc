"""The one pagination codec of the HTTP API (``ingest_gateway.pagination``): the ``limit``
parameter and the opaque cursor both the subscription list and the status API use."""

from __future__ import annotations

import base64

import orjson
import pytest

from ingest_gateway import pagination
from ingest_gateway.errors import ApiError


def _raw_cursor(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "default", "expected"),
    [
        ({}, 50, 50),
        ({}, 20, 20),
        ({"limit": "1"}, 50, 1),
        ({"limit": "200"}, 20, 200),
        ({"limit": " 7 "}, 50, 7),
    ],
)
def test_limit_accepts_integers_in_range(
    query: dict[str, str], default: int, expected: int
) -> None:
    assert pagination.limit(query, default=default) == expected


@pytest.mark.parametrize("raw", ["0", "201", "-1", "ten", "", "1.5"])
def test_limit_refuses_others_with_one_error_body(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        pagination.limit({"limit": raw})
    assert caught.value.status == 400
    assert caught.value.body() == {
        "error": "validation_error",
        "field": "limit",
        "detail": "limit must be an integer from 1 to 200",
    }


def test_limit_maximum_is_a_parameter() -> None:
    assert pagination.limit({"limit": "10"}, maximum=10) == 10
    with pytest.raises(ApiError, match="from 1 to 10"):
        pagination.limit({"limit": "11"}, maximum=10)


@pytest.mark.parametrize(
    "position",
    [
        ("2026-01-01T00:00:00.123456+00:00", "d6c3a1c2-8f1e-4b9e-9a57-0f3b5c1f8e21"),
        ("", ""),
        ("ünïcode", "a/b+c=d"),
        ("x" * 300, "y"),
    ],
)
def test_cursor_round_trips_and_is_url_safe(position: tuple[str, str]) -> None:
    cursor = pagination.encode_cursor(position)
    assert pagination.decode_cursor(cursor) == position
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor


@pytest.mark.parametrize("raw", [None, ""])
def test_no_cursor_is_the_first_page(raw: str | None) -> None:
    assert pagination.decode_cursor(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "garbage!",
        "e30",
        "not-a-cursor",
        "%%%",
        _raw_cursor(["a"]),
        _raw_cursor(["a", "b", "c"]),
        _raw_cursor(["a", 1]),
        _raw_cursor({"a": "b", "c": "d"}),
        _raw_cursor("ab"),
        _raw_cursor(None),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_foreign_cursors_are_400(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        pagination.decode_cursor(raw)
    assert caught.value.status == 400
    assert caught.value.body() == {
        "error": "validation_error",
        "field": "cursor",
        "detail": pagination.BAD_CURSOR,
    }


def test_each_api_keeps_its_cursor_detail() -> None:
    with pytest.raises(ApiError) as caught:
        pagination.decode_cursor("e30", "cursor is not one this API returned")
    assert caught.value.detail == "cursor is not one this API returned"
