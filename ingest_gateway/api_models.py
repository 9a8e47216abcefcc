"""The HTTP API's request and response bodies, declared once as msgspec Structs: the OpenAPI
document's ``components/schemas`` are generated from them (:mod:`ingest_gateway.openapi`).

The field rules come from the constants the handlers validate with (:mod:`ingest_gateway.
validation`, :mod:`ingest_gateway.pagination`, :mod:`schemas.records`); the handlers keep their
own checks, whose error messages name the field at fault.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ingest_gateway.idempotency import EVENT_ID_PATTERN
from ingest_gateway.pagination import MAX_LIMIT
from ingest_gateway.validation import MAX_RATE_LIMIT, MAX_URL_LENGTH
from schemas.records import EventType, Status, Timestamp, Uuid

# --- field types ------------------------------------------------------------------------------

TargetUrl = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        extra_json_schema={"format": "uri"},
        description="Absolute http(s) URI with a host, ASCII only (an IRI is refused: "
        "percent-encode, punycode the host); an IPv4 host only as a dotted quad.",
    ),
]
SecretKey = Annotated[
    str,
    Meta(
        min_length=1,
        description="Signing secret. Omitted on create: a new whsec_ secret; omitted on PUT: "
        "the current secret is kept.",
    ),
]
EventTypes = Annotated[
    list[EventType], Meta(description="Event types delivered; empty: every type.")
]
IsActive = Annotated[
    bool,
    Meta(description="Inactive subscriptions refuse ingest (409) and get no fan-out events."),
]
RateLimit = Annotated[
    Annotated[float, Meta(gt=0, le=MAX_RATE_LIMIT)] | None,
    Meta(
        description="Most deliveries per second to the endpoint, held across every agent; "
        "deliveries over it wait (they are not attempts). Null or omitted: no limit.",
    ),
]
Ordering = Annotated[
    Literal["none", "fifo"],
    Meta(
        description='"fifo": webhooks with the same ordering key reach the endpoint one at a '
        'time, in the order they were accepted (docs/ordering.md); "none" (default): no order.',
    ),
]
OnFailure = Annotated[
    Literal["skip", "halt"],
    Meta(
        description='FIFO only: when a webhook ends FAILED, "skip" (default) goes on with the '
        'next one of its key; "halt" stops the key until POST /api/webhooks/{id}/skip/ or '
        "/resume/.",
    ),
]
DisabledReason = Annotated[
    str | None,
    Meta(
        description="Why a delivery agent disabled the subscription (410 Gone, or only "
        "failures for WM_AUTO_DISABLE_AFTER); null unless auto-disabled. PATCH "
        '{"is_active": true} re-enables and clears it.'
    ),
]
DisabledAt = Annotated[
    Timestamp | None, Meta(description="When it was auto-disabled; null unless auto-disabled.")
]
PreviousSecretExpiresAt = Annotated[
    Timestamp | None,
    Meta(
        description="After a secret rotation: until when deliveries also carry the previous "
        "secret's signature; null when there is none."
    ),
]
StatusName = Annotated[str, Meta(extra_json_schema={"enum": [s.value for s in Status]})]
NextCursor = Annotated[
    str | None, Meta(description="Cursor of the next page; null on the last page.")
]
Accepted = Literal["accepted"]
AnyJson = Annotated[Any, Meta(description="Any JSON value.")]
# Path and query parameters.
UuidText = Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
DateTimeText = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
OrderingKeyText = Annotated[str, Meta(min_length=1, max_length=200)]


def page_size(default: int) -> Any:
    """The ``limit`` query parameter's type: 1..MAX_LIMIT, ``default`` when absent."""
    return Annotated[int, Meta(ge=1, le=MAX_LIMIT, extra_json_schema={"default": default})]


# --- bodies -----------------------------------------------------------------------------------


class Error(msgspec.Struct):
    """Every error answer: a code, a human detail, the input field at fault when one is."""

    error: Annotated[
        str,
        Meta(
            description="Machine-readable code, e.g. validation_error, not_found, unauthorized, "
            "invalid_signature, signature_required, subscription_inactive, payload_too_large, "
            "kafka_unavailable, not_ready, method_not_allowed, internal_error."
        ),
    ]
    detail: str
    field: Annotated[str, Meta(description="The input field at fault.")] | UnsetType = UNSET
    allowed: (
        Annotated[list[str], Meta(description="Accepted event types (event_type not accepted).")]
        | UnsetType
    ) = UNSET


class SubscriptionCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new subscription (POST), or every writable field of an existing one (PUT)."""

    target_url: TargetUrl
    secret_key: SecretKey | UnsetType = UNSET
    event_types: EventTypes | UnsetType = UNSET
    is_active: IsActive | UnsetType = UNSET
    rate_limit: RateLimit | UnsetType = UNSET
    ordering: Ordering | UnsetType = UNSET
    on_failure: OnFailure | UnsetType = UNSET


class SubscriptionPatch(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change (PATCH)."""

    target_url: TargetUrl | UnsetType = UNSET
    secret_key: SecretKey | UnsetType = UNSET
    event_types: EventTypes | UnsetType = UNSET
    is_active: IsActive | UnsetType = UNSET
    rate_limit: RateLimit | UnsetType = UNSET
    ordering: Ordering | UnsetType = UNSET
    on_failure: OnFailure | UnsetType = UNSET


class Circuit(msgspec.Struct):
    """The subscription's circuit breaker, as the delivery agent that owns it last published
    it (closed, since null: it never opened)."""

    state: Annotated[
        Literal["closed", "open", "half_open"],
        Meta(
            description="closed: deliveries go; open: they wait (not attempts) for the "
            "cool-down (WM_BREAKER_COOLDOWN); half_open: one probe delivery goes, its success "
            "closes the breaker, its failure opens it again."
        ),
    ]
    since: Annotated[Timestamp | None, Meta(description="When it entered that state.")]


class Subscription(msgspec.Struct):
    """A subscription, its signing secret in plain text."""

    id: Uuid
    target_url: TargetUrl
    secret_key: SecretKey
    event_types: EventTypes
    is_active: IsActive
    created_at: Timestamp
    updated_at: Timestamp
    rate_limit: RateLimit
    disabled_reason: DisabledReason
    disabled_at: DisabledAt
    ordering: Ordering
    on_failure: OnFailure
    circuit: Circuit
    previous_secret_expires_at: PreviousSecretExpiresAt = None


class FifoCommand(msgspec.Struct):
    """An operator's command to a FIFO key's head, written to the parked topic."""

    id: Annotated[str, Meta(description="Webhook id.")]
    command: Literal["skip", "resume"]
    status: Literal["accepted"]


class SubscriptionList(msgspec.Struct):
    """A page of subscriptions."""

    items: list[Subscription]
    next_cursor: NextCursor


class IngestAccepted(msgspec.Struct):
    """A webhook Kafka acknowledged."""

    id: Annotated[Uuid, Meta(description="Webhook id.")]
    status: Accepted


EventId = Annotated[
    str,
    Meta(
        pattern=EVENT_ID_PATTERN,
        description="The producer's own id of the event: 1-200 letters, digits and . _ : ~ - "
        "(starting with a letter or digit). It is the event's idempotency: sent again (a "
        "retry), the event is not fanned out twice. Absent: derived from the Idempotency-Key "
        "header, else new.",
    ),
]


class FanoutEvent(msgspec.Struct, forbid_unknown_fields=True):
    """One event for every matching active subscription."""

    event_type: EventType
    payload: AnyJson
    event_id: EventId | UnsetType = UNSET


class FanoutAccepted(msgspec.Struct):
    """An event Kafka acknowledged (one record, whatever its width); the delivery agents
    expand it. Subscription S's webhook id is derived from the event id (docs/api.md)."""

    event_id: Annotated[str, Meta(description="The event's id: given, or made by the gateway.")]
    status: Accepted


class DeliveryAttempt(msgspec.Struct):
    """One HTTP delivery attempt of a webhook."""

    attempt_number: Annotated[int, Meta(ge=1)]
    timestamp: Timestamp
    status_code: int | None
    error_detail: str | None
    is_success: bool
    duration_ms: Annotated[float, Meta(ge=0)]


class WebhookStatus(msgspec.Struct):
    """A webhook's delivery status and attempts."""

    id: Annotated[str, Meta(description="Webhook id.")]
    subscription: Uuid | None
    subscription_url: str | None
    event_type: str
    payload: Annotated[Any, Meta(description="The webhook's JSON payload.")]
    status: StatusName
    retry_count: Annotated[int, Meta(ge=0)]
    next_retry_at: Timestamp | None
    created_at: Timestamp
    delivered_at: Timestamp | None
    delivery_attempts: list[DeliveryAttempt]
    waiting_for: (
        Annotated[
            str,
            Meta(
                description="FIFO subscriptions, while PENDING: the webhook right before this "
                "one in its ordering key's queue (GET /api/status/{id}/ only)."
            ),
        ]
        | UnsetType
    ) = UNSET


class WebhookList(msgspec.Struct):
    """A page of webhooks, newest first."""

    items: list[WebhookStatus]
    next_cursor: NextCursor


class Probe(msgspec.Struct):
    """A probe's answer."""

    status: Annotated[str, Meta(description="alive, ready or not ready.")]


# --- operator control: redelivery and dead letters (ingest_gateway/redelivery_api.py) ---------

WindowStart = Annotated[
    str,
    Meta(
        extra_json_schema={"format": "date-time"},
        description="Start of the window (inclusive): webhooks received at or after it.",
    ),
]
WindowEnd = Annotated[
    str,
    Meta(
        extra_json_schema={"format": "date-time"},
        description="End of the window (exclusive); absent: now.",
    ),
]


class ResendAccepted(msgspec.Struct):
    """A new delivery chain for the webhook, acknowledged by Kafka."""

    id: Annotated[str, Meta(description="Webhook id (the webhook-id the receiver sees again).")]
    status: Accepted


class RecoverRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The window of a recover: webhooks received in it whose status is FAILED go again."""

    since: WindowStart
    until: WindowEnd | None = None


class Count(msgspec.Struct):
    """How many records were produced (each acknowledged by Kafka)."""

    count: Annotated[int, Meta(ge=0)]


MAX_REDRIVE_IDS = 1000


class RedriveRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Which dead letters to redrive: ``ids``, or a filter (at least one of its fields)."""

    ids: (
        Annotated[
            list[Annotated[int, Meta(ge=1)]],
            Meta(min_length=1, max_length=MAX_REDRIVE_IDS, description="Dead letter ids."),
        ]
        | None
    ) = None
    subscription_id: Annotated[str, Meta(extra_json_schema={"format": "uuid"})] | None = None
    reason: Annotated[str, Meta(description="Letters whose reason contains this text.")] | None = (
        None
    )
    since: (
        Annotated[
            str, Meta(extra_json_schema={"format": "date-time"}, description="Failed at or after.")
        ]
        | None
    ) = None
    until: (
        Annotated[
            str, Meta(extra_json_schema={"format": "date-time"}, description="Failed before.")
        ]
        | None
    ) = None


class Redriven(msgspec.Struct):
    """What a redrive did: letters whose webhook went again (each acknowledged by Kafka), and
    letters refused (unreadable records, webhooks with nothing to send)."""

    count: Annotated[int, Meta(ge=0)]
    refused: Annotated[int, Meta(ge=0)]


class DeadLetterSource(msgspec.Struct):
    """Where the record that failed was read (and, for an unreadable one, its headers)."""

    topic: str | UnsetType = UNSET
    partition: int | UnsetType = UNSET
    offset: int | UnsetType = UNSET
    headers: dict[str, str] | UnsetType = UNSET


class DeadLetter(msgspec.Struct):
    """A dead letter: a webhook that failed for good, or a record that could not be read."""

    id: Annotated[int, Meta(ge=1)]
    failed_at: Timestamp
    reason: str
    webhook_id: Annotated[str | None, Meta(description="Null: an unreadable record.")]
    subscription_id: Uuid | None
    record: Annotated[
        dict[str, Any] | None,
        Meta(description="The webhook as it last was (body as text), when it could be read."),
    ]
    raw: Annotated[str | None, Meta(description="An unreadable record's value, as text.")]
    source: DeadLetterSource
    redrivable: Annotated[
        bool, Meta(description="False for an unreadable record: it has no webhook to send.")
    ]
    redriven_at: Annotated[Timestamp | None, Meta(description="When it was last redriven.")]


class DeadLetterList(msgspec.Struct):
    """A page of dead letters, newest first."""

    items: list[DeadLetter]
    next_cursor: NextCursor
