-- A room's pace of admissions (admitPerMinute): the setting, the credit the admission step
-- keeps between steps, and the index that counts the admissions of the last 60 seconds.
ALTER TABLE rooms ADD COLUMN admit_per_minute integer
    CHECK (admit_per_minute BETWEEN 1 AND 1000000);
ALTER TABLE queue_state ADD COLUMN pace_credit_millis bigint NOT NULL DEFAULT 0;
ALTER TABLE queue_state ADD COLUMN pace_at timestamptz;
CREATE INDEX queue_tickets_admitted_at ON queue_tickets (admitted_at)
    WHERE admitted_at IS NOT NULL;
