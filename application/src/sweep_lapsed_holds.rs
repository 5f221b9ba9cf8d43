//! Use case: tidy up holds that ran out unpaid. Seats are free the instant a hold lapses whether
//! or not this runs; it only marks the reservations `EXPIRED` and clears their claims.

use std::sync::Arc;

use concert_domain::booking;

use crate::ports::{Clock, ReleaseWrite, RepositoryError, ReservationRepository, Versioned};

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

    /// Loads a batch of lapsed holds, lets the domain expire each, and writes those whose rows
    /// did not change meanwhile (a hold being paid or cancelled is left to that request).
    /// Returns how many holds were marked expired.
    pub async fn run_once(&self) -> Result<u64, RepositoryError> {
        let now = self.clock.now();
        let lapsed = self.reservations.lapsed(now, SWEEP_BATCH).await?;
        let writes: Vec<ReleaseWrite> = lapsed
            .into_iter()
            .filter_map(|found| {
                let mut reservation = found.reservation.value;
                let mut seat = found.seat.value;
                let released = booking::expire(&mut reservation, &mut seat, now).ok()?;
                Some(ReleaseWrite {
                    reservation: Versioned::new(reservation, found.reservation.version),
                    seat: released.then(|| Versioned::new(seat, found.seat.version)),
                    now,
                })
            })
            .collect();
        if writes.is_empty() {
            return Ok(0);
        }
        self.reservations.save_releases(&writes).await
    }
}

#[cfg(test)]
mod tests {
    use concert_domain::{
        Price, Reservation, ReservationId, ReservationStatus, Seat, SeatClaim, SeatCount, SeatNo,
        SeatRef,
    };
    use mockall::predicate::eq;
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::ports::{Booking, MockReservationRepository, Version};
    use crate::test_support::{CONCERT_DAY, NOW, PRICE, clock, concert_id, other_user, user};

    /// Reservation `id` of seat `id - 40`, as stored, at version `id`.
    fn stored(id: i64, status: ReservationStatus, expires_at: OffsetDateTime) -> Reservation {
        Reservation::restore(
            ReservationId::new(id).expect("id"),
            user(),
            SeatRef {
                concert_id: concert_id(),
                date: CONCERT_DAY,
                seat_no: SeatNo::parse(id - 40, SeatCount::DEFAULT).expect("seat"),
            },
            Price::from_stored(PRICE),
            status,
            expires_at,
        )
    }

    fn seat_of(reservation: &Reservation, claim: SeatClaim) -> Seat {
        Seat::new(reservation.seat_no(), reservation.price(), claim)
    }

    fn held_claim(reservation: &Reservation) -> SeatClaim {
        SeatClaim::Held {
            reservation: reservation.id(),
            holder: reservation.user(),
            until: reservation.expires_at(),
        }
    }

    /// A row pair as loaded: the reservation at version `id`, its seat at version `id + 100`.
    fn loaded(reservation: &Reservation, claim: SeatClaim) -> Booking {
        let id = reservation.id().get();
        Booking {
            reservation: Versioned::new(reservation.clone(), Version::new(id)),
            seat: Versioned::new(seat_of(reservation, claim), Version::new(id + 100)),
        }
    }

    fn expired(reservation: &Reservation) -> Reservation {
        Reservation::restore(
            reservation.id(),
            reservation.user(),
            reservation.seat(),
            reservation.price(),
            ReservationStatus::Expired,
            reservation.expires_at(),
        )
    }

    async fn sweep(reservations: MockReservationRepository) -> Result<u64, RepositoryError> {
        SweepLapsedHolds::new(Arc::new(reservations), clock())
            .run_once()
            .await
    }

    #[tokio::test]
    async fn only_holds_the_domain_expires_are_written_and_only_seats_they_still_claim_freed() {
        let lapsed = stored(41, ReservationStatus::Held, NOW - Duration::seconds(1));
        let at_deadline = stored(42, ReservationStatus::Held, NOW);
        let taken_over = stored(43, ReservationStatus::Held, NOW - Duration::minutes(1));
        let still_live = stored(44, ReservationStatus::Held, NOW + Duration::seconds(1));
        let paid_meanwhile = stored(45, ReservationStatus::Confirmed, NOW - Duration::minutes(2));
        let other_claim = SeatClaim::Held {
            reservation: ReservationId::new(99).expect("id"),
            holder: other_user(),
            until: NOW + Duration::minutes(4),
        };
        let found = vec![
            loaded(&lapsed, held_claim(&lapsed)),
            loaded(&at_deadline, held_claim(&at_deadline)),
            loaded(&taken_over, other_claim),
            loaded(&still_live, held_claim(&still_live)),
            loaded(
                &paid_meanwhile,
                SeatClaim::Sold {
                    reservation: paid_meanwhile.id(),
                    owner: user(),
                },
            ),
        ];
        let expected = vec![
            ReleaseWrite {
                reservation: Versioned::new(expired(&lapsed), Version::new(41)),
                seat: Some(Versioned::new(
                    seat_of(&lapsed, SeatClaim::Available),
                    Version::new(141),
                )),
                now: NOW,
            },
            ReleaseWrite {
                reservation: Versioned::new(expired(&at_deadline), Version::new(42)),
                seat: Some(Versioned::new(
                    seat_of(&at_deadline, SeatClaim::Available),
                    Version::new(142),
                )),
                now: NOW,
            },
            ReleaseWrite {
                reservation: Versioned::new(expired(&taken_over), Version::new(43)),
                seat: None,
                now: NOW,
            },
        ];
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_lapsed()
            .with(eq(NOW), eq(SWEEP_BATCH))
            .times(1)
            .returning(move |_, _| Ok(found.clone()));
        reservations
            .expect_save_releases()
            .withf(move |writes| writes == expected.as_slice())
            .times(1)
            .returning(|_| Ok(2));

        let marked = sweep(reservations).await.expect("swept");

        assert_eq!(marked, 2, "the count the store wrote, stale ones left out");
    }

    #[tokio::test]
    async fn nothing_lapsed_writes_nothing() {
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_lapsed()
            .times(1)
            .returning(|_, _| Ok(Vec::new()));
        reservations.expect_save_releases().never();

        assert_eq!(sweep(reservations).await.expect("swept"), 0);
    }

    #[tokio::test]
    async fn holds_the_domain_refuses_to_expire_are_never_written() {
        let live = stored(41, ReservationStatus::Held, NOW + Duration::seconds(1));
        let cancelled = stored(42, ReservationStatus::Cancelled, NOW - Duration::minutes(1));
        let found = vec![
            loaded(&live, held_claim(&live)),
            loaded(&cancelled, SeatClaim::Available),
        ];
        let mut reservations = MockReservationRepository::new();
        reservations
            .expect_lapsed()
            .times(1)
            .returning(move |_, _| Ok(found.clone()));
        reservations.expect_save_releases().never();

        assert_eq!(sweep(reservations).await.expect("swept"), 0);
    }
}
