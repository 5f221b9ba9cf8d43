ALTER TABLE queue_state DROP COLUMN ended_waiting_total;
DROP INDEX queue_tickets_ended_waiting;
ALTER TABLE queue_tickets DROP CONSTRAINT queue_tickets_live_has_no_end_reason;
ALTER TABLE queue_tickets DROP COLUMN end_reason;
