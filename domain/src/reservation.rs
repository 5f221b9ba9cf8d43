//! A reservation: HELD → CONFIRMED (paid) | EXPIRED (hold lapsed) | CANCELLED (by its user).
//! A held reservation whose deadline has passed reads `EXPIRED` at once, before any sweeper runs.

use time::{Date, OffsetDateTime};

use crate::{ConcertId, Price, ReservationId, SeatNo, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Expired,
    Cancelled,
}

impl ReservationStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Held => "HELD",
            Self::Confirmed => "CONFIRMED",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "HELD" => Some(Self::Held),
            "CONFIRMED" => Some(Self::Confirmed),
            "EXPIRED" => Some(Self::Expired),
            "CANCELLED" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// Why a reservation cannot be paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayRefused {
    /// Another user's reservation answers exactly as a missing one.
    #[error("reservation not found")]
    NotYours,
    #[error("the hold has run out")]
    Expired,
    #[error("the reservation is no longer held")]
    NotHeld,
}

/// Why a reservation cannot be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefused {
    #[error("reservation not found")]
    NotYours,
    #[error("the reservation is no longer held")]
    NotHeld,
}

/// Why the sweeper may not mark a reservation expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExpireRefused {
    #[error("the hold has not run out yet")]
    StillLive,
    #[error("the reservation is no longer held")]
    NotHeld,
}

/// A user already has as many live holds as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the user already has {limit} live holds")]
pub struct HoldLimitReached {
    pub limit: u32,
}

/// How many live holds one user may have at once (`MAX_HOLDS_PER_USER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimit(u32);

impl HoldLimit {
    pub const DEFAULT: Self = Self(4);

    pub fn new(limit: u32) -> Option<Self> {
        (limit > 0).then_some(Self(limit))
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    /// Whether one more hold is allowed for a user who has `live_holds` now.
    pub fn allows_another(self, live_holds: u32) -> Result<(), HoldLimitReached> {
        if live_holds < self.0 {
            Ok(())
        } else {
            Err(HoldLimitReached { limit: self.0 })
        }
    }

    /// Whether `holds` leave room for one more hold at `now`.
    pub fn admits(self, holds: &UserHolds, now: OffsetDateTime) -> Result<(), HoldLimitReached> {
        self.allows_another(holds.live_at(now))
    }
}

/// The deadlines of a user's reservations that are stored `HELD`: what the hold limit counts.
/// Lapsed ones are among them until a sweeper or a new hold writes them down; they do not count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserHolds {
    deadlines: Vec<OffsetDateTime>,
}

impl UserHolds {
    pub fn new(deadlines: Vec<OffsetDateTime>) -> Self {
        Self { deadlines }
    }

    /// The holds still live at `now` (a hold ends exactly at its deadline).
    pub fn live_at(&self, now: OffsetDateTime) -> u32 {
        let live = self.deadlines.iter().filter(|until| **until > now).count();
        u32::try_from(live).unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    id: ReservationId,
    user: UserId,
    concert_id: ConcertId,
    date: Date,
    seat_no: SeatNo,
    price: Price,
    status: ReservationStatus,
    expires_at: OffsetDateTime,
}

/// Where a reservation is: the seat of one date of one concert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeatRef {
    pub concert_id: ConcertId,
    pub date: Date,
    pub seat_no: SeatNo,
}

impl Reservation {
    /// A new hold on `seat` for `user` until `expires_at`.
    pub fn held(
        id: ReservationId,
        user: UserId,
        seat: SeatRef,
        price: Price,
        expires_at: OffsetDateTime,
    ) -> Self {
        Self::restore(id, user, seat, price, ReservationStatus::Held, expires_at)
    }

    /// A reservation as a store holds it.
    pub fn restore(
        id: ReservationId,
        user: UserId,
        seat: SeatRef,
        price: Price,
        status: ReservationStatus,
        expires_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            user,
            concert_id: seat.concert_id,
            date: seat.date,
            seat_no: seat.seat_no,
            price,
            status,
            expires_at,
        }
    }

    pub fn id(&self) -> ReservationId {
        self.id
    }

    pub fn user(&self) -> UserId {
        self.user
    }

    pub fn concert_id(&self) -> ConcertId {
        self.concert_id
    }

    pub fn date(&self) -> Date {
        self.date
    }

    pub fn seat_no(&self) -> SeatNo {
        self.seat_no
    }

    pub fn seat(&self) -> SeatRef {
        SeatRef {
            concert_id: self.concert_id,
            date: self.date,
            seat_no: self.seat_no,
        }
    }

    pub fn price(&self) -> Price {
        self.price
    }

    /// The status as stored, before lazy expiry (see [`Self::status_at`]).
    pub fn stored_status(&self) -> ReservationStatus {
        self.status
    }

    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// The reservation as a client sees it at `now`: a lapsed hold reads `EXPIRED`.
    pub fn as_of(mut self, now: OffsetDateTime) -> Self {
        self.status = self.status_at(now);
        self
    }

    pub fn status_at(&self, now: OffsetDateTime) -> ReservationStatus {
        match self.status {
            ReservationStatus::Held if self.expires_at <= now => ReservationStatus::Expired,
            status => status,
        }
    }

    /// Whether `user` may see this reservation at all.
    pub fn belongs_to(&self, user: UserId) -> bool {
        self.user == user
    }

    /// Whether `user` may pay this reservation at `now` (see [`Self::confirm`]).
    fn check_payable(&self, user: UserId, now: OffsetDateTime) -> Result<(), PayRefused> {
        if !self.belongs_to(user) {
            return Err(PayRefused::NotYours);
        }
        match self.status_at(now) {
            ReservationStatus::Held => Ok(()),
            ReservationStatus::Expired => Err(PayRefused::Expired),
            ReservationStatus::Confirmed | ReservationStatus::Cancelled => Err(PayRefused::NotHeld),
        }
    }

    /// HELD → CONFIRMED, by its own user while the hold lasts.
    pub fn confirm(&mut self, user: UserId, now: OffsetDateTime) -> Result<(), PayRefused> {
        self.check_payable(user, now)?;
        self.status = ReservationStatus::Confirmed;
        Ok(())
    }

    /// HELD → CANCELLED, by its own user while the hold lasts.
    pub fn cancel(&mut self, user: UserId, now: OffsetDateTime) -> Result<(), CancelRefused> {
        if !self.belongs_to(user) {
            return Err(CancelRefused::NotYours);
        }
        match self.status_at(now) {
            ReservationStatus::Held => {
                self.status = ReservationStatus::Cancelled;
                Ok(())
            }
            _ => Err(CancelRefused::NotHeld),
        }
    }

    /// HELD → EXPIRED once the deadline has passed (the sweeper's tidy-up).
    pub fn expire(&mut self, now: OffsetDateTime) -> Result<(), ExpireRefused> {
        match (self.status, self.status_at(now)) {
            (ReservationStatus::Held, ReservationStatus::Expired) => {
                self.status = ReservationStatus::Expired;
                Ok(())
            }
            (ReservationStatus::Held, _) => Err(ExpireRefused::StillLive),
            _ => Err(ExpireRefused::NotHeld),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::{date, datetime};
    use uuid::Uuid;

    use super::*;
    use crate::SeatCount;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn owner() -> UserId {
        UserId::from_uuid(Uuid::from_u128(1))
    }

    fn stranger() -> UserId {
        UserId::from_uuid(Uuid::from_u128(2))
    }

    fn held() -> Reservation {
        Reservation {
            id: ReservationId::new(41).expect("id"),
            user: owner(),
            concert_id: ConcertId::new(1).expect("id"),
            date: date!(2026 - 12 - 24),
            seat_no: SeatNo::parse(7, SeatCount::DEFAULT).expect("seat"),
            price: Price::from_stored(120_000),
            status: ReservationStatus::Held,
            expires_at: NOW + Duration::minutes(5),
        }
    }

    #[test]
    fn held_reservation_is_confirmed_by_its_user() {
        let mut r = held();
        assert_eq!(r.confirm(owner(), NOW), Ok(()));
        assert_eq!(
            r.status_at(NOW + Duration::days(1)),
            ReservationStatus::Confirmed
        );
    }

    #[test]
    fn paying_a_lapsed_hold_is_refused_as_expired() {
        let mut r = held();
        let lapsed = NOW + Duration::minutes(5);
        assert_eq!(r.status_at(lapsed), ReservationStatus::Expired);
        assert_eq!(r.confirm(owner(), lapsed), Err(PayRefused::Expired));
        assert_eq!(
            r.status,
            ReservationStatus::Held,
            "a refusal changes nothing"
        );
    }

    #[test]
    fn paying_another_users_reservation_is_refused_as_not_found() {
        let mut r = held();
        assert_eq!(r.confirm(stranger(), NOW), Err(PayRefused::NotYours));
        assert_eq!(r.cancel(stranger(), NOW), Err(CancelRefused::NotYours));
    }

    #[test]
    fn confirmed_reservation_cannot_be_paid_or_cancelled_again() {
        let mut r = held();
        r.confirm(owner(), NOW).expect("paid");
        assert_eq!(r.confirm(owner(), NOW), Err(PayRefused::NotHeld));
        assert_eq!(r.cancel(owner(), NOW), Err(CancelRefused::NotHeld));
        assert_eq!(
            r.expire(NOW + Duration::hours(1)),
            Err(ExpireRefused::NotHeld)
        );
    }

    #[test]
    fn held_reservation_is_cancelled_and_then_refuses_everything() {
        let mut r = held();
        assert_eq!(r.cancel(owner(), NOW), Ok(()));
        assert_eq!(r.status_at(NOW), ReservationStatus::Cancelled);
        assert_eq!(r.cancel(owner(), NOW), Err(CancelRefused::NotHeld));
        assert_eq!(r.confirm(owner(), NOW), Err(PayRefused::NotHeld));
    }

    #[test]
    fn lapsed_hold_cannot_be_cancelled() {
        let mut r = held();
        assert_eq!(
            r.cancel(owner(), NOW + Duration::minutes(6)),
            Err(CancelRefused::NotHeld)
        );
    }

    #[test]
    fn sweeper_expires_only_lapsed_holds() {
        let mut r = held();
        assert_eq!(r.expire(NOW), Err(ExpireRefused::StillLive));
        assert_eq!(r.expire(NOW + Duration::minutes(5)), Ok(()));
        assert_eq!(r.status, ReservationStatus::Expired);
        assert_eq!(r.confirm(owner(), NOW), Err(PayRefused::Expired));
    }

    #[test]
    fn hold_limit_allows_up_to_its_value() {
        let limit = HoldLimit::new(4).expect("limit");
        assert!(limit.allows_another(3).is_ok());
        assert_eq!(limit.allows_another(4), Err(HoldLimitReached { limit: 4 }));
        assert!(HoldLimit::new(0).is_none());
    }

    #[test]
    fn user_holds_count_only_holds_live_at_now() {
        assert_eq!(UserHolds::default().live_at(NOW), 0);
        let holds = UserHolds::new(vec![
            NOW - Duration::seconds(1),
            NOW,
            NOW + Duration::seconds(1),
            NOW + Duration::minutes(5),
        ]);
        assert_eq!(holds.live_at(NOW), 2, "a hold ends exactly at its deadline");
        assert_eq!(holds.live_at(NOW - Duration::seconds(1)), 3);
        assert_eq!(holds.live_at(NOW - Duration::minutes(1)), 4);
        assert_eq!(holds.live_at(NOW + Duration::seconds(1)), 1);
        assert_eq!(holds.live_at(NOW + Duration::minutes(5)), 0);
    }

    #[test]
    fn hold_limit_admits_while_live_holds_are_under_it() {
        let limit = HoldLimit::new(2).expect("limit");
        let live = NOW + Duration::minutes(1);
        assert_eq!(limit.admits(&UserHolds::default(), NOW), Ok(()));
        assert_eq!(limit.admits(&UserHolds::new(vec![live]), NOW), Ok(()));
        assert_eq!(
            limit.admits(&UserHolds::new(vec![live, live]), NOW),
            Err(HoldLimitReached { limit: 2 })
        );
        let one_lapsed = UserHolds::new(vec![live, NOW, NOW - Duration::hours(1)]);
        assert_eq!(
            limit.admits(&one_lapsed, NOW),
            Ok(()),
            "lapsed holds still stored HELD do not count"
        );
        assert_eq!(
            limit.admits(&one_lapsed, NOW - Duration::hours(2)),
            Err(HoldLimitReached { limit: 2 }),
            "at an earlier instant all three were live"
        );
        let at_one = HoldLimit::new(1).expect("limit");
        assert_eq!(
            at_one.admits(&UserHolds::new(vec![live]), NOW),
            Err(HoldLimitReached { limit: 1 })
        );
        assert_eq!(at_one.admits(&UserHolds::new(vec![live]), live), Ok(()));
    }

    #[test]
    fn status_names_round_trip() {
        for status in [
            ReservationStatus::Held,
            ReservationStatus::Confirmed,
            ReservationStatus::Expired,
            ReservationStatus::Cancelled,
        ] {
            assert_eq!(ReservationStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ReservationStatus::parse("held"), None);
    }
}
