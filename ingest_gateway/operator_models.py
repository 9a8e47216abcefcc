"""Request and response bodies of the operator routes (secret rotation, event lookup, replay),
as msgspec Structs for the OpenAPI document (:mod:`ingest_gateway.operator_routes`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ingest_gateway.api_models import SecretKey, StatusName
from schemas.records import EventType, Timestamp, Uuid


class SecretRotate(msgspec.Struct, forbid_unknown_fields=True):
    """The new secret (omitted: a new whsec_ secret is made)."""

    secret_key: SecretKey | UnsetType = UNSET


class SecretRotated(msgspec.Struct):
    """The subscription's new secret, and until when the previous one is also signed with."""

    id: Uuid
    secret_key: SecretKey
    previous_secret_expires_at: Annotated[
        Timestamp | None,
        Meta(
            description="Until when deliveries carry the previous secret's signature too "
            "(WM_SECRET_ROTATION_GRACE after the rotation); null when there was no secret."
        ),
    ]


class EventWebhook(msgspec.Struct):
    """One webhook a fan-out event became."""

    id: Annotated[str, Meta(description="Webhook id (derived from the event and subscription).")]
    subscription_id: Uuid | None
    status: StatusName


class EventLookup(msgspec.Struct):
    """A fan-out event and the webhooks it became, as the status views know them."""

    event_id: str
    event_type: str | None
    created_at: Timestamp
    webhooks: list[EventWebhook]


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The window of the ingest topic to deliver again (by record timestamp)."""

    since: Annotated[Timestamp, Meta(description="Start of the window (inclusive).")]
    until: (
        Annotated[Timestamp, Meta(description="End of the window (exclusive); omitted: now.")]
        | UnsetType
    ) = UNSET
    event_types: (
        Annotated[list[EventType], Meta(description="Only these event types; omitted: all.")]
        | UnsetType
    ) = UNSET


class ReplayJob(msgspec.Struct):
    """A replay job and how far it is."""

    id: Uuid
    subscription_id: Uuid
    state: Annotated[
        Literal["running", "done", "failed"],
        Meta(description="running, done, or failed (error says why)."),
    ]
    since: Timestamp
    until: Timestamp
    event_types: list[str]
    count: Annotated[int, Meta(ge=0, description="Webhooks re-delivered so far (final once done).")]
    scanned: Annotated[int, Meta(ge=0, description="Ingest records read so far.")]
    total: Annotated[
        int, Meta(ge=0, description="Ingest records in the window (what scanned goes up to).")
    ]
    error: str | None
    created_at: Timestamp
    updated_at: Timestamp


class ReplayAccepted(msgspec.Struct):
    """A replay job, started (or, for a small window, already done)."""

    id: Annotated[Uuid, Meta(description="Job id: GET /api/replays/{id}/ shows its progress.")]
    status: Literal["accepted"]
    state: Literal["running", "done", "failed"]
    total: Annotated[int, Meta(ge=0, description="Ingest records in the window.")]
    count: Annotated[
        int | None,
        Meta(
            description="Webhooks re-delivered, when known: a window of at most 1,000 records "
            "is replayed before this answer; null while a larger one runs."
        ),
    ]
