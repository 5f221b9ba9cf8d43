-- Keys a deployment generates for itself when none is configured (src/keys.rs): the first
-- instance to start inserts one, every other instance reads that same row.
CREATE TABLE deployment_keys (
    name       text        PRIMARY KEY,
    secret     bytea       NOT NULL CHECK (octet_length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
