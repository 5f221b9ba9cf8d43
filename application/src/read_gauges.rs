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

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::MockReservationRepository;
    use crate::test_support::{NOW, clock, view_serving};

    #[tokio::test]
    async fn gauges_read_the_line_from_the_view_and_live_holds_at_now() {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_count_live_holds()
            .with(eq(NOW))
            .times(1)
            .returning(|_| Ok(7));
        let view = view_serving(10).await;
        let line = view.snapshot();

        let gauges = ReadGauges::new(view, Arc::new(reservations), clock())
            .execute()
            .await
            .expect("gauges");

        assert_eq!(
            gauges,
            DeploymentGauges {
                waiting_tokens: line.waiting,
                active_tokens: line.active,
                live_holds: 7,
            }
        );
    }
}
