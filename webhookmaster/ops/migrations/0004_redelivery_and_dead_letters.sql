-- Redelivery (resend, recover) starts a new delivery chain from the webhooks row, so the row keeps
-- what the chain needs: the exact body bytes (payload is jsonb, which does not keep whitespace,
-- key order or duplicate names) and the ingest metadata. Rows from before stay NULL: a resend of
-- one falls back to payload's text.
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS body bytea;
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS metadata jsonb;

-- Dead letters as an operator lists and redrives them: an id, filters by subscription, reason and
-- time, and when a letter was last redriven. The id is where the letter sits on its topic
-- (partition * 2^40 + offset + 1), so a projection replayed into an empty schema has the same ids.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS id bigint
    GENERATED ALWAYS AS (dl_partition::bigint * 1099511627776 + dl_offset + 1) STORED;
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_id ON dead_letters (id);
CREATE INDEX IF NOT EXISTS dead_letters_subscription_failed
    ON dead_letters (subscription_id, failed_at);
CREATE INDEX IF NOT EXISTS dead_letters_failed_id ON dead_letters (failed_at, id);
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS redriven_at timestamptz;
