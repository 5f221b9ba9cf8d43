-- The service's own hold transaction run raw (adapters/postgres/src/reservation.rs): the user's
-- advisory lock, then the one statement that counts the user's live holds, inserts the
-- reservation, claims the seat and tidies the lapsed hold it replaced. Not the issue's baseline
-- (that is hold.sql); it separates what the data model costs from what the service adds. Each
-- transaction is a new user on a random seat; the hold lapses at once (until = now()), so a seat
-- drawn again is claimed again and its previous reservation tidied to EXPIRED.
-- Variables: :concert, :dates.
\set n random(0, :dates * 1000 - 1)
\set d :n / 1000
\set s :n % 1000 + 1
\set u random(1, 1000000000000)
BEGIN;
SELECT pg_advisory_xact_lock(1129512961, hashtext(md5(CAST(:u AS text))));
WITH live AS (
    SELECT count(*) AS n FROM reservations
    WHERE user_id = CAST(md5(CAST(:u AS text)) AS uuid) AND status = 'HELD' AND expires_at > now()
), inserted AS (
    INSERT INTO reservations (user_id, concert_id, date, seat_no, price, status,
                              expires_at, created_at, updated_at)
    SELECT CAST(md5(CAST(:u AS text)) AS uuid), :concert,
           CAST('2030-01-01' AS date) + CAST(:d AS integer), :s, 1000, 'HELD', now(), now(), now()
    FROM live WHERE live.n < 4
    RETURNING id, expires_at
), claimed AS (
    UPDATE seats SET held_by_reservation = inserted.id,
                     held_by_user = CAST(md5(CAST(:u AS text)) AS uuid), held_until = now()
    FROM inserted
    WHERE seats.concert_id = :concert AND seats.date = CAST('2030-01-01' AS date) + CAST(:d AS integer)
      AND seats.seat_no = :s AND seats.sold_to_user IS NULL
      AND (seats.held_until IS NULL OR seats.held_until <= now())
    RETURNING inserted.id
), tidied AS (
    UPDATE reservations SET status = 'EXPIRED', updated_at = now()
    WHERE id IN (
        SELECT id FROM reservations
        WHERE concert_id = :concert AND date = CAST('2030-01-01' AS date) + CAST(:d AS integer)
          AND seat_no = :s AND status = 'HELD' AND expires_at <= now()
          AND EXISTS (SELECT 1 FROM claimed)
        FOR UPDATE SKIP LOCKED)
)
SELECT (SELECT n FROM live) AS live, (SELECT id FROM inserted) AS reservation,
       (SELECT expires_at FROM inserted) AS expires_at, EXISTS (SELECT 1 FROM claimed) AS claimed;
END;
