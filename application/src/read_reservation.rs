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
        let mut reservation = find_own(self.reservations.as_ref(), id, caller.user)
            .await?
            .ok_or(ReadReservationError::NotFound(id))?;
        reservation.status = reservation.status_at(self.clock.now());
        Ok(reservation)
    }
}
