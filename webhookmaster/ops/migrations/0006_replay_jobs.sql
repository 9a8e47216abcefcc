-- Replay jobs (POST /api/subscriptions/{id}/replay/): one row per job, its progress written by
-- the gateway process that runs it, read by any (GET /api/replays/{id}/).
CREATE TABLE IF NOT EXISTS replay_jobs (
    id              uuid        PRIMARY KEY,
    subscription_id uuid        NOT NULL,
    since           timestamptz NOT NULL,
    until           timestamptz NOT NULL,
    event_types     text[]      NOT NULL DEFAULT '{}',
    state           text        NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    total           bigint      NOT NULL DEFAULT 0,  -- ingest records in the window
    scanned         bigint      NOT NULL DEFAULT 0,  -- of them read so far
    count           bigint      NOT NULL DEFAULT 0,  -- webhooks re-delivered so far
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS replay_jobs_created ON replay_jobs (created_at);
