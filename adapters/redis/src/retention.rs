//! `RetentionRepository` for a deployment whose lines are on Redis: idempotency keys are purged
//! in the main database, ended tickets and pre-queue entries on the line.

use std::sync::Arc;

use async_trait::async_trait;
use concert_application::ports::{RepositoryError, RetentionRepository};
use time::OffsetDateTime;

use crate::RedisLine;

/// The main database's retention for what it keeps, the Redis line's for the line.
#[derive(Clone)]
pub struct RedisLineRetention {
    line: RedisLine,
    main: Arc<dyn RetentionRepository>,
}

impl RedisLineRetention {
    pub(crate) fn new(line: RedisLine, main: Arc<dyn RetentionRepository>) -> Self {
        Self { line, main }
    }
}

impl std::fmt::Debug for RedisLineRetention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLineRetention")
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RetentionRepository for RedisLineRetention {
    async fn purge_idempotency_keys(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.main.purge_idempotency_keys(before, limit).await
    }

    async fn purge_ended_tickets(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.line.purge_ended_tickets(before, limit).await
    }

    async fn purge_pre_queue_entries(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.line.purge_pre_queue_entries(before, limit).await
    }
}
