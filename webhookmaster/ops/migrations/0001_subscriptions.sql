-- Mirror of the compacted subscriptions topic, kept by the status projector.
CREATE TABLE IF NOT EXISTS subscriptions (
    id          uuid PRIMARY KEY,
    target_url  text        NOT NULL,
    event_types text[]      NOT NULL DEFAULT '{}',
    is_active   boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    deleted_at  timestamptz
);
