-- FIFO subscriptions (docs/ordering.md): the webhook each queued webhook waits behind, from the
-- parked topic's enq records. The status API shows it while the webhook is PENDING. Retention
-- deletes rows by created_at (the webhook's received_at).
CREATE TABLE fifo_waiting (
    webhook_id  text        PRIMARY KEY,
    waiting_for text        NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX fifo_waiting_created ON fifo_waiting (created_at);
