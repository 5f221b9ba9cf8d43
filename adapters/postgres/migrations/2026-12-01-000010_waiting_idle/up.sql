-- A room's rule for waiting users who stop watching (waitingIdleSeconds) and since when it holds;
-- a waiting ticket's last_seen is then its holder's last recorded poll.
ALTER TABLE rooms ADD COLUMN waiting_idle_seconds integer
    CHECK (waiting_idle_seconds BETWEEN 5 AND 86400);
ALTER TABLE rooms ADD COLUMN waiting_idle_since timestamptz;
ALTER TABLE rooms ADD CONSTRAINT rooms_waiting_idle_has_start
    CHECK ((waiting_idle_seconds IS NULL) = (waiting_idle_since IS NULL));
