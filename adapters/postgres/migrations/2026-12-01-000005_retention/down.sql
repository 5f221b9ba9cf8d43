DROP INDEX queue_tickets_ended;
DROP INDEX idempotency_keys_by_age;
