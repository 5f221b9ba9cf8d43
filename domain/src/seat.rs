//! A seat's claim: available → held (by one reservation, until a deadline) → sold.
//! A hold whose deadline has passed counts as available; a sold seat never becomes available.

use time::{Duration, OffsetDateTime};

use crate::{Price, ReservationId, SeatNo, UserId};

/// Who, if anyone, has a seat right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatClaim {
    Available,
    Held {
        reservation: ReservationId,
        holder: UserId,
        until: OffsetDateTime,
    },
    Sold {
        reservation: ReservationId,
        owner: UserId,
    },
}

/// What a seat map shows of a seat at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatState {
    Free,
    /// Under a live hold (its holder may still pay, or let it lapse).
    Held,
    Sold,
}

/// Why a seat could not be held. Every variant is `SEAT_UNAVAILABLE` to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefused {
    #[error("the seat is sold")]
    Sold,
    #[error("the seat is held by someone else")]
    HeldByOther,
    #[error("the seat is already held by this user")]
    HeldBySameUser,
}

/// Why a seat could not be sold to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SellRefused {
    #[error("the reservation's hold on the seat has lapsed")]
    HoldLapsed,
    #[error("the seat is not held by this reservation")]
    NotHeldByReservation,
}

/// One seat of one concert date.
/// What a granted hold did to the seat: its deadline, and the lapsed hold it took over, if any
/// (that reservation reads `EXPIRED` from now on and must be written so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatHold {
    pub until: OffsetDateTime,
    pub replaced: Option<ReservationId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    no: SeatNo,
    price: Price,
    claim: SeatClaim,
}

impl Seat {
    pub fn available(no: SeatNo, price: Price) -> Self {
        Self::new(no, price, SeatClaim::Available)
    }

    /// A seat as a store holds it: every claim is a valid state of a seat.
    pub fn new(no: SeatNo, price: Price, claim: SeatClaim) -> Self {
        Self { no, price, claim }
    }

    pub fn no(&self) -> SeatNo {
        self.no
    }

    pub fn price(&self) -> Price {
        self.price
    }

    pub fn claim(&self) -> SeatClaim {
        self.claim
    }

    /// A seat can be reserved now when it is not sold and carries no live hold (the caller's
    /// own included).
    pub fn is_available(&self, now: OffsetDateTime) -> bool {
        match self.claim {
            SeatClaim::Available => true,
            SeatClaim::Held { until, .. } => until <= now,
            SeatClaim::Sold { .. } => false,
        }
    }

    /// What the seat is at `now`: a lapsed hold shows free, as it is to anyone who holds it next.
    pub fn state_at(&self, now: OffsetDateTime) -> SeatState {
        match self.claim {
            SeatClaim::Sold { .. } => SeatState::Sold,
            SeatClaim::Held { until, .. } if until > now => SeatState::Held,
            SeatClaim::Held { .. } | SeatClaim::Available => SeatState::Free,
        }
    }

    /// Holds the seat for `holder` until `now + ttl`. Returns the deadline of the hold.
    pub fn hold(
        &mut self,
        reservation: ReservationId,
        holder: UserId,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<SeatHold, HoldRefused> {
        if !self.is_available(now) {
            return Err(match self.claim {
                SeatClaim::Held {
                    holder: current, ..
                } if current == holder => HoldRefused::HeldBySameUser,
                SeatClaim::Held { .. } => HoldRefused::HeldByOther,
                SeatClaim::Available | SeatClaim::Sold { .. } => HoldRefused::Sold,
            });
        }
        // Free at `now`: never held, or its hold lapsed (that reservation is taken over).
        let replaced = match self.claim {
            SeatClaim::Held {
                reservation: lapsed,
                ..
            } => Some(lapsed),
            SeatClaim::Available | SeatClaim::Sold { .. } => None,
        };
        let until = now + ttl;
        self.claim = SeatClaim::Held {
            reservation,
            holder,
            until,
        };
        Ok(SeatHold { until, replaced })
    }

    /// Sells the seat to the reservation that holds it, for good.
    pub fn sell(
        &mut self,
        reservation: ReservationId,
        now: OffsetDateTime,
    ) -> Result<(), SellRefused> {
        match self.claim {
            SeatClaim::Held {
                reservation: holding,
                holder,
                until,
            } if holding == reservation => {
                if until <= now {
                    return Err(SellRefused::HoldLapsed);
                }
                self.claim = SeatClaim::Sold {
                    reservation,
                    owner: holder,
                };
                Ok(())
            }
            _ => Err(SellRefused::NotHeldByReservation),
        }
    }

    /// Frees the seat when `reservation` is the one holding it (a cancelled hold). Returns whether
    /// anything changed; a sold seat is never released.
    pub fn release(&mut self, reservation: ReservationId) -> bool {
        match self.claim {
            SeatClaim::Held {
                reservation: holding,
                ..
            } if holding == reservation => {
                self.claim = SeatClaim::Available;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;
    use crate::SeatCount;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
    const TTL: Duration = Duration::minutes(5);

    fn seat() -> Seat {
        Seat::available(
            SeatNo::parse(7, SeatCount::DEFAULT).expect("seat"),
            Price::from_stored(120_000),
        )
    }

    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }

    fn reservation(n: i64) -> ReservationId {
        ReservationId::new(n).expect("id")
    }

    #[test]
    fn available_seat_is_held_until_now_plus_ttl() {
        let mut seat = seat();
        let hold = seat.hold(reservation(1), user(1), NOW, TTL).expect("held");
        assert_eq!(hold.until, NOW + TTL);
        assert_eq!(hold.replaced, None);
        assert!(!seat.is_available(NOW));
    }

    #[test]
    fn a_seat_map_shows_a_live_hold_held_a_lapsed_one_free_and_a_sale_sold() {
        let mut seat = seat();
        assert_eq!(seat.state_at(NOW), SeatState::Free);
        seat.hold(reservation(1), user(1), NOW, TTL).expect("held");
        assert_eq!(
            seat.state_at(NOW + TTL - Duration::seconds(1)),
            SeatState::Held
        );
        assert_eq!(seat.state_at(NOW + TTL), SeatState::Free);
        for at in [NOW, NOW + TTL] {
            assert_eq!(seat.is_available(at), seat.state_at(at) == SeatState::Free);
        }
        seat.sell(reservation(1), NOW + Duration::minutes(1))
            .expect("sold");
        assert_eq!(seat.state_at(NOW + Duration::days(1)), SeatState::Sold);
    }

    #[test]
    fn seat_cannot_be_held_twice() {
        let mut seat = seat();
        seat.hold(reservation(1), user(1), NOW, TTL).expect("held");
        assert_eq!(
            seat.hold(reservation(2), user(2), NOW + Duration::seconds(10), TTL),
            Err(HoldRefused::HeldByOther)
        );
        assert_eq!(
            seat.hold(reservation(3), user(1), NOW + Duration::seconds(10), TTL),
            Err(HoldRefused::HeldBySameUser)
        );
    }

    #[test]
    fn lapsed_hold_is_free_for_the_next_user() {
        let mut seat = seat();
        seat.hold(reservation(1), user(1), NOW, TTL).expect("held");
        let later = NOW + TTL;
        assert!(
            seat.is_available(later),
            "a hold ends exactly at its deadline"
        );
        let hold = seat
            .hold(reservation(2), user(2), later, TTL)
            .expect("held");
        assert_eq!(
            hold.replaced,
            Some(reservation(1)),
            "the lapsed hold is taken over"
        );
    }

    #[test]
    fn sold_seat_is_never_available_again() {
        let mut seat = seat();
        seat.hold(reservation(1), user(1), NOW, TTL).expect("held");
        seat.sell(reservation(1), NOW + Duration::minutes(1))
            .expect("sold");
        let much_later = NOW + Duration::days(365);
        assert!(!seat.is_available(much_later));
        assert_eq!(
            seat.hold(reservation(2), user(2), much_later, TTL),
            Err(HoldRefused::Sold)
        );
        assert!(
            !seat.release(reservation(1)),
            "a sold seat is never released"
        );
    }

    #[test]
    fn seat_is_sold_only_to_its_live_hold() {
        let mut seat = seat();
        seat.hold(reservation(1), user(1), NOW, TTL).expect("held");
        assert_eq!(
            seat.sell(reservation(2), NOW),
            Err(SellRefused::NotHeldByReservation)
        );
        assert_eq!(
            seat.sell(reservation(1), NOW + TTL),
            Err(SellRefused::HoldLapsed)
        );
    }

    #[test]
    fn cancelled_hold_frees_the_seat_at_once() {
        let mut seat = seat();
        seat.hold(reservation(1), user(1), NOW, TTL).expect("held");
        assert!(
            !seat.release(reservation(9)),
            "another reservation cannot free it"
        );
        assert!(seat.release(reservation(1)));
        assert!(seat.is_available(NOW));
    }
}
