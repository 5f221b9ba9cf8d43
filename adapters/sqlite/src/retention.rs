//! `RetentionRepository`: batched deletes of records past their retention. Each statement takes
//! at most `limit` rows, oldest first. PostgreSQL's purges skip rows another instance is
//! purging; here one writer runs at a time, so a purge simply finds what an earlier one left.

use std::sync::LazyLock;

use async_trait::async_trait;
use concert_application::ports::{RepositoryError, RetentionRepository};
use concert_domain::TicketStatus;
use diesel::RunQueryDsl;
use diesel::sql_types::BigInt;
use time::OffsetDateTime;

use crate::columns::micros;
use crate::error::from_diesel;
use crate::store::SqliteStore;

#[derive(Debug, Clone)]
pub struct SqliteRetentionRepository {
    store: SqliteStore,
}

impl SqliteRetentionRepository {
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }

    async fn delete(
        &self,
        sql: &'static str,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        let before = micros(before);
        let deleted = self
            .store
            .write(move |conn| {
                diesel::sql_query(sql)
                    .bind::<BigInt, _>(before)
                    .bind::<BigInt, _>(i64::from(limit))
                    .execute(conn)
                    .map_err(from_diesel)
            })
            .await?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }
}

const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE rowid IN ( \
         SELECT rowid FROM idempotency_keys WHERE created_at < ?1 \
         ORDER BY created_at LIMIT ?2)";

/// A ticket that ended while waiting stays until the serving counter passes it: until then the
/// view needs it to leave it out of the positions behind it.
static PURGE_TICKETS: LazyLock<String> = LazyLock::new(|| {
    let expired = TicketStatus::Expired.as_str();
    format!(
        "DELETE FROM queue_tickets WHERE ticket IN ( \
             SELECT t.ticket FROM queue_tickets t WHERE t.status = '{expired}' \
               AND t.ended_at < ?1 \
               AND (t.admitted_at IS NOT NULL \
                    OR t.ticket <= (SELECT q.serving FROM queue_state q \
                                    WHERE q.line = (t.ticket >> 40))) \
             ORDER BY t.ended_at LIMIT ?2)"
    )
});

/// Only rooms that opened: until then every entry may still get a place. An entry that ended
/// waits out the tickets' retention; a placed one goes once its ticket was purged (the view
/// then answers its token as ended).
const PURGE_PRE_QUEUE: &str = "DELETE FROM pre_queue WHERE entry IN ( \
         SELECT p.entry FROM pre_queue p JOIN rooms r ON r.line = p.line AND r.opened = 1 \
         WHERE (p.ended_at IS NOT NULL AND p.ended_at < ?1) \
            OR (p.ticket IS NOT NULL \
                AND NOT EXISTS (SELECT 1 FROM queue_tickets t WHERE t.ticket = p.ticket)) \
         LIMIT ?2)";

#[async_trait]
impl RetentionRepository for SqliteRetentionRepository {
    async fn purge_idempotency_keys(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.delete(PURGE_KEYS, before, limit).await
    }

    async fn purge_ended_tickets(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.delete(PURGE_TICKETS.as_str(), before, limit).await
    }

    async fn purge_pre_queue_entries(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.delete(PURGE_PRE_QUEUE, before, limit).await
    }
}
