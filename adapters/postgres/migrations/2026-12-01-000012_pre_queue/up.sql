-- A room's pre-queue: who took a token before the room's opening (opensAt). An entry's number
-- is in the upper half of its line's range (docs/DATABASE.md §5.12), so the token names its room
-- and never a place. At the opening, one step gives every live entry its place (`ticket`), in
-- the order the domain decided, and marks the room `opened`; tokens keep their entry number and
-- every instance maps it to the place.
-- Shared by every room's pre-queue; it stays below the half a line gives its entries.
CREATE SEQUENCE pre_queue_entries_seq MAXVALUE 549755813887;

CREATE TABLE pre_queue (
    entry      bigint      PRIMARY KEY,
    line       integer     NOT NULL,
    user_id    uuid        NOT NULL,
    issued_at  timestamptz NOT NULL,
    ticket     bigint      UNIQUE,
    ended_at   timestamptz,
    end_reason text        CHECK (end_reason IN ('REVOKED', 'LEFT')),
    CONSTRAINT pre_queue_placed_or_ended CHECK (ticket IS NULL OR ended_at IS NULL),
    CONSTRAINT pre_queue_end_has_reason CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);

-- One live entry per user per room: a racing duplicate cannot be committed.
CREATE UNIQUE INDEX pre_queue_one_per_user ON pre_queue (line, user_id) WHERE ended_at IS NULL;

-- The opening reads the live entries of one line in arrival order; the count is the pre-queue.
CREATE INDEX pre_queue_waiting ON pre_queue (line, entry) WHERE ticket IS NULL AND ended_at IS NULL;
