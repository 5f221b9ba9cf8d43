DROP TABLE ticket_blocks;
