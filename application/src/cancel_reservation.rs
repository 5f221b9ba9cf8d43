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
