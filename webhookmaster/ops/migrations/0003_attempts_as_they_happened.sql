-- Attempts as they happened: every HTTP request whose outcome was seen is its own row, keyed by
-- the attempt id the agent gives each request (a request redone after a crash has its own, so
-- it no longer overwrites the first under the same attempt number). Rows from before carry
-- 'n<attempt number>'.
ALTER TABLE delivery_attempts ADD COLUMN attempt_id text NOT NULL DEFAULT '';
UPDATE delivery_attempts SET attempt_id = 'n' || attempt_number WHERE attempt_id = '';
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_pkey;
ALTER TABLE delivery_attempts ADD PRIMARY KEY (webhook_id, attempt_id, received_at);

-- DELIVERED is final: its order key now ranks above FAILED, so a late dead letter (a redelivery
-- after the subscription was deleted) can no longer turn a delivered webhook FAILED.
UPDATE webhooks SET progress = progress + 10000 WHERE status = 'DELIVERED' AND progress < 20000;

-- Every dead letter is kept as an event (not only unreadable records): a dead letter for a
-- webhook that was already delivered is recorded here while its status stays DELIVERED.
ALTER TABLE dead_letters ADD COLUMN webhook_id text;
ALTER TABLE dead_letters ADD COLUMN subscription_id uuid;
ALTER TABLE dead_letters ADD COLUMN record jsonb;
CREATE INDEX dead_letters_webhook ON dead_letters (webhook_id) WHERE webhook_id IS NOT NULL;

-- Records the projector could not read or PostgreSQL refused: kept with the reason and the raw
-- value, so nothing consumed is dropped without a trace. Retention deletes them by seen_at.
CREATE TABLE unprojectable (
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    record_offset bigint     NOT NULL,
    seen_at      timestamptz NOT NULL,
    reason       text        NOT NULL,
    raw          text,
    PRIMARY KEY (topic, partition, record_offset)
);
CREATE INDEX unprojectable_seen ON unprojectable (seen_at);
