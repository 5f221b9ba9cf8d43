-- Ticket ends that payments decided and the line has not applied yet, when the line is kept in
-- another store than payments (docs/DATABASE.md §5.13). A payment writes its row in its own
-- statement; the relay ends the ticket on the line, then deletes the row. One row per ticket
-- number: a later payment of the same number replaces the row (the newest end is the one the
-- number can still concern).
CREATE TABLE ticket_end_outbox (
    ticket     bigint      PRIMARY KEY,
    payer      uuid        NOT NULL,
    read_as    text        NOT NULL CHECK (read_as IN ('WAITING', 'ACTIVE')),
    reason     text        NOT NULL
        CHECK (reason IN ('PAID', 'ACTIVE_TIME_OVER', 'IDLE', 'REVOKED', 'LEFT')),
    written_at timestamptz NOT NULL
);

-- The relay reads the oldest rows first.
CREATE INDEX ticket_end_outbox_by_age ON ticket_end_outbox (written_at, ticket);
