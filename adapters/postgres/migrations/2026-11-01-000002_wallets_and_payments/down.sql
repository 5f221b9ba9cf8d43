DROP TABLE idempotency_keys;
DROP TABLE payments;
DROP TABLE ledger_entries;
DROP TABLE wallets;
