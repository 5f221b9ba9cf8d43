-- The sequences of the lines created since (line 0's is v1's, renamed back below).
DO $$
DECLARE numbered record;
BEGIN
    FOR numbered IN SELECT line FROM rooms WHERE line <> 0 LOOP
        EXECUTE format('DROP SEQUENCE IF EXISTS queue_line_%s_seq', numbered.line);
    END LOOP;
END $$;
DROP INDEX queue_tickets_one_live_per_user;
DELETE FROM queue_tickets WHERE ticket >= (1::bigint << 40);
CREATE UNIQUE INDEX queue_tickets_one_live_per_user
    ON queue_tickets (user_id) WHERE status IN ('WAITING', 'ACTIVE');
DELETE FROM queue_members WHERE line <> 0;
ALTER TABLE queue_members DROP CONSTRAINT queue_members_pkey;
ALTER TABLE queue_members DROP COLUMN line;
ALTER TABLE queue_members ADD PRIMARY KEY (user_id);
ALTER SEQUENCE queue_line_0_seq NO MAXVALUE;
ALTER SEQUENCE queue_line_0_seq RENAME TO queue_tickets_ticket_seq;
DELETE FROM queue_state WHERE line <> 0;
ALTER TABLE queue_state DROP CONSTRAINT queue_state_line_range;
ALTER TABLE queue_state RENAME COLUMN line TO id;
UPDATE queue_state SET id = 1;
ALTER TABLE queue_state ADD CONSTRAINT queue_state_id_check CHECK (id = 1);
DROP TABLE room_concerts;
DELETE FROM rooms WHERE line <> 0;
ALTER TABLE rooms DROP COLUMN opened;
ALTER TABLE rooms DROP COLUMN shuffle_at_open;
ALTER TABLE rooms DROP COLUMN opens_at;
ALTER TABLE rooms DROP COLUMN line;
