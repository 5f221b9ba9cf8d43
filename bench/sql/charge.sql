-- Raw limit of POST /v1/users/{userId}/points/charge with an Idempotency-Key: the statements of
-- the charge transaction (adapters/postgres/src/wallet.rs and idempotency.rs) in one transaction:
-- key lock, key lookup, wallet upsert, guarded credit, ledger entry, key row.
-- Variables: :users (wallets to spread over).
\set u random(1, :users)
\set k random(1, 1000000000000)
BEGIN;
SELECT pg_try_advisory_xact_lock(1129512963, hashtext(md5('c' || CAST(:u AS text)) || ' charge ' || CAST(:k AS text)));
SELECT count(*) FROM idempotency_keys
WHERE user_id = md5('c' || CAST(:u AS text))::uuid AND scope = 'charge' AND key = 'pg-' || CAST(:k AS text);
INSERT INTO wallets (user_id, balance, updated_at) VALUES (md5('c' || CAST(:u AS text))::uuid, 0, now())
ON CONFLICT DO NOTHING;
UPDATE wallets SET balance = balance + 1000, updated_at = now()
WHERE user_id = md5('c' || CAST(:u AS text))::uuid AND balance <= 999999000
RETURNING balance \gset
INSERT INTO ledger_entries (user_id, kind, amount, balance_after, at)
VALUES (md5('c' || CAST(:u AS text))::uuid, 'CHARGE', 1000, :balance, now())
RETURNING id AS entry \gset
INSERT INTO idempotency_keys (user_id, scope, key, request_hash, ledger_entry_id, created_at)
VALUES (md5('c' || CAST(:u AS text))::uuid, 'charge', 'pg-' || CAST(:k AS text), 'amount=1000', :entry, now())
ON CONFLICT DO NOTHING;
END;
