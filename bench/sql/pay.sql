-- Raw limit of POST /v1/payments with an Idempotency-Key: the statements of the payment
-- transaction (adapters/postgres/src/payment.rs) in one transaction, each paying the next of the
-- held reservations prepared in bench_pay (its user has the points and an ACTIVE ticket):
-- key lock and lookup, reservation lock, wallet upsert, guarded debit, seat sale, reservation
-- CONFIRMED, ledger entry, payment, ticket EXPIRED, key row.
BEGIN;
SELECT r.id AS rid, r.user_id AS uid, r.price AS price, r.concert_id AS cid, r.date AS d,
       r.seat_no AS s, b.ticket AS ticket
FROM bench_pay b JOIN reservations r ON r.id = b.reservation
WHERE b.n = (SELECT nextval('bench_pay_seq'))
FOR NO KEY UPDATE OF r \gset
SELECT pg_try_advisory_xact_lock(1129512963, hashtext(CAST(:uid AS text) || ' payment pay-' || CAST(:rid AS text)));
SELECT count(*) FROM idempotency_keys
WHERE user_id = CAST(:uid AS uuid) AND scope = 'payment' AND key = 'pay-' || CAST(:rid AS text);
INSERT INTO wallets (user_id, balance, updated_at) VALUES (CAST(:uid AS uuid), 0, now())
ON CONFLICT DO NOTHING;
UPDATE wallets SET balance = balance - :price, updated_at = now()
WHERE user_id = CAST(:uid AS uuid) AND balance >= :price
RETURNING balance \gset
UPDATE seats SET sold_to_user = CAST(:uid AS uuid), sold_reservation = :rid,
                 held_by_reservation = NULL, held_by_user = NULL, held_until = NULL
WHERE concert_id = :cid AND date = CAST(:d AS date) AND seat_no = :s
  AND held_by_reservation = :rid AND held_until > now();
UPDATE reservations SET status = 'CONFIRMED', updated_at = now() WHERE id = :rid;
INSERT INTO ledger_entries (user_id, kind, amount, balance_after, at)
VALUES (CAST(:uid AS uuid), 'PAYMENT', -CAST(:price AS bigint), :balance, now())
RETURNING id AS entry \gset
INSERT INTO payments (reservation_id, user_id, amount, ledger_entry_id, paid_at)
VALUES (:rid, CAST(:uid AS uuid), :price, :entry, now())
RETURNING id AS payment \gset
UPDATE queue_tickets SET status = 'EXPIRED', ended_at = now()
WHERE ticket = :ticket AND user_id = CAST(:uid AS uuid) AND status = 'ACTIVE';
INSERT INTO idempotency_keys (user_id, scope, key, request_hash, ledger_entry_id, payment_id,
                              created_at)
VALUES (CAST(:uid AS uuid), 'payment', 'pay-' || CAST(:rid AS text), 'reservationId=' || CAST(:rid AS text), :entry, :payment, now())
ON CONFLICT DO NOTHING;
END;
