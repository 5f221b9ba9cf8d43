-- Waiting rooms' settings, kept here so that every instance follows an operator's change. The
-- server creates the `default` room at start when it is missing, with QUEUE_MAX_ACTIVE.
CREATE TABLE rooms (
    room_id    text        PRIMARY KEY CHECK (room_id ~ '^[a-z0-9-]{1,64}$'),
    max_active integer     NOT NULL CHECK (max_active BETWEEN 1 AND 1000000),
    state      text        NOT NULL CHECK (state IN ('OPEN', 'PAUSED', 'CLOSED')),
    version    bigint      NOT NULL DEFAULT 1 CHECK (version > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
