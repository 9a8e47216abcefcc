-- The subscription mirror remembers the offset of the topic record each row reflects, so an
-- older record never overwrites a newer one (a tombstone marks the row deleted instead of
-- removing it, so the history of a deleted subscription still names its URL).
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS source_offset bigint NOT NULL DEFAULT -1;

-- Status views written by the status projector and read by the status API.
--
-- webhooks and delivery_attempts are partitioned by day on the webhook's received_at, so the
-- 72-hour retention drops whole partitions (the projector creates the partitions it needs and
-- drops the old ones). A partitioned table's primary key must hold the partition key: a webhook
-- is (id, created_at), an attempt (webhook_id, attempt_number, received_at); look-ups by id use
-- the leading column of those keys.

CREATE TABLE webhooks (
    id               text        NOT NULL,
    created_at       timestamptz NOT NULL,  -- the webhook's received_at; partition key
    subscription_id  uuid,
    event_type       text,
    payload          jsonb,
    status           text        NOT NULL
                     CHECK (status IN ('PENDING', 'IN_PROGRESS', 'DELIVERED', 'FAILED')),
    attempt_count    integer     NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    next_retry_at    timestamptz,
    delivered_at     timestamptz,
    updated_at       timestamptz NOT NULL,  -- time of the newest event applied (not wall clock)
    -- order key of the event the status fields come from (terminal flag, then attempt): an
    -- event with a lower key never overwrites them, so late or replayed events cannot regress
    progress         integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

CREATE INDEX webhooks_subscription_created ON webhooks (subscription_id, created_at DESC, id DESC);
CREATE INDEX webhooks_status_next_retry ON webhooks (status, next_retry_at);
CREATE INDEX webhooks_event_type_created ON webhooks (event_type, created_at DESC, id DESC);
CREATE INDEX webhooks_created ON webhooks (created_at DESC, id DESC);

CREATE TABLE delivery_attempts (
    webhook_id       text             NOT NULL,
    attempt_number   integer          NOT NULL,
    received_at      timestamptz      NOT NULL,  -- the webhook's received_at; partition key
    subscription_id  uuid             NOT NULL,
    event_type       text             NOT NULL,
    target_url       text             NOT NULL,
    started_at       timestamptz      NOT NULL,
    duration_ms      double precision NOT NULL,
    status_code      integer,
    error            text,
    response_excerpt text,
    outcome          text             NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'failed')),
    next_attempt_at  timestamptz,
    PRIMARY KEY (webhook_id, attempt_number, received_at)
) PARTITION BY RANGE (received_at);

CREATE INDEX delivery_attempts_started ON delivery_attempts (started_at);

-- Dead letters that are not webhooks (unreadable records, webhook_id null). Small: the
-- retention job deletes rows older than the retention instead of dropping partitions.
CREATE TABLE dead_letters (
    dl_partition     integer     NOT NULL,  -- where the dead letter itself sits on its topic
    dl_offset        bigint      NOT NULL,
    failed_at        timestamptz NOT NULL,
    reason           text        NOT NULL,
    raw              text,
    source           jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (dl_partition, dl_offset)
);

CREATE INDEX dead_letters_failed ON dead_letters (failed_at);
