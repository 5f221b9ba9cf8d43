//! Use case: the caller's own reservation, with its status as of now.

use std::sync::Arc;

use concert_domain::{Reservation, ReservationId, UserId};

use crate::authorize_request::ActiveUser;
use crate::ports::{Clock, RepositoryError, ReservationRepository};

#[derive(Debug, thiserror::Error)]
pub enum ReadReservationError {
    /// Missing, or another user's: the two answer alike.
    #[error("reservation {0} not found")]
    NotFound(ReservationId),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// Loads a reservation only if it belongs to `user`.
pub(crate) async fn find_own(
    reservations: &dyn ReservationRepository,
    id: ReservationId,
    user: UserId,
) -> Result<Option<Reservation>, RepositoryError> {
    Ok(reservations
        .find(id)
        .await?
        .filter(|found| found.belongs_to(user)))
}

pub struct ReadReservation {
    reservations: Arc<dyn ReservationRepository>,
    clock: Arc<dyn Clock>,
}

impl ReadReservation {
    pub fn new(reservations: Arc<dyn ReservationRepository>, clock: Arc<dyn Clock>) -> Self {
        Self {
            reservations,
            clock,
        }
    }

    /// The reservation with its status as a client sees it now (a lapsed hold reads `EXPIRED`).
    #[tracing::instrument(name = "read_reservation", skip_all, fields(reservation = id.get()))]
    pub async fn execute(
        &self,
        caller: ActiveUser,
        id: ReservationId,
    ) -> Result<Reservation, ReadReservationError> {
        let reservation = find_own(self.reservations.as_ref(), id, caller.user)
            .await?
            .ok_or(ReadReservationError::NotFound(id))?;
        Ok(reservation.as_of(self.clock.now()))
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
        reservation_id,
    };

    fn storing(found: Option<Reservation>) -> MockReservationRepository {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_find()
            .with(eq(reservation_id()))
            .times(1)
            .returning(move |_| Ok(found.clone()));
        reservations
    }

    async fn read(found: Option<Reservation>) -> Result<Reservation, ReadReservationError> {
        ReadReservation::new(Arc::new(storing(found)), clock())
            .execute(active_user(14), reservation_id())
            .await
    }

    #[tokio::test]
    async fn own_held_reservation_reads_held() {
        let read = read(Some(held_reservation())).await.expect("found");

        assert_eq!(read, held_reservation());
    }

    #[tokio::test]
    async fn another_users_reservation_reads_as_missing() {
        let refused = read(Some(others_reservation())).await;

        assert!(matches!(
            refused,
            Err(ReadReservationError::NotFound(id)) if id == reservation_id()
        ));
    }

    #[tokio::test]
    async fn missing_reservation_is_not_found() {
        assert!(matches!(
            read(None).await,
            Err(ReadReservationError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn lapsed_hold_reads_expired_before_any_sweep() {
        let read = read(Some(lapsed_reservation())).await.expect("found");

        assert_eq!(read.stored_status(), ReservationStatus::Expired);
        assert_eq!(read.status_at(NOW), ReservationStatus::Expired);
        assert_eq!(read.expires_at(), lapsed_reservation().expires_at());
    }
}
