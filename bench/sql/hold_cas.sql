-- The service's own hold statements run raw (adapters/postgres/src/reservation.rs): the load (the
-- seat with its version and price, the user's hold version and live-hold deadlines, a new id),
-- then the compare-and-set write (bump the user's hold version, claim the seat over the version
-- read, insert the reservation, write down the lapsed hold it replaced). Not the issue's baseline
-- (that is hold.sql); it separates what the data model costs from what the service adds. Each run
-- is a new user on a random seat; the hold lapses at once (until = now()), so a seat drawn again
-- is claimed again and its previous reservation written EXPIRED.
-- Variables: :concert, :dates.
\set n random(0, :dates * 1000 - 1)
\set d :n / 1000
\set s :n % 1000 + 1
\set u random(1, 1000000000000)
SELECT s.version AS seat_version, d.price AS price,
       COALESCE(s.held_by_reservation, 0) AS replaced,
       COALESCE((SELECT h.version FROM user_holds h
                 WHERE h.user_id = CAST(md5(CAST(:u AS text)) AS uuid)), 0) AS holds_version,
       ARRAY(SELECT r.expires_at FROM reservations r
             WHERE r.user_id = CAST(md5(CAST(:u AS text)) AS uuid) AND r.status = 'HELD')
         AS deadlines,
       nextval('reservations_id_seq') AS rid
FROM seats s JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date
WHERE s.concert_id = :concert AND s.date = CAST('2030-01-01' AS date) + CAST(:d AS integer)
  AND s.seat_no = :s \gset
WITH seat AS (
    SELECT 1 FROM seats
    WHERE concert_id = :concert AND date = CAST('2030-01-01' AS date) + CAST(:d AS integer)
      AND seat_no = :s AND version = :seat_version
    FOR UPDATE
), holder AS (
    INSERT INTO user_holds AS h (user_id, version)
    SELECT CAST(md5(CAST(:u AS text)) AS uuid), :holds_version + 1 FROM seat
    ON CONFLICT (user_id) DO UPDATE SET version = h.version + 1 WHERE h.version = :holds_version
    RETURNING 1
), claimed AS (
    UPDATE seats SET held_by_reservation = :rid,
                     held_by_user = CAST(md5(CAST(:u AS text)) AS uuid), held_until = now(),
                     sold_to_user = NULL, sold_reservation = NULL, version = version + 1
    WHERE concert_id = :concert AND date = CAST('2030-01-01' AS date) + CAST(:d AS integer)
      AND seat_no = :s AND version = :seat_version AND EXISTS (SELECT 1 FROM holder)
    RETURNING 1
), inserted AS (
    INSERT INTO reservations (id, user_id, concert_id, date, seat_no, price, status, expires_at,
                              created_at, updated_at)
    SELECT :rid, CAST(md5(CAST(:u AS text)) AS uuid), :concert,
           CAST('2030-01-01' AS date) + CAST(:d AS integer), :s, :price, 'HELD', now(), now(), now()
    FROM claimed
    RETURNING 1
), replaced AS (
    UPDATE reservations SET status = 'EXPIRED', updated_at = now(), version = version + 1
    WHERE id = (SELECT id FROM reservations WHERE id = :replaced FOR UPDATE SKIP LOCKED)
      AND EXISTS (SELECT 1 FROM claimed)
)
SELECT EXISTS (SELECT 1 FROM inserted) AS written;
