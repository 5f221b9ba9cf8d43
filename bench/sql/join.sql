-- Raw limit of POST /v1/queue/tokens by new users: the bare ticket INSERT (a number from the
-- sequence, a new user id), with no check of a live ticket and no lock.
INSERT INTO queue_tickets (user_id, status, issued_at)
VALUES (gen_random_uuid(), 'WAITING', now());
