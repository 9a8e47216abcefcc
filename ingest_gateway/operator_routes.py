"""The operator-control rows of the route table (:data:`ingest_gateway.routes.ROUTES` includes
them): resend, recover, dead letters. Every one needs the management API key."""

from __future__ import annotations

from ingest_gateway import api_models as m
from ingest_gateway import deadletters_api, redelivery_api
from ingest_gateway.openapi import Param, Reply, Route, error
from ingest_gateway.pagination import MAX_LIMIT

OPERATOR = "operator"  # the tag

BAD_REQUEST = error("Invalid input: the body names the field at fault.")
UNAUTHORIZED = error("API keys are configured and the request has no valid key.")
UNAVAILABLE = error(
    "Kafka did not acknowledge a record, or PostgreSQL (the status views) is unavailable: "
    "retry after Retry-After seconds (records already acknowledged stay sent).",
    retry_after=True,
)
NOT_REDELIVERABLE = error(
    "The webhook cannot go again (error: not_redeliverable): nothing on record to send yet, or "
    "its attempt or redelivery numbers are used up."
)
SUBSCRIPTION_ID = Param("id", "path", "Subscription id.", m.UuidText)
DEAD_LETTER_FILTERS = (
    Param("subscription_id", "query", "Only this subscription's.", m.UuidText),
    Param("reason", "query", "Only letters whose reason contains this text."),
    Param("since", "query", "Only letters that failed at or after this time.", m.DateTimeText),
    Param("until", "query", "Only letters that failed before this time.", m.DateTimeText),
    Param(
        "limit",
        "query",
        f"Page size (1-{MAX_LIMIT}, default {deadletters_api.DEFAULT_LIMIT}).",
        m.page_size(deadletters_api.DEFAULT_LIMIT),
    ),
    Param(
        "cursor",
        "query",
        "Opaque cursor from the previous page's next_cursor (empty: the first page).",
    ),
)

# fmt: off
ROUTES: tuple[Route, ...] = (
    Route("POST", "/api/webhooks/{id}/resend/", redelivery_api.resend, "resendWebhook",
          "Deliver one webhook again (a new delivery chain)", OPERATOR,
          description="Whatever the webhook's state: a new delivery chain with the same "
          "webhook-id and the exact body, its attempts numbered on from the last one, its own "
          "retry ladder. The status goes back to PENDING for it; the attempts of earlier chains "
          "stay in the history.",
          responses={202: Reply("Acknowledged by Kafka.", m.ResendAccepted),
                     401: UNAUTHORIZED, 404: error("No webhook with this id in the retention."),
                     409: NOT_REDELIVERABLE, 503: UNAVAILABLE},
          params=(Param("id", "path", "Webhook id."),), name="webhook_resend"),
    Route("POST", "/api/subscriptions/{id}/recover/", redelivery_api.recover,
          "recoverSubscription", "Deliver again every FAILED webhook of a window", OPERATOR,
          description="Every webhook of the subscription received in [since, until) whose "
          "status is FAILED starts a new delivery chain (as resend); delivered ones do not.",
          responses={202: Reply("How many went again.", m.Count), 400: BAD_REQUEST,
                     401: UNAUTHORIZED, 404: error("Unknown subscription."),
                     503: UNAVAILABLE},
          params=(SUBSCRIPTION_ID,), body=m.RecoverRequest, name="subscription_recover"),
    Route("GET", "/api/deadletters/", deadletters_api.list_deadletters, "listDeadLetters",
          "List dead letters, newest first", OPERATOR,
          description="Webhooks that failed for good (redrivable) and records that could not "
          "be read (their raw text; not redrivable), as the status projector keeps them.",
          responses={200: Reply("A page.", m.DeadLetterList), 400: BAD_REQUEST,
                     401: UNAUTHORIZED, 503: UNAVAILABLE},
          params=DEAD_LETTER_FILTERS, name="deadletters", head=True),
    Route("POST", "/api/deadletters/redrive/", deadletters_api.redrive, "redriveDeadLetters",
          "Deliver the webhooks of dead letters again", OPERATOR,
          description="The letters named by ids, or every letter the filter selects: each "
          "redrivable one's webhook starts a new delivery chain (as resend). Unreadable records "
          "are refused and counted.",
          responses={202: Reply("How many went again and how many were refused.", m.Redriven),
                     400: BAD_REQUEST, 401: UNAUTHORIZED,
                     404: error("An id names no dead letter (nothing was sent)."),
                     422: error("Every named letter is refused (error: not_redrivable): "
                                "unreadable records have no webhook to send."),
                     503: UNAVAILABLE},
          body=m.RedriveRequest, name="deadletters_redrive"),
)
# fmt: on
