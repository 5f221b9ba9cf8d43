//! Use case: the deployment-wide figures behind the `queue_*` and `seat_holds_live` gauges.

use std::sync::Arc;

use crate::ports::{Clock, RepositoryError, ReservationRepository};
use crate::queue_view::QueueView;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeploymentGauges {
    pub waiting_tokens: u64,
    pub active_tokens: u64,
    pub live_holds: u64,
}

pub struct ReadGauges {
    view: QueueView,
    reservations: Arc<dyn ReservationRepository>,
    clock: Arc<dyn Clock>,
}

impl ReadGauges {
    pub fn new(
        view: QueueView,
        reservations: Arc<dyn ReservationRepository>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            view,
            reservations,
            clock,
        }
    }

    pub async fn execute(&self) -> Result<DeploymentGauges, RepositoryError> {
        let queue = self.view.snapshot();
        let live_holds = self.reservations.count_live_holds(self.clock.now()).await?;
        Ok(DeploymentGauges {
            waiting_tokens: queue.waiting,
            active_tokens: queue.active,
            live_holds,
        })
    }
}
