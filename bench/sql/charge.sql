-- Raw limit of POST /v1/users/{userId}/points/charge with an Idempotency-Key: the service's own
-- statements (application/src/idempotency.rs, adapters/postgres/src/wallet.rs): the key lookup,
-- the wallet's load, then one statement that compare-and-sets the wallet over the version read
-- and inserts the ledger entry and the key row.
-- Variables: :users (wallets to spread over).
\set u random(1, :users)
\set k random(1, 1000000000000)
SELECT count(*) FROM idempotency_keys
WHERE user_id = md5('c' || CAST(:u AS text))::uuid AND scope = 'charge' AND key = 'pg-' || CAST(:k AS text);
SELECT COALESCE(w.balance, 0) + 1000 AS balance, COALESCE(w.version, 0) AS version
FROM (SELECT 1) AS one LEFT JOIN wallets w ON w.user_id = md5('c' || CAST(:u AS text))::uuid \gset
WITH wallet AS (
    INSERT INTO wallets AS w (user_id, balance, updated_at)
    SELECT md5('c' || CAST(:u AS text))::uuid, :balance, now()
    ON CONFLICT (user_id) DO UPDATE
        SET balance = EXCLUDED.balance, updated_at = EXCLUDED.updated_at, version = w.version + 1
        WHERE w.version = :version
    RETURNING 1
), entry AS (
    INSERT INTO ledger_entries (user_id, kind, amount, balance_after, at)
    SELECT md5('c' || CAST(:u AS text))::uuid, 'CHARGE', 1000, :balance, now() FROM wallet
    RETURNING id
), key AS (
    INSERT INTO idempotency_keys (user_id, scope, key, request_hash, ledger_entry_id, created_at)
    SELECT md5('c' || CAST(:u AS text))::uuid, 'charge', 'pg-' || CAST(:k AS text), 'amount=1000',
           entry.id, now()
    FROM entry
)
SELECT EXISTS (SELECT 1 FROM entry) AS written;
