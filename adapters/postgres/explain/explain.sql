-- The hot queries of docs/DATABASE.md §7, as the repositories send them (literals for binds).
\pset pager off
\echo '### seat list (available_seats)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT seats.seat_no, concert_dates.price, concert_dates.seat_count
FROM seats INNER JOIN concert_dates
  ON concert_dates.concert_id = seats.concert_id AND concert_dates.date = seats.date
WHERE seats.concert_id = 42 AND seats.date = '2030-06-11'
  AND seats.sold_to_user IS NULL
  AND (seats.held_until IS NULL OR seats.held_until <= '2030-06-01 12:00Z')
ORDER BY seats.seat_no;

\echo '### available dates (available_dates)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT seats.date, count(*) FROM seats
WHERE seats.concert_id = 42 AND seats.date >= '2030-06-01'
  AND seats.sold_to_user IS NULL
  AND (seats.held_until IS NULL OR seats.held_until <= '2030-06-01 12:00Z')
GROUP BY seats.date ORDER BY seats.date;

\echo '### live hold count of one user (hold, under the user lock)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT count(*) FROM reservations
WHERE reservations.user_id = '00000000-0000-0000-0000-0000000000aa'
  AND reservations.status = 'HELD' AND reservations.expires_at > '2030-06-01 12:00Z';

\echo '### the hold claim: one conditional UPDATE'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
UPDATE seats SET held_by_reservation = 1, held_by_user = '00000000-0000-0000-0000-0000000000bb',
                 held_until = '2030-06-01 12:05Z'
WHERE seats.concert_id = 42 AND seats.date = '2030-06-11' AND seats.seat_no = 7
  AND seats.sold_to_user IS NULL
  AND (seats.held_until IS NULL OR seats.held_until <= '2030-06-01 12:00Z');
ROLLBACK;

\echo '### the lapsed reservation of a re-held seat (hold tidy-up)'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
UPDATE reservations SET status = 'EXPIRED', updated_at = '2030-06-01 12:00Z'
WHERE id IN (SELECT id FROM reservations
             WHERE concert_id = 2 AND date = '2030-06-10' AND seat_no = 98
               AND status = 'HELD' AND expires_at <= '2030-06-01 12:00Z' AND id <> 0
             FOR UPDATE SKIP LOCKED);
ROLLBACK;

\echo '### live holds of the whole deployment (seat_holds_live gauge)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT count(*) FROM reservations
WHERE reservations.status = 'HELD' AND reservations.expires_at > '2030-06-01 12:00Z';

\echo '### sweeper batch'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
WITH lapsed AS (
    SELECT id FROM reservations WHERE status = 'HELD' AND expires_at <= '2030-06-01 12:00Z'
    ORDER BY expires_at LIMIT 100 FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE reservations r SET status = 'EXPIRED', updated_at = '2030-06-01 12:00Z'
    FROM lapsed WHERE r.id = lapsed.id RETURNING r.id, r.concert_id, r.date, r.seat_no
), released AS (
    UPDATE seats s SET held_by_reservation = NULL, held_by_user = NULL, held_until = NULL
    FROM expired e WHERE s.concert_id = e.concert_id AND s.date = e.date
      AND s.seat_no = e.seat_no AND s.held_by_reservation = e.id RETURNING 1
)
SELECT count(*) AS expired FROM expired;
ROLLBACK;

\echo '### ticket lookup by number (authorize, status)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT ticket, user_id, status, issued_at, active_until, last_seen
FROM queue_tickets WHERE queue_tickets.ticket = 600000;

\echo '### a user''s live ticket (issue, under the user lock)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT ticket, user_id, status, issued_at, active_until, last_seen
FROM queue_tickets
WHERE queue_tickets.user_id = md5('q600000')::uuid
  AND queue_tickets.status = ANY (ARRAY['WAITING', 'ACTIVE']) LIMIT 1;

\echo '### admission: expire active tickets past a deadline'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
UPDATE queue_tickets SET status = 'EXPIRED', ended_at = '2030-06-01 12:00Z'
WHERE queue_tickets.status = 'ACTIVE'
  AND (queue_tickets.active_until <= '2030-06-01 12:00Z' OR queue_tickets.last_seen <= '2030-06-01 11:58Z');
ROLLBACK;

\echo '### admission: active count'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT count(*) FROM queue_tickets WHERE queue_tickets.status = 'ACTIVE';

\echo '### admission: tickets issued since the last step'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT count(*) AS count, max(ticket) AS max FROM queue_tickets WHERE ticket > 999900;

\echo '### admission: admit the oldest 100 waiting tickets'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
UPDATE queue_tickets
SET status = 'ACTIVE', admitted_at = '2030-06-01 12:00Z', active_until = '2030-06-01 12:10Z',
    last_seen = '2030-06-01 12:00Z'
WHERE ticket IN (SELECT ticket FROM queue_tickets WHERE status = 'WAITING'
                 ORDER BY ticket LIMIT 100 FOR UPDATE)
RETURNING ticket;
ROLLBACK;

\echo '### queue snapshot'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT s.serving, s.admitted_total,
       s.issued_total - s.admitted_total
         + (SELECT count(*) FROM queue_tickets t WHERE t.ticket > s.issued_hwm) AS waiting,
       (SELECT count(*) FROM queue_tickets t WHERE t.status = 'ACTIVE') AS active
FROM queue_state s WHERE s.id = 1;

\echo '### point history page'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)
SELECT id, kind, amount, balance_after, at FROM ledger_entries
WHERE ledger_entries.user_id = md5('w77')::uuid AND ledger_entries.id < 200000
ORDER BY ledger_entries.id DESC LIMIT 50;
