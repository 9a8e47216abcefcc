"""The JSON Schema files and the parsers agree: one table of documents, each fed to the schema
validator (formats asserted) and to the parser of its record format, with the same verdict.
Also: the committed schema files are the ones generated from the record model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import generate, json_text, records

SUB = "7d3c0a3e-2b7f-4f53-9a3c-5a2d6c1e8f00"
T = "2026-11-28T23:59:00.123456Z"


@dataclass(frozen=True)
class Case:
    name: str
    record: str  # schema file name: schemas/<record>.schema.json
    doc: bytes  # the record value as produced
    valid: bool  # the verdict of both, unless ``schema_says`` differs (then ``why``)
    schema_says: bool | None = None
    why: str = ""


def env(**members: Any) -> bytes:
    """An ingest envelope: ``event_type`` and ``payload`` unless overridden or set to ...;"""
    doc = {"event_type": "order.created", "payload": {"id": 1}} | members
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def attempt(**members: Any) -> bytes:
    doc = {
        "webhook_id": "w-1",
        "attempt_id": "a" * 32,
        "subscription_id": SUB,
        "event_type": "order.created",
        "target_url": "http://127.0.0.1:9/x",
        "attempt_number": 1,
        "started_at": T,
        "duration_ms": 12.5,
        "status_code": 500,
        "error": None,
        "response_excerpt": "oops",
        "outcome": "retrying",
        "next_attempt_at": T,
        "received_at": T,
    } | members
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def letter(**members: Any) -> bytes:
    webhook = {
        "webhook_id": "w-1",
        "subscription_id": SUB,
        "event_type": "order.created",
        "body": '{"id": 1}',
        "received_at": T,
        "metadata": {},
        "attempt": 5,
        "due_at": None,
    }
    doc = {
        "reason": "retries exhausted",
        "failed_at": T,
        "webhook_id": "w-1",
        "subscription_id": SUB,
        "record": webhook,
        "raw": None,
        "source": {"topic": "wm.retry.1h", "partition": 0, "offset": 7},
    } | members
    return json.dumps(doc).encode()


def subscription(**members: Any) -> bytes:
    doc = {
        "id": SUB,
        "target_url": "https://example.test/hook",
        "secret_key_encrypted": "gAAAAABnAbCd_-12==",
        "event_types": ["order.created"],
        "is_active": True,
        "created_at": T,
        "updated_at": T,
    } | members
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


CASES = [
    # ingest envelope: valid
    Case("minimal envelope", "ingest_record", env(), True),
    Case(
        "every field",
        "ingest_record",
        env(
            webhook_id="evt_1",
            subscription_id=SUB,
            received_at=T,
            metadata={"source": "x"},
            attempt=2,
            due_at=T,
        ),
        True,
    ),
    Case("attempt 1.0 is the integer 1", "ingest_record", env(attempt=1.0), True),
    Case("lower-case t and z", "ingest_record", env(received_at="2026-11-28t23:59:00z"), True),
    Case(
        "offset zone and fraction",
        "ingest_record",
        env(received_at="2026-11-28T23:59:00.5+05:30"),
        True,
    ),
    Case("subscription_id null: fan-out", "ingest_record", env(subscription_id=None), True),
    Case("upper-case UUID", "ingest_record", env(subscription_id=SUB.upper()), True),
    Case("inner spaces in event_type", "ingest_record", env(event_type="order created"), True),
    Case("attempt 1000", "ingest_record", env(attempt=1000), True),
    Case("webhook_id of 200 characters", "ingest_record", env(webhook_id="x" * 200), True),
    Case(
        "odd whitespace, huge numbers",
        "ingest_record",
        b' {\n"event_type" :"e" ,\t"payload":  [ 1e400 , 123456789012345678901234567890 ]\r} ',
        True,
    ),
    Case(
        "payload with a lone surrogate escape",
        "ingest_record",
        b'{"event_type": "e", "payload": "\\ud800"}',
        True,
    ),
    Case(
        "metadata with a lone surrogate escape",
        "ingest_record",
        b'{"event_type": "e", "payload": 1, "metadata": {"k": "\\udc00"}}',
        True,
    ),
    Case(
        "payload nested 1000 levels deep (beyond msgspec's limit)",
        "ingest_record",
        b'{"event_type": "e", "payload": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        True,
    ),
    Case(
        "payload nested 1100 levels deep",
        "ingest_record",
        b'{"event_type": "e", "payload": ' + b"[" * 1100 + b"]" * 1100 + b"}",
        False,
        schema_says=True,
        why="1024 levels is the pipeline's limit (json_text.MAX_DEPTH: "
        "orjson's); JSON Schema has no depth limit",
    ),
    # ingest envelope: invalid
    Case("due_at not a time", "ingest_record", env(due_at="not-a-time"), False),
    Case("UUID without dashes", "ingest_record", env(subscription_id=SUB.replace("-", "")), False),
    Case(
        "UUID with misplaced dashes",
        "ingest_record",
        env(subscription_id="7d3c0a3e2-b7f-4f53-9a3c-5a2d6c1e8f00"),
        False,
    ),
    Case("CR LF in event_type", "ingest_record", env(event_type="a\r\nX-Injected: yes"), False),
    Case("NUL in event_type", "ingest_record", env(event_type="a\u0000b"), False),
    Case("trailing newline in event_type", "ingest_record", env(event_type="a\n"), False),
    Case("non-ASCII event_type", "ingest_record", env(event_type="caf\u00e9"), False),
    Case("leading space in event_type", "ingest_record", env(event_type=" a"), False),
    Case("empty event_type", "ingest_record", env(event_type=""), False),
    Case("event_type of 201 characters", "ingest_record", env(event_type="e" * 201), False),
    Case("event_type a number", "ingest_record", env(event_type=5), False),
    Case("newline in webhook_id", "ingest_record", env(webhook_id="id\nx"), False),
    Case("DEL in webhook_id", "ingest_record", env(webhook_id="id\u007f"), False),
    Case("empty webhook_id", "ingest_record", env(webhook_id=""), False),
    Case("webhook_id of 201 characters", "ingest_record", env(webhook_id="x" * 201), False),
    Case("missing payload", "ingest_record", env(payload=...), False),
    Case("missing event_type", "ingest_record", env(event_type=...), False),
    Case("unknown field", "ingest_record", env(extra=1), False),
    Case("attempt 1.5", "ingest_record", env(attempt=1.5), False),
    Case("attempt -1", "ingest_record", env(attempt=-1), False),
    Case("attempt 1001", "ingest_record", env(attempt=1001), False),
    Case("attempt as a string", "ingest_record", env(attempt="1"), False),
    Case("attempt true", "ingest_record", env(attempt=True), False),
    Case("metadata a string", "ingest_record", env(metadata="x"), False),
    Case(
        "timestamp without a zone", "ingest_record", env(received_at="2026-11-28T23:59:00"), False
    ),
    Case("timestamp without seconds", "ingest_record", env(received_at="2026-11-28T23:59Z"), False),
    Case("February 30th", "ingest_record", env(received_at="2026-02-30T00:00:00Z"), False),
    Case("year 0", "ingest_record", env(received_at="0000-01-01T00:00:00Z"), False),
    Case(
        "February 29th of a leap year",
        "ingest_record",
        env(received_at="2024-02-29T12:00:00Z"),
        True,
    ),
    Case("space for T", "ingest_record", env(received_at="2026-11-28 23:59:00Z"), False),
    Case("basic ISO 8601", "ingest_record", env(received_at="20261128T235900Z"), False),
    Case("not an object", "ingest_record", b'[{"event_type": "e", "payload": 1}]', False),
    Case(
        "event_type named twice",
        "ingest_record",
        b'{"event_type": "a", "event_type": "b", "payload": 1}',
        False,
        schema_says=True,
        why="JSON Schema sees the decoded object, which keeps one of the two members; the "
        "parser refuses the ambiguity",
    ),
    Case(
        "timestamp with a trailing newline",
        "ingest_record",
        env(received_at="2026-11-28T23:59:00Z\n"),
        False,
    ),
    # attempt events
    Case("attempt event", "attempt_event", attempt(), True),
    Case("attempt event from before attempt ids", "attempt_event", attempt(attempt_id=...), True),
    Case(
        "attempt event, lower-case timestamp",
        "attempt_event",
        attempt(started_at="2026-11-28t23:59:00z"),
        True,
    ),
    Case("attempt event, unknown outcome", "attempt_event", attempt(outcome="maybe"), False),
    Case("attempt event, attempt_number 0", "attempt_event", attempt(attempt_number=0), False),
    Case("attempt event, missing received_at", "attempt_event", attempt(received_at=...), False),
    Case(
        "attempt event, bad next_attempt_at",
        "attempt_event",
        attempt(next_attempt_at="soon"),
        False,
    ),
    Case("attempt event, unknown field", "attempt_event", attempt(extra=True), False),
    # dead letters
    Case("dead letter", "dead_letter", letter(), True),
    Case(
        "dead letter of an unreadable record",
        "dead_letter",
        letter(
            webhook_id=None,
            subscription_id=None,
            record=None,
            raw="{not json",
            source={"topic": "wm.ingest", "partition": 1, "offset": 2, "headers": {"a": "b"}},
        ),
        True,
    ),
    Case("dead letter, failed_at not a time", "dead_letter", letter(failed_at="yesterday"), False),
    Case("dead letter, 31 April", "dead_letter", letter(failed_at="2026-04-31T10:00:00Z"), False),
    Case(
        "dead letter, 29 February 2023",
        "dead_letter",
        letter(failed_at="2023-02-29T10:00:00+01:00"),
        False,
    ),
    Case("dead letter, 31 December", "dead_letter", letter(failed_at="2026-12-31T23:59:59Z"), True),
    Case(
        "dead letter, header value not text",
        "dead_letter",
        letter(source={"headers": {"a": 1}}),
        False,
    ),
    # subscriptions
    Case("subscription", "subscription", subscription(), True),
    Case("subscription, empty event type", "subscription", subscription(event_types=[""]), False),
    Case(
        "subscription, secret not a Fernet token",
        "subscription",
        subscription(secret_key_encrypted="plain"),
        False,
    ),
    Case("subscription, id not a UUID", "subscription", subscription(id="sub-1"), False),
]


def schema_verdict(case: Case) -> bool:
    schema = json.loads(generate.path(case.record).read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return validator.is_valid(json.loads(case.doc))


def parser_verdict(case: Case) -> bool:
    try:
        if case.record == "ingest_record":
            records.parse_webhook(case.doc, [], "fallback", "2026-01-01T00:00:00Z")
        else:
            records.decoder(records.JSON_RECORDS[case.record]).decode(case.doc)
    except (records.RecordError, msgspec.ValidationError, msgspec.DecodeError):
        return False
    return True


def test_the_table_is_large_and_exceptions_are_few() -> None:
    assert len(CASES) >= 30
    assert len({case.name for case in CASES}) == len(CASES)
    exceptions = [case for case in CASES if case.schema_says is not None]
    assert len(exceptions) <= 2 and all(case.why for case in exceptions)
    assert sum(case.valid for case in CASES) >= 10 and sum(not c.valid for c in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_schema_and_parser_agree(case: Case) -> None:
    schema_expected = case.valid if case.schema_says is None else case.schema_says
    assert schema_verdict(case) is schema_expected
    assert parser_verdict(case) is case.valid


def test_the_format_checker_checks_formats() -> None:
    """The table's format cases mean something only when date-time and uuid are asserted."""
    checker = jsonschema.FormatChecker()
    assert not checker.conforms("not-a-time", "date-time")
    assert not checker.conforms(SUB.replace("-", ""), "uuid")


@pytest.mark.parametrize("name", sorted(records.JSON_RECORDS))
def test_committed_schema_file_is_the_generated_one(name: str) -> None:
    committed = generate.path(name).read_text()
    assert committed == generate.text(name), f"stale: run python -m schemas.generate ({name})"
    jsonschema.Draft202012Validator.check_schema(json.loads(committed))


def test_generate_check_reports_a_stale_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in records.JSON_RECORDS:
        (tmp_path / f"{name}.schema.json").write_text(generate.text(name))
    monkeypatch.setattr(generate, "HERE", tmp_path)
    assert generate.main(["--check"]) == 0
    (tmp_path / "dead_letter.schema.json").write_text("{}\n")
    assert generate.main(["--check"]) == 1


@pytest.mark.parametrize(
    "doc",
    [
        b'{"event_type":"e","payload":{"a" :  [1,\n 2 ]\t}}',
        b'{ "payload" :\r\n "x\\u0041"  , "event_type" : "e" }',
        b'{"payload":-0.0e+10,"event_type":"e"}',
    ],
)
def test_raw_payload_is_the_exact_member_text(doc: bytes) -> None:
    raw = msgspec.json.decode(doc, type=records.IngestRecord).payload
    assert bytes(raw) == json_text.members(doc)["payload"]
    assert records.parse_webhook(doc, [], "f", T).body == bytes(raw)


def test_attempt_one_point_zero_becomes_the_integer_one() -> None:
    record = records.parse_webhook(env(attempt=1.0), [], "f", T)
    assert record.attempt == 1 and isinstance(record.attempt, int)


def test_refusals_keep_their_reasons() -> None:
    reasons = {}
    for name, doc in [
        ("event_type", env(event_type="a\nb")),
        ("webhook_id", env(webhook_id="a\n")),
        ("payload", env(payload=...)),
        ("extra", env(extra=1)),
        ("twice", b'{"event_type": "a", "event_type": "b", "payload": 1}'),
    ]:
        with pytest.raises(records.RecordError) as caught:
            records.parse_webhook(doc, [], "f", T)
        reasons[name] = str(caught.value)
    assert reasons["event_type"].startswith("event_type must be printable")
    assert reasons["webhook_id"].startswith("webhook_id must be printable")
    assert reasons["payload"] == "missing field: payload"
    assert reasons["extra"] == "unknown field(s): extra"
    assert "more than once" in reasons["twice"]


def _samples() -> list[str]:
    chars = [chr(c) for c in range(0x00, 0xA1)] + ["\u00e9", "\u2028", "\ud800", "\U0001f600"]
    samples = ["", "a" * 200, "a" * 201, "order created", "a b c"]
    for c in chars:
        samples += [c, f"a{c}", f"{c}a", f"a{c}b"]
    return samples


@pytest.mark.parametrize("field", ["event_type", "webhook_id"])
def test_header_form_rules_equal_the_struct_constraints(field: str) -> None:
    """The header form's checks and the Structs' constraints (which the schema states) accept
    the same strings: msgspec decides one, the problem functions the other."""
    rule = records.EventType if field == "event_type" else records.WebhookId
    struct = msgspec.defstruct("Probe", [(field, rule)])
    problem = records.event_type_problem if field == "event_type" else records.webhook_id_problem
    for sample in _samples():
        try:
            msgspec.convert({field: sample}, type=struct)
            by_struct = True
        except msgspec.ValidationError:
            by_struct = False
        assert by_struct is (problem(sample) is None), repr(sample)


def test_uuid_and_time_rules_equal_the_format_checker() -> None:
    checker = jsonschema.FormatChecker()
    for text in [
        SUB,
        SUB.upper(),
        SUB.replace("-", ""),
        "{" + SUB + "}",
        "urn:uuid:" + SUB,
        SUB + "\n",
        SUB[:-1] + "g",
    ]:
        assert records._is_uuid(text) is checker.conforms(text, "uuid"), text
    for text in [
        "2026-11-28T23:59:00Z",
        "2026-11-28t23:59:00.5z",
        "2026-11-28T23:59:60Z",
        "2026-11-28T24:00:00Z",
        "2026-11-28T23:59:00+24:00",
        "2026-11-28T23:59:00-00:00",
        "2026-04-31T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-02-29T00:00:00Z",
        "2026-11-28T23:59:00",
        "2026-11-28",
        "2026-11-28T23:59:00.Z",
    ]:
        assert records._is_time(text) is checker.conforms(text, "date-time"), text


@given(parent=st.text(max_size=40), children=st.lists(st.text(max_size=40), max_size=5))
def test_derived_ids_are_derived_id_of_each_child(parent: str, children: list[str]) -> None:
    assert records.derived_ids(parent, children) == [
        records.derived_id(parent, c) for c in children
    ]
