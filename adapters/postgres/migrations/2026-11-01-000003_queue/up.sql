-- The waiting line: one row per ticket, numbered by a sequence in arrival order, and one row of
-- counters that the admission step moves forward.

CREATE TABLE queue_tickets (
    ticket       bigserial   PRIMARY KEY,
    user_id      uuid        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('WAITING', 'ACTIVE', 'EXPIRED')),
    issued_at    timestamptz NOT NULL,
    admitted_at  timestamptz,
    active_until timestamptz,
    last_seen    timestamptz,
    ended_at     timestamptz,
    CONSTRAINT queue_tickets_waiting_not_admitted
        CHECK (status <> 'WAITING' OR (admitted_at IS NULL AND ended_at IS NULL)),
    CONSTRAINT queue_tickets_active_has_deadlines
        CHECK (status <> 'ACTIVE'
               OR (admitted_at IS NOT NULL AND active_until IS NOT NULL AND last_seen IS NOT NULL
                   AND ended_at IS NULL)),
    CONSTRAINT queue_tickets_expired_has_end
        CHECK (status <> 'EXPIRED' OR ended_at IS NOT NULL)
) WITH (fillfactor = 90);

-- One live ticket per user: a racing duplicate cannot be committed.
CREATE UNIQUE INDEX queue_tickets_one_live_per_user
    ON queue_tickets (user_id) WHERE status IN ('WAITING', 'ACTIVE');

-- The admission step: the oldest waiting tickets, in ticket order.
CREATE INDEX queue_tickets_waiting ON queue_tickets (ticket) WHERE status = 'WAITING';

-- The admission step's expiry pass and the active count: at most QUEUE_MAX_ACTIVE rows.
CREATE INDEX queue_tickets_active ON queue_tickets (ticket) WHERE status = 'ACTIVE';

-- Counters, one row. `serving` is the highest ticket admitted so far (position = ticket − serving).
-- `issued_total` counts the tickets with a number up to `issued_hwm`; both are moved by the
-- admission step, which runs while no ticket issue is in flight, so the waiting count is
-- `issued_total + (tickets above issued_hwm) − admitted_total`: a short range scan, never a count
-- of the whole line, and no write to this row on the hot issue path.
CREATE TABLE queue_state (
    id             integer PRIMARY KEY CHECK (id = 1),
    serving        bigint  NOT NULL DEFAULT 0 CHECK (serving >= 0),
    admitted_total bigint  NOT NULL DEFAULT 0 CHECK (admitted_total >= 0),
    issued_total   bigint  NOT NULL DEFAULT 0 CHECK (issued_total >= admitted_total),
    issued_hwm     bigint  NOT NULL DEFAULT 0 CHECK (issued_hwm >= 0)
);

INSERT INTO queue_state (id) VALUES (1);
