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
