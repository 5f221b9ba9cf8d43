//! Integration tests of the PostgreSQL adapter against a real server: every test gets a fresh
//! database cloned from the migrated template (`TestDatabase`). Races run many tokio tasks, each
//! on its own pooled connection, released together by a barrier, and assert exact counts.

mod support;

mod clock;
mod commit_failures;
mod contract;
mod queue;
mod startup;
mod ticket_blocks;
mod ticket_end_outbox;
mod transient;
