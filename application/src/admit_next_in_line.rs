//! Use case: one admission step. Every instance runs it on a short timer and right after a
//! payment; the repository serialises the steps so exactly one runs at a time.

use std::sync::Arc;

use concert_domain::QueuePolicy;

use crate::ports::{AdmissionReport, Clock, QueueRepository, RepositoryError};

pub struct AdmitNextInLine {
    queue: Arc<dyn QueueRepository>,
    clock: Arc<dyn Clock>,
    policy: QueuePolicy,
}

impl AdmitNextInLine {
    pub fn new(
        queue: Arc<dyn QueueRepository>,
        clock: Arc<dyn Clock>,
        policy: QueuePolicy,
    ) -> Self {
        Self {
            queue,
            clock,
            policy,
        }
    }

    /// Ends the active tickets past a deadline and admits waiting ones into the free places.
    pub async fn run_once(&self) -> Result<AdmissionReport, RepositoryError> {
        let report = self.queue.admit(&self.policy, self.clock.now()).await?;
        if report.admitted > 0 || report.expired > 0 {
            tracing::debug!(
                admitted = report.admitted,
                expired = report.expired,
                serving = report.serving.get(),
                "admission step"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::queue::ServingCounter;

    use super::*;
    use crate::ports::MockQueueRepository;
    use crate::test_support::{NOW, clock, policy};

    #[tokio::test]
    async fn one_step_admits_under_the_configured_policy_at_now() {
        let report = AdmissionReport {
            expired: 1,
            admitted: 2,
            serving: ServingCounter::new(16),
        };
        let mut queue = MockQueueRepository::new();
        queue
            .expect_admit()
            .withf(|given, now| *given == policy() && *now == NOW)
            .times(1)
            .returning(move |_, _| Ok(report));

        let done = AdmitNextInLine::new(Arc::new(queue), clock(), policy())
            .run_once()
            .await
            .expect("admitted");

        assert_eq!(done, report);
    }
}
