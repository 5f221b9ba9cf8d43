-- Raw limit of POST /v1/payments with an Idempotency-Key: the service's own statements
-- (application/src/pay_reservation.rs, adapters/postgres/src/payment.rs), paying the next of the
-- held reservations prepared in bench_pay (its user has the points and an ACTIVE ticket): the
-- key lookup, the token's ticket read, the load of the reservation with its seat and the payer's
-- wallet, then the one payment statement (lock the reservation and seat at the versions read,
-- compare-and-set the wallet, confirm, sell, ledger entry, payment, ticket end, key row).
SELECT b.reservation AS rid, b.ticket AS ticket FROM bench_pay b
WHERE b.n = (SELECT nextval('bench_pay_seq')) \gset
SELECT r.user_id AS uid, r.price AS price, r.version AS rv, s.version AS sv,
       w.balance - r.price AS balance, w.version AS wv
FROM reservations r
JOIN seats s ON s.concert_id = r.concert_id AND s.date = r.date AND s.seat_no = r.seat_no
JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date
LEFT JOIN wallets w ON w.user_id = r.user_id
WHERE r.id = :rid \gset
SELECT count(*) FROM idempotency_keys
WHERE user_id = CAST(:uid AS uuid) AND scope = 'payment' AND key = 'pay-' || CAST(:rid AS text);
SELECT status, last_seen FROM queue_tickets WHERE ticket = :ticket;
WITH locked AS (
    SELECT r.concert_id, r.date, r.seat_no FROM reservations r
    JOIN seats s ON s.concert_id = r.concert_id AND s.date = r.date AND s.seat_no = r.seat_no
    WHERE r.id = :rid AND r.version = :rv AND s.version = :sv
    FOR UPDATE OF r, s
), wallet AS (
    INSERT INTO wallets AS w (user_id, balance, updated_at)
    SELECT CAST(:uid AS uuid), :balance, now() WHERE EXISTS (SELECT 1 FROM locked)
    ON CONFLICT (user_id) DO UPDATE
        SET balance = EXCLUDED.balance, updated_at = EXCLUDED.updated_at, version = w.version + 1
        WHERE w.version = :wv
    RETURNING 1
), entry AS (
    INSERT INTO ledger_entries (user_id, kind, amount, balance_after, at)
    SELECT CAST(:uid AS uuid), 'PAYMENT', -CAST(:price AS bigint), :balance, now() FROM wallet
    RETURNING id
), confirmed AS (
    UPDATE reservations SET status = 'CONFIRMED', updated_at = now(), version = version + 1
    WHERE id = :rid AND EXISTS (SELECT 1 FROM wallet)
), sold AS (
    UPDATE seats s SET held_by_reservation = NULL, held_by_user = NULL, held_until = NULL,
                       sold_to_user = CAST(:uid AS uuid), sold_reservation = :rid,
                       version = s.version + 1
    FROM locked l
    WHERE s.concert_id = l.concert_id AND s.date = l.date AND s.seat_no = l.seat_no
      AND EXISTS (SELECT 1 FROM wallet)
), payment AS (
    INSERT INTO payments (reservation_id, user_id, amount, ledger_entry_id, paid_at)
    SELECT :rid, CAST(:uid AS uuid), :price, entry.id, now() FROM entry
    RETURNING id, paid_at
), ended AS (
    UPDATE queue_tickets SET status = 'EXPIRED', ended_at = now()
    WHERE ticket = :ticket AND user_id = CAST(:uid AS uuid) AND status = 'ACTIVE'
      AND EXISTS (SELECT 1 FROM wallet)
), key AS (
    INSERT INTO idempotency_keys (user_id, scope, key, request_hash, ledger_entry_id, payment_id,
                                  created_at)
    SELECT CAST(:uid AS uuid), 'payment', 'pay-' || CAST(:rid AS text),
           'reservationId=' || CAST(:rid AS text), entry.id, payment.id, now()
    FROM entry, payment
)
SELECT payment.id, payment.paid_at FROM payment;
