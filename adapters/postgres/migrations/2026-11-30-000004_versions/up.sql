-- Compare-and-set: every row a decision is written over carries a version, bumped by every
-- write. A use case reads the rows with their versions, the domain decides, and the write applies
-- only while each row is still at the version read (see docs/DATABASE.md, "Writes").
ALTER TABLE seats ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version > 0);
ALTER TABLE reservations ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version > 0);
ALTER TABLE wallets ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version > 0);

-- One row per user who ever held a seat: its version guards the hold limit. Every new hold of the
-- user bumps it in the same statement that claims the seat, so two holds decided on the same
-- count cannot both be written.
CREATE TABLE user_holds (
    user_id uuid   PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0)
);

-- The hold limit reads the deadlines of a user's stored-HELD reservations.
DROP INDEX reservations_live_holds_by_user;
CREATE INDEX reservations_held_by_user ON reservations (user_id) INCLUDE (expires_at)
    WHERE status = 'HELD';

-- One row per user who ever joined the line: its version guards "one live place per user". A
-- join bumps it in the statement that draws the number, so two joins of one user decided on the
-- same state cannot both draw one (and a losing duplicate never consumes a number).
CREATE TABLE queue_members (
    user_id uuid   PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0)
);
