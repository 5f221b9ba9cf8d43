-- Why a ticket ended (docs/API.md §1.2 `reason`), and tickets that end while still waiting
-- (a user leaves): they stop counting in the line at once, before the admission step passes them.
ALTER TABLE queue_tickets ADD COLUMN end_reason text
    CHECK (end_reason IN ('PAID', 'ACTIVE_TIME_OVER', 'IDLE', 'REVOKED', 'LEFT'));
ALTER TABLE queue_tickets ADD CONSTRAINT queue_tickets_live_has_no_end_reason
    CHECK (status = 'EXPIRED' OR end_reason IS NULL);

-- The tickets that ended while waiting, read by every instance's view above the serving counter.
CREATE INDEX queue_tickets_ended_waiting ON queue_tickets (ticket)
    WHERE status = 'EXPIRED' AND admitted_at IS NULL;

-- How many tickets ended while waiting, ever: they were issued and will never be admitted, so
-- the waiting count is issued − admitted − this. Moved by the statement that ends one.
ALTER TABLE queue_state ADD COLUMN ended_waiting_total bigint NOT NULL DEFAULT 0
    CHECK (ended_waiting_total >= 0);
