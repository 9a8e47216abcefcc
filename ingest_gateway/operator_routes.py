"""The operator-control rows of the route table (:data:`ingest_gateway.routes.ROUTES` includes
them): resend, recover, dead letters. Every one needs the management API key."""

from __future__ import annotations

from ingest_gateway import api_models as m
from ingest_gateway import redelivery_api
from ingest_gateway.openapi import Param, Reply, Route, error

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
)
# fmt: on
