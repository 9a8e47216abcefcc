-- The fan-out event a webhook came from (GET /api/events/{event_id}/): the event id of a
-- gateway fan-out (its records' metadata), or the id of a fan-out record produced straight to
-- Kafka (whose webhooks' ids derive from it). Null for a webhook ingested for one subscription.
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS event_id text;
CREATE INDEX IF NOT EXISTS webhooks_event_id ON webhooks (event_id) WHERE event_id IS NOT NULL;
