-- Points: one wallet row per user, an append-only ledger, payments and idempotency keys.

-- A wallet exists from a user's first use. The CHECK is the last line of defence: every debit is
-- already conditional (`balance >= price`), so a negative balance can never be committed.
CREATE TABLE wallets (
    user_id    uuid        PRIMARY KEY,
    balance    bigint      NOT NULL CHECK (balance >= 0),
    updated_at timestamptz NOT NULL
) WITH (fillfactor = 80);

-- Exactly one entry per change of a balance, written in the same transaction as the change.
CREATE TABLE ledger_entries (
    id            bigserial   PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES wallets (user_id),
    kind          text        NOT NULL CHECK (kind IN ('CHARGE', 'PAYMENT')),
    amount        bigint      NOT NULL,
    balance_after bigint      NOT NULL CHECK (balance_after >= 0),
    at            timestamptz NOT NULL,
    CONSTRAINT ledger_entries_sign_matches_kind
        CHECK ((kind = 'CHARGE' AND amount > 0) OR (kind = 'PAYMENT' AND amount <= 0))
);

-- History pages: newest first for one user, `id < before`.
CREATE INDEX ledger_entries_by_user ON ledger_entries (user_id, id DESC);

CREATE TABLE payments (
    id              bigserial   PRIMARY KEY,
    reservation_id  bigint      NOT NULL UNIQUE REFERENCES reservations (id),
    user_id         uuid        NOT NULL,
    amount          bigint      NOT NULL CHECK (amount >= 0),
    ledger_entry_id bigint      NOT NULL UNIQUE REFERENCES ledger_entries (id),
    paid_at         timestamptz NOT NULL
);

-- The first successful answer of an idempotent request, rebuilt from the rows it points at: a
-- charge answers the entry's `balance_after`, a payment its payment row and the entry's
-- `balance_after`. Written last in the effect's own transaction, so it exists iff the effect does.
CREATE TABLE idempotency_keys (
    user_id         uuid        NOT NULL,
    scope           text        NOT NULL CHECK (scope IN ('charge', 'payment')),
    key             text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 64),
    request_hash    text        NOT NULL,
    ledger_entry_id bigint      NOT NULL REFERENCES ledger_entries (id),
    payment_id      bigint      REFERENCES payments (id),
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, scope, key),
    CONSTRAINT idempotency_keys_payment_iff_payment_scope
        CHECK ((scope = 'payment') = (payment_id IS NOT NULL))
);
