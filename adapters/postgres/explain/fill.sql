-- Fills a database cloned from the test template with realistic volumes for docs/DATABASE.md §7.
-- psql -d <db> -f fill.sql, then psql -d <db> -f explain.sql
\set ON_ERROR_STOP on
\timing off
-- Catalog: 100 concerts x 4 dates x 500 seats = 200,000 seats.
INSERT INTO concerts (title) SELECT 'Concert ' || g FROM generate_series(1, 100) g;
INSERT INTO concert_dates (concert_id, date, price, seat_count)
SELECT c.id, date '2030-06-10' + d, 120000, 500 FROM concerts c, generate_series(0, 3) d;
INSERT INTO seats (concert_id, date, seat_no)
SELECT concert_id, date, n FROM concert_dates, generate_series(1, 500) n ORDER BY concert_id, date, n;

-- 40,000 sold seats (every 5th), each with its CONFIRMED reservation.
CREATE TEMP TABLE sold AS
SELECT nextval('reservations_id_seq') AS id, md5('u' || (seat_no * 7919 + concert_id * 13 + (date - date '2030-06-10')))::uuid AS user_id,
       concert_id, date, seat_no
FROM seats WHERE seat_no % 5 = 0;
INSERT INTO reservations (id, user_id, concert_id, date, seat_no, price, status, expires_at, created_at, updated_at)
SELECT id, user_id, concert_id, date, seat_no, 120000, 'CONFIRMED', timestamptz '2030-05-31 12:05Z', timestamptz '2030-05-31 12:00Z', timestamptz '2030-05-31 12:01Z' FROM sold;
UPDATE seats s SET sold_to_user = sold.user_id, sold_reservation = sold.id
FROM sold WHERE (s.concert_id, s.date, s.seat_no) = (sold.concert_id, sold.date, sold.seat_no);

-- 200,000 lapsed holds already swept (EXPIRED) and 20,000 cancelled ones: history.
INSERT INTO reservations (user_id, concert_id, date, seat_no, price, status, expires_at, created_at, updated_at)
SELECT md5('h' || (g % 50000))::uuid, 1 + g % 100, date '2030-06-10' + (g % 4), 1 + (g * 7) % 500, 120000,
       CASE WHEN g % 11 = 0 THEN 'CANCELLED' ELSE 'EXPIRED' END,
       timestamptz '2030-05-01 00:00Z' + g * interval '10 seconds', timestamptz '2030-05-01 00:00Z', timestamptz '2030-05-01 00:00Z'
FROM generate_series(1, 220000) g
WHERE (1 + (g * 7) % 500) % 5 <> 0;

-- ~2,000 live holds (seat_no % 97 = 1), 4 of them by the user whose limit is counted below,
-- and 500 lapsed holds not yet swept.
CREATE TEMP TABLE held AS
SELECT nextval('reservations_id_seq') AS id,
       CASE WHEN row_number() OVER () <= 4 THEN '00000000-0000-0000-0000-0000000000aa'::uuid
            ELSE md5('l' || seat_no || concert_id || date)::uuid END AS user_id,
       concert_id, date, seat_no,
       CASE WHEN seat_no = 98 AND concert_id % 2 = 0 THEN timestamptz '2030-06-01 11:58Z'
            ELSE timestamptz '2030-06-01 12:03Z' END AS until
FROM seats WHERE seat_no % 97 = 1 AND sold_to_user IS NULL;
INSERT INTO reservations (id, user_id, concert_id, date, seat_no, price, status, expires_at, created_at, updated_at)
SELECT id, user_id, concert_id, date, seat_no, 120000, 'HELD', until, until - interval '5 minutes', until - interval '5 minutes' FROM held;
UPDATE seats s SET held_by_reservation = held.id, held_by_user = held.user_id, held_until = held.until
FROM held WHERE (s.concert_id, s.date, s.seat_no) = (held.concert_id, held.date, held.seat_no);

-- Points: 50,000 wallets, 250,000 ledger entries.
INSERT INTO wallets (user_id, balance, updated_at)
SELECT md5('w' || g)::uuid, 1000000, timestamptz '2030-06-01 11:00Z' FROM generate_series(1, 50000) g;
INSERT INTO ledger_entries (user_id, kind, amount, balance_after, at)
SELECT md5('w' || (1 + g % 50000))::uuid, 'CHARGE', 1000, 1000 * (1 + g / 50000), timestamptz '2030-06-01 00:00Z' + g * interval '1 second'
FROM generate_series(0, 249999) g;

-- The queue: 1,000,000 tickets: 50,000 ended, 1,000 active, 949,000 waiting.
INSERT INTO queue_tickets (ticket, user_id, status, issued_at, admitted_at, active_until, last_seen, ended_at)
SELECT g, md5('q' || g)::uuid,
       CASE WHEN g <= 50000 THEN 'EXPIRED' WHEN g <= 51000 THEN 'ACTIVE' ELSE 'WAITING' END,
       timestamptz '2030-06-01 10:00Z',
       CASE WHEN g <= 51000 THEN timestamptz '2030-06-01 11:55Z' END,
       CASE WHEN g <= 51000 THEN timestamptz '2030-06-01 12:05Z' END,
       CASE WHEN g <= 51000 THEN timestamptz '2030-06-01 11:59Z' END,
       CASE WHEN g <= 50000 THEN timestamptz '2030-06-01 11:56Z' END
FROM generate_series(1, 1000000) g;
SELECT setval('queue_tickets_ticket_seq', 1000000);
UPDATE queue_state SET serving = 51000, admitted_total = 51000, issued_total = 1000000, issued_hwm = 1000000;
VACUUM ANALYZE;
