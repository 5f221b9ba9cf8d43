-- Blocks of ticket numbers leased to a line kept outside this database (the line on Redis,
-- docs/REDIS.md §3): a row per block handed out, for good, so that a line store that lost its
-- data starts after every block it ever drew from.
CREATE TABLE ticket_blocks (
    line      integer     NOT NULL CHECK (line BETWEEN 0 AND 4194303),
    block     integer     NOT NULL CHECK (block >= 0),
    leased_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (line, block)
);
