-- Raw limit of POST /v1/reservations on distinct seats: the conditional claim UPDATE alone
-- (adapters/postgres/src/reservation.rs, step 4), on a random seat of :dates x 1000 seats. The
-- hold it writes lapses at once (held_until = now()), so the next claim of that seat matches again:
-- every transaction finds, locks, re-checks and writes one row, and fires the FK trigger.
-- Variables: :concert, :dates, :reservation (an existing reservation id).
\set n random(0, :dates * 1000 - 1)
\set d :n / 1000
\set s :n % 1000 + 1
UPDATE seats SET held_by_reservation = :reservation,
                 held_by_user = '00000000-0000-0000-0000-00000000b0b0',
                 held_until = now()
WHERE concert_id = :concert AND date = CAST('2030-01-01' AS date) + CAST(:d AS integer) AND seat_no = :s
  AND sold_to_user IS NULL
  AND (held_until IS NULL OR held_until <= now());
