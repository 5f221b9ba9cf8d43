DROP TABLE ticket_end_outbox;
