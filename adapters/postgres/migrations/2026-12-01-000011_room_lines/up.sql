-- Rooms of their own: each room has a line, numbered here once; its tickets are numbered from
-- line << 40 (docs/DATABASE.md §5.12), so a token's ticket names its room. The `default` room keeps
-- line 0 and every ticket issued before rooms existed.
ALTER TABLE rooms ADD COLUMN line integer UNIQUE CHECK (line BETWEEN 0 AND 4194303);
UPDATE rooms SET line = 0 WHERE room_id = 'default';
ALTER TABLE rooms ALTER COLUMN line SET NOT NULL;
CREATE SEQUENCE room_lines_seq MINVALUE 1 MAXVALUE 4194303 OWNED BY rooms.line;

-- A scheduled opening (opensAt, shuffleAtOpen) and whether the pre-queue got its places.
ALTER TABLE rooms ADD COLUMN opens_at timestamptz;
ALTER TABLE rooms ADD COLUMN shuffle_at_open boolean NOT NULL DEFAULT false;
ALTER TABLE rooms ADD COLUMN opened boolean NOT NULL DEFAULT false;

-- The concerts a room names; a concert no row names is guarded by the `default` room. The key
-- makes "one room per concert" hold when two rooms are created at once.
CREATE TABLE room_concerts (
    concert_id bigint PRIMARY KEY REFERENCES concerts (id),
    room_id    text   NOT NULL REFERENCES rooms (room_id)
);
CREATE INDEX room_concerts_by_room ON room_concerts (room_id);

-- One row of counters per line.
ALTER TABLE queue_state DROP CONSTRAINT queue_state_id_check;
UPDATE queue_state SET id = 0;
ALTER TABLE queue_state RENAME COLUMN id TO line;
ALTER TABLE queue_state ADD CONSTRAINT queue_state_line_range CHECK (line BETWEEN 0 AND 4194303);

-- One sequence per line, named after it; line 0's is the one v1 drew from. Places stay in the
-- lower half of the line's range (up to 2^39); the upper half numbers pre-queue entries.
ALTER SEQUENCE queue_tickets_ticket_seq RENAME TO queue_line_0_seq;
ALTER SEQUENCE queue_line_0_seq MAXVALUE 549755813888;

-- One live place per user per room.
ALTER TABLE queue_members ADD COLUMN line integer NOT NULL DEFAULT 0;
ALTER TABLE queue_members ALTER COLUMN line DROP DEFAULT;
ALTER TABLE queue_members DROP CONSTRAINT queue_members_pkey;
ALTER TABLE queue_members ADD PRIMARY KEY (user_id, line);

DROP INDEX queue_tickets_one_live_per_user;
CREATE UNIQUE INDEX queue_tickets_one_live_per_user
    ON queue_tickets (user_id, (ticket >> 40)) WHERE status IN ('WAITING', 'ACTIVE');
