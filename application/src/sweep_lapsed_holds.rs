//! Use case: tidy up holds that ran out unpaid. Seats are free the instant a hold lapses whether
//! or not this runs; it only marks the reservations `EXPIRED` and clears their claims.

use std::sync::Arc;

use crate::ports::{Clock, RepositoryError, ReservationRepository};

/// How many lapsed holds one sweep marks, so one run never holds locks for long.
pub const SWEEP_BATCH: u32 = 500;

pub struct SweepLapsedHolds {
    reservations: Arc<dyn ReservationRepository>,
    clock: Arc<dyn Clock>,
}

impl SweepLapsedHolds {
    pub fn new(reservations: Arc<dyn ReservationRepository>, clock: Arc<dyn Clock>) -> Self {
        Self {
            reservations,
            clock,
        }
    }

    /// Returns how many holds were marked expired.
    pub async fn run_once(&self) -> Result<u64, RepositoryError> {
        self.reservations
            .expire_lapsed(self.clock.now(), SWEEP_BATCH)
            .await
    }
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::MockReservationRepository;
    use crate::test_support::{NOW, clock};

    #[tokio::test]
    async fn one_sweep_marks_lapsed_holds_at_now_in_one_batch() {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_expire_lapsed()
            .with(eq(NOW), eq(SWEEP_BATCH))
            .times(1)
            .returning(|_, _| Ok(3));

        let marked = SweepLapsedHolds::new(Arc::new(reservations), clock())
            .run_once()
            .await
            .expect("swept");

        assert_eq!(marked, 3);
    }
}
