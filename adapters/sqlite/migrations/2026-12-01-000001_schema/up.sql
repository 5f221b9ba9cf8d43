-- The whole schema of the embedded store, the same tables and invariants as PostgreSQL's
-- (adapters/postgres/migrations), in SQLite's terms:
--   * STRICT tables: a value of the wrong type is refused, as PostgreSQL would.
--   * Instants are INTEGER microseconds since the Unix epoch, UTC (PostgreSQL's precision);
--     dates are TEXT 'YYYY-MM-DD'; user ids are TEXT (the hyphenated UUID); booleans INTEGER 0/1.
--   * Sequences are rows of `counters`, advanced inside the writing transaction, so a number is
--     drawn only by a transaction that commits (no gaps).

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL CHECK (value >= 0)
) STRICT;

CREATE TABLE concerts (
    id         INTEGER PRIMARY KEY,
    title      TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE concert_dates (
    concert_id INTEGER NOT NULL REFERENCES concerts (id),
    date       TEXT NOT NULL,
    price      INTEGER NOT NULL CHECK (price >= 0),
    seat_count INTEGER NOT NULL CHECK (seat_count BETWEEN 1 AND 1000),
    PRIMARY KEY (concert_id, date)
) STRICT;

CREATE TABLE seats (
    concert_id          INTEGER NOT NULL,
    date                TEXT NOT NULL,
    seat_no             INTEGER NOT NULL CHECK (seat_no BETWEEN 1 AND 1000),
    held_by_reservation INTEGER,
    held_by_user        TEXT,
    held_until          INTEGER,
    sold_to_user        TEXT,
    sold_reservation    INTEGER UNIQUE,
    version             INTEGER NOT NULL DEFAULT 1 CHECK (version > 0),
    PRIMARY KEY (concert_id, date, seat_no),
    FOREIGN KEY (concert_id, date) REFERENCES concert_dates (concert_id, date),
    CHECK ((held_by_reservation IS NULL) = (held_by_user IS NULL)
       AND (held_by_user IS NULL) = (held_until IS NULL)),
    CHECK ((sold_to_user IS NULL) = (sold_reservation IS NULL)),
    CHECK (sold_to_user IS NULL OR held_by_reservation IS NULL)
) STRICT;

CREATE TABLE reservations (
    id         INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL,
    concert_id INTEGER NOT NULL,
    date       TEXT NOT NULL,
    seat_no    INTEGER NOT NULL,
    price      INTEGER NOT NULL CHECK (price >= 0),
    status     TEXT NOT NULL CHECK (status IN ('HELD', 'CONFIRMED', 'EXPIRED', 'CANCELLED')),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1 CHECK (version > 0),
    FOREIGN KEY (concert_id, date, seat_no) REFERENCES seats (concert_id, date, seat_no)
) STRICT;
CREATE INDEX reservations_held_by_expiry ON reservations (expires_at) WHERE status = 'HELD';
CREATE INDEX reservations_held_by_seat ON reservations (concert_id, date, seat_no)
    WHERE status = 'HELD';
CREATE INDEX reservations_held_by_user ON reservations (user_id, expires_at) WHERE status = 'HELD';
CREATE UNIQUE INDEX reservations_seat_sold_once ON reservations (concert_id, date, seat_no)
    WHERE status = 'CONFIRMED';

-- The version of a user's set of holds: guards the hold limit.
CREATE TABLE user_holds (
    user_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL CHECK (version > 0)
) STRICT;

CREATE TABLE wallets (
    user_id    TEXT PRIMARY KEY,
    balance    INTEGER NOT NULL CHECK (balance >= 0),
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL DEFAULT 1 CHECK (version > 0)
) STRICT;

CREATE TABLE ledger_entries (
    id            INTEGER PRIMARY KEY,
    user_id       TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('CHARGE', 'PAYMENT')),
    amount        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    at            INTEGER NOT NULL,
    CHECK ((kind = 'CHARGE' AND amount > 0) OR (kind = 'PAYMENT' AND amount <= 0))
) STRICT;
CREATE INDEX ledger_entries_by_user ON ledger_entries (user_id, id DESC);

CREATE TABLE payments (
    id              INTEGER PRIMARY KEY,
    reservation_id  INTEGER NOT NULL UNIQUE REFERENCES reservations (id),
    user_id         TEXT NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount >= 0),
    ledger_entry_id INTEGER NOT NULL UNIQUE REFERENCES ledger_entries (id),
    paid_at         INTEGER NOT NULL
) STRICT;

CREATE TABLE idempotency_keys (
    user_id         TEXT NOT NULL,
    scope           TEXT NOT NULL CHECK (scope IN ('charge', 'payment')),
    key             TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 64),
    request_hash    TEXT NOT NULL,
    ledger_entry_id INTEGER NOT NULL REFERENCES ledger_entries (id),
    payment_id      INTEGER REFERENCES payments (id),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, scope, key),
    CHECK ((scope = 'payment') = (payment_id IS NOT NULL))
) STRICT;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE deployment_keys (
    name       TEXT PRIMARY KEY,
    secret     BLOB NOT NULL CHECK (length(secret) >= 32),
    created_at INTEGER NOT NULL
) STRICT;

-- Waiting rooms; the default room (line 0) is created by the service at start-up.
CREATE TABLE rooms (
    room_id              TEXT PRIMARY KEY CHECK (length(room_id) BETWEEN 1 AND 64),
    line                 INTEGER NOT NULL UNIQUE CHECK (line BETWEEN 0 AND 4194303),
    max_active           INTEGER NOT NULL CHECK (max_active BETWEEN 1 AND 1000000),
    state                TEXT NOT NULL CHECK (state IN ('OPEN', 'PAUSED', 'CLOSED')),
    version              INTEGER NOT NULL DEFAULT 1 CHECK (version > 0),
    updated_at           INTEGER NOT NULL,
    admit_per_minute     INTEGER CHECK (admit_per_minute BETWEEN 1 AND 1000000),
    waiting_idle_seconds INTEGER CHECK (waiting_idle_seconds BETWEEN 5 AND 86400),
    waiting_idle_since   INTEGER,
    opens_at             INTEGER,
    shuffle_at_open      INTEGER NOT NULL DEFAULT 0 CHECK (shuffle_at_open IN (0, 1)),
    opened               INTEGER NOT NULL DEFAULT 0 CHECK (opened IN (0, 1)),
    CHECK ((waiting_idle_seconds IS NULL) = (waiting_idle_since IS NULL))
) STRICT;

CREATE TABLE room_concerts (
    concert_id INTEGER PRIMARY KEY REFERENCES concerts (id),
    room_id    TEXT NOT NULL REFERENCES rooms (room_id)
) STRICT;
CREATE INDEX room_concerts_by_room ON room_concerts (room_id);

-- One row per line: its serving counter and figures.
CREATE TABLE queue_state (
    line                INTEGER PRIMARY KEY CHECK (line BETWEEN 0 AND 4194303),
    serving             INTEGER NOT NULL DEFAULT 0 CHECK (serving >= 0),
    admitted_total      INTEGER NOT NULL DEFAULT 0 CHECK (admitted_total >= 0),
    issued_total        INTEGER NOT NULL DEFAULT 0,
    issued_hwm          INTEGER NOT NULL DEFAULT 0 CHECK (issued_hwm >= 0),
    ended_waiting_total INTEGER NOT NULL DEFAULT 0 CHECK (ended_waiting_total >= 0),
    pace_credit_millis  INTEGER NOT NULL DEFAULT 0,
    pace_at             INTEGER,
    CHECK (issued_total >= admitted_total)
) STRICT;

CREATE TABLE queue_tickets (
    ticket       INTEGER PRIMARY KEY,
    user_id      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('WAITING', 'ACTIVE', 'EXPIRED')),
    issued_at    INTEGER NOT NULL,
    admitted_at  INTEGER,
    active_until INTEGER,
    last_seen    INTEGER,
    ended_at     INTEGER,
    end_reason   TEXT CHECK (end_reason IN ('PAID', 'ACTIVE_TIME_OVER', 'IDLE', 'REVOKED', 'LEFT')),
    CHECK (status <> 'ACTIVE' OR (admitted_at IS NOT NULL AND active_until IS NOT NULL
                                  AND last_seen IS NOT NULL AND ended_at IS NULL)),
    CHECK (status <> 'EXPIRED' OR ended_at IS NOT NULL),
    CHECK (status = 'EXPIRED' OR end_reason IS NULL),
    CHECK (status <> 'WAITING' OR (admitted_at IS NULL AND ended_at IS NULL))
) STRICT;
CREATE UNIQUE INDEX queue_tickets_one_live_per_user ON queue_tickets (user_id, (ticket >> 40))
    WHERE status IN ('WAITING', 'ACTIVE');
CREATE INDEX queue_tickets_waiting ON queue_tickets (ticket) WHERE status = 'WAITING';
CREATE INDEX queue_tickets_active ON queue_tickets (ticket) WHERE status = 'ACTIVE';
CREATE INDEX queue_tickets_admitted_at ON queue_tickets (admitted_at)
    WHERE admitted_at IS NOT NULL;
CREATE INDEX queue_tickets_ended ON queue_tickets (ended_at) WHERE status = 'EXPIRED';
CREATE INDEX queue_tickets_ended_waiting ON queue_tickets (ticket)
    WHERE status = 'EXPIRED' AND admitted_at IS NULL;

-- The version of a user's place in a line: guards one live place per user and line.
CREATE TABLE queue_members (
    user_id TEXT NOT NULL,
    line    INTEGER NOT NULL,
    version INTEGER NOT NULL CHECK (version > 0),
    PRIMARY KEY (user_id, line)
) STRICT;

CREATE TABLE pre_queue (
    entry      INTEGER PRIMARY KEY,
    line       INTEGER NOT NULL,
    user_id    TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    ticket     INTEGER UNIQUE,
    ended_at   INTEGER,
    end_reason TEXT CHECK (end_reason IN ('REVOKED', 'LEFT')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    CHECK (ticket IS NULL OR ended_at IS NULL)
) STRICT;
CREATE UNIQUE INDEX pre_queue_one_per_user ON pre_queue (line, user_id) WHERE ended_at IS NULL;
CREATE INDEX pre_queue_waiting ON pre_queue (line, entry)
    WHERE ticket IS NULL AND ended_at IS NULL;

-- The default room's line exists from the start, as on PostgreSQL.
INSERT INTO queue_state (line) VALUES (0);
