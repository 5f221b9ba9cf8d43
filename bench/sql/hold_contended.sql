-- Raw limit of POST /v1/reservations under contention: the same conditional claim UPDATE aimed
-- at 8 seats that are held (until far in the future), so it matches no row, as almost every
-- contended service request does once the first 8 holds won.
-- Variables: :concert.
\set s random(1, 8)
UPDATE seats SET held_by_reservation = 1,
                 held_by_user = '00000000-0000-0000-0000-00000000b0b0',
                 held_until = now()
WHERE concert_id = :concert AND date = CAST('2030-01-01' AS date) AND seat_no = :s
  AND sold_to_user IS NULL
  AND (held_until IS NULL OR held_until <= now());
