DROP TABLE pre_queue;
DROP SEQUENCE pre_queue_entries_seq;
