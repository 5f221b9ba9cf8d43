//! Use case: the caller gives up their own held reservation; the seat is free at once.

use std::sync::Arc;

use concert_domain::reservation::CancelRefused;
use concert_domain::{Reservation, ReservationId};

use crate::authorize_request::ActiveUser;
use crate::ports::{CancelOutcome, Clock, RepositoryError, ReservationRepository};
use crate::read_reservation::find_own;

#[derive(Debug, thiserror::Error)]
pub enum CancelReservationError {
    #[error("reservation {0} not found")]
    NotFound(ReservationId),
    #[error("reservation {0} is no longer held")]
    NotHeld(ReservationId),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

pub struct CancelReservation {
    reservations: Arc<dyn ReservationRepository>,
    clock: Arc<dyn Clock>,
}

impl CancelReservation {
    pub fn new(reservations: Arc<dyn ReservationRepository>, clock: Arc<dyn Clock>) -> Self {
        Self {
            reservations,
            clock,
        }
    }

    #[tracing::instrument(name = "cancel_reservation", skip_all, fields(reservation = id.get()))]
    pub async fn execute(
        &self,
        caller: ActiveUser,
        id: ReservationId,
    ) -> Result<Reservation, CancelReservationError> {
        let now = self.clock.now();
        let mut reservation = find_own(self.reservations.as_ref(), id, caller.user)
            .await?
            .ok_or(CancelReservationError::NotFound(id))?;
        reservation
            .cancel(caller.user, now)
            .map_err(|refused| match refused {
                CancelRefused::NotYours => CancelReservationError::NotFound(id),
                CancelRefused::NotHeld => CancelReservationError::NotHeld(id),
            })?;
        match self.reservations.cancel(id, caller.user, now).await? {
            CancelOutcome::Cancelled(cancelled) => Ok(cancelled),
            CancelOutcome::NotHeld => Err(CancelReservationError::NotHeld(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::ReservationStatus;
    use mockall::predicate::eq;

    use super::*;
    use crate::ports::MockReservationRepository;
    use crate::test_support::{
        NOW, active_user, clock, held_reservation, lapsed_reservation, others_reservation,
        reservation_id, reservation_with, user,
    };

    fn storing(found: Reservation) -> MockReservationRepository {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_find()
            .with(eq(reservation_id()))
            .times(1)
            .returning(move |_| Ok(Some(found.clone())));
        reservations
    }

    async fn cancel(
        reservations: MockReservationRepository,
    ) -> Result<Reservation, CancelReservationError> {
        CancelReservation::new(Arc::new(reservations), clock())
            .execute(active_user(14), reservation_id())
            .await
    }

    #[tokio::test]
    async fn own_held_reservation_is_cancelled_by_its_user_at_now() {
        let cancelled = reservation_with(ReservationStatus::Cancelled);
        let mut reservations = storing(held_reservation());
        let answer = cancelled.clone();
        reservations
            .expect_cancel()
            .with(eq(reservation_id()), eq(user()), eq(NOW))
            .times(1)
            .returning(move |_, _, _| Ok(CancelOutcome::Cancelled(answer.clone())));

        let result = cancel(reservations).await.expect("cancelled");

        assert_eq!(result, cancelled);
    }

    #[tokio::test]
    async fn another_users_reservation_is_not_found_and_never_cancelled() {
        let mut reservations = storing(others_reservation());
        reservations.expect_cancel().never();

        let refused = cancel(reservations).await;

        assert!(matches!(refused, Err(CancelReservationError::NotFound(_))));
    }

    #[tokio::test]
    async fn confirmed_reservation_is_not_held_and_never_cancelled() {
        let mut reservations = storing(reservation_with(ReservationStatus::Confirmed));
        reservations.expect_cancel().never();

        let refused = cancel(reservations).await;

        assert!(matches!(refused, Err(CancelReservationError::NotHeld(_))));
    }

    #[tokio::test]
    async fn lapsed_hold_is_not_held_and_never_cancelled() {
        let mut reservations = storing(lapsed_reservation());
        reservations.expect_cancel().never();

        let refused = cancel(reservations).await;

        assert!(matches!(refused, Err(CancelReservationError::NotHeld(_))));
    }

    #[tokio::test]
    async fn cancel_that_loses_the_race_to_a_payment_is_not_held() {
        let mut reservations = storing(held_reservation());
        reservations
            .expect_cancel()
            .times(1)
            .returning(|_, _, _| Ok(CancelOutcome::NotHeld));

        let refused = cancel(reservations).await;

        assert!(matches!(
            refused,
            Err(CancelReservationError::NotHeld(id)) if id == reservation_id()
        ));
    }
}
