-- The retention job's look-ups (src/retention.rs): the oldest idempotency keys, and the tickets
-- ended longest ago. Partial: live tickets (the most written rows) carry no entry.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
CREATE INDEX queue_tickets_ended ON queue_tickets (ended_at) WHERE status = 'EXPIRED';
