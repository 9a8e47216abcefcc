-- Mirror of the compacted subscriptions topic, kept by the status projector. A tombstone marks
-- the row deleted (deleted_at) instead of removing it, so that the history of a deleted
-- subscription still names its URL. The secret key is not mirrored.
CREATE TABLE IF NOT EXISTS subscriptions (
    id            uuid        PRIMARY KEY,
    target_url    text        NOT NULL,
    event_types   text[]      NOT NULL DEFAULT '{}',
    is_active     boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    -- offset of the topic record this row reflects: an older record never overwrites a newer one
    source_offset bigint      NOT NULL DEFAULT -1
);
