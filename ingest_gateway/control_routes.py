"""The operator routes of the route table (:mod:`ingest_gateway.routes` appends them): secret
rotation, event lookup, replay from the ingest topic. Every one needs the management API key
(when keys are configured)."""

from __future__ import annotations

from ingest_gateway import api_models as m
from ingest_gateway import event_lookup, replay, secret_rotation
from ingest_gateway import operator_models as om
from ingest_gateway.openapi import Link, Param, Reply, Route, error

SUBS, STATUS = "subscriptions", "status"
BAD_REQUEST = error("Invalid input: the body names the field at fault.")
UNAUTHORIZED = error("API keys are configured and the request has no valid key.")
NOT_FOUND = error("Unknown id.")
KAFKA_DOWN = error(
    "Kafka did not acknowledge the write (or the gateway is not ready): nothing was done, "
    "retry after Retry-After seconds.",
    retry_after=True,
)
SUBSCRIPTION_ID = Param("id", "path", "Subscription id.", m.UuidText)

# fmt: off
ROUTES: tuple[Route, ...] = (
    Route("POST", "/api/subscriptions/{id}/rotate-secret/", secret_rotation.rotate_secret,
          "rotateSecret", "Rotate a subscription's signing secret", SUBS,
          description="Sets a new secret (the body's secret_key, or a new whsec_ one; the body "
          "may be empty). Until previous_secret_expires_at (WM_SECRET_ROTATION_GRACE, default "
          "24 h) deliveries carry both signatures in webhook-signature (new first); "
          "X-Hub-Signature-256 uses the new secret.",
          responses={200: Reply("The new secret.", om.SecretRotated), 400: BAD_REQUEST,
                     401: UNAUTHORIZED, 404: NOT_FOUND, 503: KAFKA_DOWN},
          params=(SUBSCRIPTION_ID,), body=om.SecretRotate, body_optional=True),
    Route("GET", "/api/events/{event_id}/", event_lookup.event_status, "eventStatus",
          "A fan-out event and the webhooks it became", STATUS,
          description="By the event's id: the one POST /api/events/ answered, or the id its "
          "producer gave (a fan-out record produced to Kafka). Each webhook's status is the "
          "status API's.",
          responses={200: Reply("The event.", om.EventLookup), 401: UNAUTHORIZED,
                     404: error("No webhook of this event within the retention."),
                     503: error("The status database is unavailable.", retry_after=True)},
          params=(Param("event_id", "path", "Event id."),), head=True),
    Route("POST", "/api/subscriptions/{id}/replay/", replay.start_replay, "replaySubscription",
          "Deliver again every webhook of a time window, read from the ingest topic", SUBS,
          description="Finds the window in the ingest topic by record timestamp "
          "(offsets_for_times) and delivers every webhook of the subscription in it again, "
          "delivered or not, each once, as a new delivery chain (same webhook-id). A window of "
          "at most 1,000 records is replayed before the answer (count final); a larger one runs "
          "on: follow GET /api/replays/{id}/.",
          responses={202: Reply("The job.", om.ReplayAccepted,
                                links={"progress": Link("replayStatus", {"job_id": "id"})}),
                     400: BAD_REQUEST, 401: UNAUTHORIZED, 404: NOT_FOUND, 503: KAFKA_DOWN},
          params=(SUBSCRIPTION_ID,), body=om.ReplayRequest),
    Route("GET", "/api/replays/{job_id}/", replay.replay_status, "replayStatus",
          "A replay job's progress", STATUS,
          responses={200: Reply("The job.", om.ReplayJob), 401: UNAUTHORIZED,
                     404: error("No such job."),
                     503: error("The status database is unavailable.", retry_after=True)},
          params=(Param("job_id", "path", "Job id.", m.UuidText),), head=True),
)
# fmt: on
