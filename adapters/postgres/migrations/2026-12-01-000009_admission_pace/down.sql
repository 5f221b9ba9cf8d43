DROP INDEX queue_tickets_admitted_at;
ALTER TABLE queue_state DROP COLUMN pace_at;
ALTER TABLE queue_state DROP COLUMN pace_credit_millis;
ALTER TABLE rooms DROP COLUMN admit_per_minute;
