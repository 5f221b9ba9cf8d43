//! Use case: purge the records past their retention (idempotency keys, ended tickets and the
//! pre-queue entries whose story is over), in batches so that no statement holds many row locks
//! or runs long.

use std::future::Future;
use std::sync::Arc;

use concert_domain::RetentionPolicy;

use crate::ports::{Clock, RepositoryError, RetentionRepository};

/// Rows removed per statement.
pub const PURGE_BATCH: u32 = 1000;
/// Batches per kind and run: a backlog larger than this waits for the next run.
pub const MAX_BATCHES: u32 = 100;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub idempotency_keys: u64,
    pub ended_tickets: u64,
    pub pre_queue_entries: u64,
}

pub struct PurgeExpiredRecords {
    records: Arc<dyn RetentionRepository>,
    clock: Arc<dyn Clock>,
    policy: RetentionPolicy,
}

impl PurgeExpiredRecords {
    pub fn new(
        records: Arc<dyn RetentionRepository>,
        clock: Arc<dyn Clock>,
        policy: RetentionPolicy,
    ) -> Self {
        Self {
            records,
            clock,
            policy,
        }
    }

    /// Purges what is past retention now, batch by batch, until a batch comes back short.
    #[tracing::instrument(name = "purge_expired_records", skip_all)]
    pub async fn run_once(&self) -> Result<PurgeReport, RepositoryError> {
        let cutoffs = self.policy.cutoffs(self.clock.now());
        let records = &self.records;
        let idempotency_keys =
            in_batches(|| records.purge_idempotency_keys(cutoffs.idempotency_keys, PURGE_BATCH))
                .await?;
        let ended_tickets =
            in_batches(|| records.purge_ended_tickets(cutoffs.ended_tickets, PURGE_BATCH)).await?;
        // After the tickets: an entry goes once the ticket it was placed on has gone.
        let pre_queue_entries =
            in_batches(|| records.purge_pre_queue_entries(cutoffs.ended_tickets, PURGE_BATCH))
                .await?;
        let report = PurgeReport {
            idempotency_keys,
            ended_tickets,
            pre_queue_entries,
        };
        Ok(report)
    }
}

/// Runs `purge` until a batch comes back short of [`PURGE_BATCH`], at most [`MAX_BATCHES`]
/// times; returns how many rows went.
async fn in_batches<F, Fut>(mut purge: F) -> Result<u64, RepositoryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, RepositoryError>>,
{
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let purged = purge().await?;
        total += purged;
        if purged < u64::from(PURGE_BATCH) {
            break;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;
    use time::Duration;

    use super::*;
    use crate::ports::MockRetentionRepository;
    use crate::test_support::{NOW, clock};

    fn policy() -> RetentionPolicy {
        RetentionPolicy::new(Duration::days(7), Duration::days(1)).expect("valid")
    }

    #[tokio::test]
    async fn each_kind_is_purged_before_its_own_cutoff_in_batches_until_one_comes_back_short() {
        let mut records = MockRetentionRepository::new();
        let mut keys = vec![1000, 1000, 3].into_iter();
        records
            .expect_purge_idempotency_keys()
            .with(eq(NOW - Duration::days(7)), eq(PURGE_BATCH))
            .times(3)
            .returning(move |_, _| Ok(keys.next().expect("three batches")));
        records
            .expect_purge_ended_tickets()
            .with(eq(NOW - Duration::days(1)), eq(PURGE_BATCH))
            .times(1)
            .returning(|_, _| Ok(0));
        records
            .expect_purge_pre_queue_entries()
            .with(eq(NOW - Duration::days(1)), eq(PURGE_BATCH))
            .times(1)
            .returning(|_, _| Ok(4));
        let purge = PurgeExpiredRecords::new(Arc::new(records), clock(), policy());

        let report = purge.run_once().await.expect("purged");

        assert_eq!(
            report,
            PurgeReport {
                idempotency_keys: 2003,
                ended_tickets: 0,
                pre_queue_entries: 4,
            }
        );
    }

    #[tokio::test]
    async fn a_backlog_is_left_for_the_next_run_after_the_batch_bound() {
        let mut records = MockRetentionRepository::new();
        records
            .expect_purge_idempotency_keys()
            .times(usize::try_from(MAX_BATCHES).expect("batches"))
            .returning(|_, _| Ok(u64::from(PURGE_BATCH)));
        records
            .expect_purge_ended_tickets()
            .times(1)
            .returning(|_, _| Ok(5));
        records
            .expect_purge_pre_queue_entries()
            .returning(|_, _| Ok(0));
        let purge = PurgeExpiredRecords::new(Arc::new(records), clock(), policy());

        let report = purge.run_once().await.expect("purged");

        assert_eq!(
            report.idempotency_keys,
            u64::from(MAX_BATCHES) * u64::from(PURGE_BATCH)
        );
        assert_eq!(report.ended_tickets, 5);
    }

    #[tokio::test]
    async fn a_failure_is_reported() {
        let mut records = MockRetentionRepository::new();
        records
            .expect_purge_idempotency_keys()
            .returning(|_, _| Err(RepositoryError::Unavailable("down".into())));
        records.expect_purge_ended_tickets().never();
        let purge = PurgeExpiredRecords::new(Arc::new(records), clock(), policy());

        assert!(purge.run_once().await.is_err());
    }
}
