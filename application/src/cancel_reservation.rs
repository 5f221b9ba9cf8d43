//! Use case: the caller gives up their own held reservation; the seat is free at once.

use std::sync::Arc;

use concert_domain::booking;
use concert_domain::reservation::CancelRefused;
use concert_domain::{Reservation, ReservationId};

use crate::authorize_request::ActiveUser;
use crate::idempotency::{Step, until_written};
use crate::ports::{Clock, ReleaseWrite, RepositoryError, ReservationRepository, Versioned};

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

    /// Loads the reservation and its seat, lets the domain cancel it, and writes the cancellation
    /// and the freed seat over the versions read.
    #[tracing::instrument(name = "cancel_reservation", skip_all, fields(reservation = id.get()))]
    pub async fn execute(
        &self,
        caller: ActiveUser,
        id: ReservationId,
    ) -> Result<Reservation, CancelReservationError> {
        let now = self.clock.now();
        until_written(|| async move {
            let booking = self
                .reservations
                .load_booking(id)
                .await?
                .ok_or(CancelReservationError::NotFound(id))?;
            let mut reservation = booking.reservation.value;
            let mut seat = booking.seat.value;
            let released = booking::cancel(&mut reservation, &mut seat, caller.user, now).map_err(
                |refused| match refused {
                    CancelRefused::NotYours => CancelReservationError::NotFound(id),
                    CancelRefused::NotHeld => CancelReservationError::NotHeld(id),
                },
            )?;
            let write = ReleaseWrite {
                reservation: Versioned::new(reservation, booking.reservation.version),
                seat: released.then(|| Versioned::new(seat, booking.seat.version)),
                now,
            };
            let written = self
                .reservations
                .save_releases(std::slice::from_ref(&write))
                .await?;
            Ok(if written == 1 {
                Step::Done(write.reservation.value)
            } else {
                Step::Stale
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::{ReservationStatus, Seat, SeatClaim};
    use mockall::predicate::eq;

    use super::*;
    use crate::idempotency::MAX_ATTEMPTS;
    use crate::ports::{Booking, MockReservationRepository, Version};
    use crate::test_support::{
        NOW, RESERVATION_VERSION, SEAT_VERSION, active_user, booking_of, clock, free_seat,
        held_reservation, lapsed_reservation, other_user, others_reservation, reservation_id,
        reservation_with, seat_held_by, seat_sold_to, seat_with,
    };

    /// A repository that loads `found` once for reservation 41.
    fn loading(found: Option<Booking>) -> MockReservationRepository {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_load_booking()
            .with(eq(reservation_id()))
            .times(1)
            .returning(move |_| Ok(found.clone()));
        reservations
    }

    fn held_booking() -> Booking {
        booking_of(held_reservation(), seat_held_by(&held_reservation()))
    }

    async fn cancel(
        reservations: MockReservationRepository,
    ) -> Result<Reservation, CancelReservationError> {
        CancelReservation::new(Arc::new(reservations), clock())
            .execute(active_user(14), reservation_id())
            .await
    }

    fn cancellation(seat: Option<Seat>, reservation: Version) -> ReleaseWrite {
        ReleaseWrite {
            reservation: Versioned::new(
                reservation_with(ReservationStatus::Cancelled),
                reservation,
            ),
            seat: seat.map(|seat| Versioned::new(seat, SEAT_VERSION)),
            now: NOW,
        }
    }

    #[tokio::test]
    async fn own_held_reservation_is_written_cancelled_with_its_seat_freed() {
        let mut reservations = loading(Some(held_booking()));
        reservations
            .expect_save_releases()
            .withf(|writes| writes == [cancellation(Some(free_seat()), RESERVATION_VERSION)])
            .times(1)
            .returning(|_| Ok(1));

        let cancelled = cancel(reservations).await.expect("cancelled");

        assert_eq!(cancelled, reservation_with(ReservationStatus::Cancelled));
    }

    #[tokio::test]
    async fn seat_no_longer_carrying_the_claim_is_left_as_it_is() {
        let elsewhere = seat_with(SeatClaim::Held {
            reservation: concert_domain::ReservationId::new(30).expect("id"),
            holder: other_user(),
            until: NOW + time::Duration::minutes(1),
        });
        let mut reservations = loading(Some(booking_of(held_reservation(), elsewhere)));
        reservations
            .expect_save_releases()
            .withf(|writes| writes == [cancellation(None, RESERVATION_VERSION)])
            .times(1)
            .returning(|_| Ok(1));

        cancel(reservations).await.expect("cancelled");
    }

    async fn refused_without_a_write(found: Option<Booking>) -> CancelReservationError {
        let mut reservations = loading(found);
        reservations.expect_save_releases().never();
        cancel(reservations).await.expect_err("refused")
    }

    #[tokio::test]
    async fn missing_reservation_is_not_found() {
        assert!(matches!(
            refused_without_a_write(None).await,
            CancelReservationError::NotFound(id) if id == reservation_id()
        ));
    }

    #[tokio::test]
    async fn another_users_reservation_is_not_found_and_never_written() {
        let others = others_reservation();
        let refused =
            refused_without_a_write(Some(booking_of(others.clone(), seat_held_by(&others)))).await;

        assert!(matches!(
            refused,
            CancelReservationError::NotFound(id) if id == reservation_id()
        ));
    }

    #[tokio::test]
    async fn confirmed_reservation_is_not_held_and_never_written() {
        let confirmed = reservation_with(ReservationStatus::Confirmed);
        let refused = refused_without_a_write(Some(booking_of(
            confirmed.clone(),
            seat_sold_to(&confirmed),
        )))
        .await;

        assert!(matches!(refused, CancelReservationError::NotHeld(_)));
    }

    #[tokio::test]
    async fn lapsed_hold_is_not_held_and_never_written() {
        let lapsed = lapsed_reservation();
        let refused =
            refused_without_a_write(Some(booking_of(lapsed.clone(), seat_held_by(&lapsed)))).await;

        assert!(matches!(refused, CancelReservationError::NotHeld(_)));
    }

    #[tokio::test]
    async fn stale_cancel_loads_again_and_is_not_held_when_a_payment_won() {
        let confirmed = reservation_with(ReservationStatus::Confirmed);
        let mut loads = vec![
            held_booking(),
            Booking {
                reservation: Versioned::new(confirmed.clone(), Version::new(4)),
                seat: Versioned::new(seat_sold_to(&confirmed), Version::new(6)),
            },
        ]
        .into_iter();
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_load_booking()
            .times(2)
            .returning(move |_| Ok(loads.next()));
        reservations
            .expect_save_releases()
            .times(1)
            .returning(|_| Ok(0));

        let refused = cancel(reservations).await;

        assert!(matches!(
            refused,
            Err(CancelReservationError::NotHeld(id)) if id == reservation_id()
        ));
    }

    #[tokio::test]
    async fn stale_cancel_is_decided_again_and_written_over_the_new_versions() {
        let mut loads = vec![
            held_booking(),
            Booking {
                reservation: Versioned::new(held_reservation(), Version::new(4)),
                ..held_booking()
            },
        ]
        .into_iter();
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_load_booking()
            .times(2)
            .returning(move |_| Ok(loads.next()));
        reservations
            .expect_save_releases()
            .withf(|writes| writes == [cancellation(Some(free_seat()), RESERVATION_VERSION)])
            .times(1)
            .returning(|_| Ok(0));
        reservations
            .expect_save_releases()
            .withf(|writes| writes == [cancellation(Some(free_seat()), Version::new(4))])
            .times(1)
            .returning(|_| Ok(1));

        let cancelled = cancel(reservations).await.expect("cancelled");

        assert_eq!(cancelled, reservation_with(ReservationStatus::Cancelled));
    }

    #[tokio::test]
    async fn cancel_that_stays_stale_gives_up_as_unavailable() {
        let attempts = usize::try_from(MAX_ATTEMPTS).expect("attempts");
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_load_booking()
            .times(attempts)
            .returning(|_| Ok(Some(held_booking())));
        reservations
            .expect_save_releases()
            .times(attempts)
            .returning(|_| Ok(0));

        let refused = cancel(reservations).await;

        assert!(matches!(
            refused,
            Err(CancelReservationError::Repository(
                RepositoryError::Unavailable(_)
            ))
        ));
    }
}
