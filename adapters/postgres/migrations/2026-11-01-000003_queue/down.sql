DROP TABLE queue_state;
DROP TABLE queue_tickets;
