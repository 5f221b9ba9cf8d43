//! `RetentionRepository`: batched deletes of records past their retention. Each statement takes
//! at most `limit` rows, oldest first, and skips rows locked by another instance's purge (or by
//! a request), so instances never wait on one another.

use std::sync::LazyLock;

use async_trait::async_trait;
use concert_application::ports::{RepositoryError, RetentionRepository};
use concert_domain::TicketStatus;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;

use crate::cached::CachedExt;
use crate::columns::ticket_status;
use crate::error::from_diesel;
use crate::pool::PgPool;

#[derive(Debug, Clone)]
pub struct PgRetentionRepository {
    pool: PgPool,
}

impl PgRetentionRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn delete(
        &self,
        sql: &str,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let deleted = diesel::sql_query(sql)
                    .bind::<Timestamptz, _>(before)
                    .bind::<BigInt, _>(i64::from(limit))
                    .cached()
                    .execute(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                Ok(u64::try_from(deleted).unwrap_or(0))
            })
            .await
    }
}

const PURGE_KEYS: &str = "DELETE FROM idempotency_keys WHERE (user_id, scope, key) IN ( \
         SELECT user_id, scope, key FROM idempotency_keys WHERE created_at < $1 \
         ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// The status is the statement's constant, so the plan can use the partial index of ended
/// tickets. A ticket that ended while waiting stays until the serving counter passes it: until
/// then the view needs it to leave it out of the positions behind it.
static PURGE_TICKETS: LazyLock<String> = LazyLock::new(|| {
    let expired = ticket_status(TicketStatus::Expired);
    format!(
        "DELETE FROM queue_tickets WHERE ticket IN ( \
             SELECT ticket FROM queue_tickets WHERE status = '{expired}' AND ended_at < $1 \
               AND (admitted_at IS NOT NULL \
                    OR ticket <= (SELECT serving FROM queue_state WHERE line = (ticket >> 40))) \
             ORDER BY ended_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
    )
});

/// Only rooms that opened: until then every entry may still get a place. An entry that ended
/// waits out the tickets' retention; a placed one goes once its ticket was purged (the view
/// then answers its token as ended).
const PURGE_PRE_QUEUE: &str = "DELETE FROM pre_queue WHERE entry IN ( \
         SELECT p.entry FROM pre_queue p JOIN rooms r ON r.line = p.line AND r.opened \
         WHERE (p.ended_at IS NOT NULL AND p.ended_at < $1) \
            OR (p.ticket IS NOT NULL \
                AND NOT EXISTS (SELECT 1 FROM queue_tickets t WHERE t.ticket = p.ticket)) \
         LIMIT $2 FOR UPDATE OF p SKIP LOCKED)";

#[async_trait]
impl RetentionRepository for PgRetentionRepository {
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
        self.delete(&PURGE_TICKETS, before, limit).await
    }

    async fn purge_pre_queue_entries(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.delete(PURGE_PRE_QUEUE, before, limit).await
    }
}
