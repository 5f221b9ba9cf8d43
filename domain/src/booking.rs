//! The rules that span several aggregates: taking a hold (a seat and the user's other holds),
//! paying (the reservation, its seat and the payer's wallet), cancelling and tidying up a lapsed
//! hold (a reservation and its seat).
//!
//! Each function checks every rule before it changes anything, so a refusal leaves all of its
//! arguments as they were; on success the arguments hold the new state, which a store writes
//! atomically (compare-and-set on the state that was read).

use time::{Duration, OffsetDateTime};

use crate::reservation::{
    CancelRefused, ExpireRefused, HoldLimit, HoldLimitReached, PayRefused, Reservation, UserHolds,
};
use crate::seat::{HoldRefused, Seat, SellRefused};
use crate::wallet::{BalanceChange, DebitRefused, Wallet};
use crate::{ConcertId, ReservationId, UserId};

/// Why a hold was refused. The limit is checked first: a user at the limit hears so, whatever
/// the seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HoldDenied {
    #[error(transparent)]
    LimitReached(#[from] HoldLimitReached),
    #[error(transparent)]
    SeatUnavailable(#[from] HoldRefused),
}

/// A granted hold: the new reservation, and the lapsed one it took the seat from (to be written
/// `EXPIRED` with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldGranted {
    pub reservation: Reservation,
    pub replaced: Option<ReservationId>,
}

/// What a hold asks for, beyond the seat and the user's holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldTerms {
    /// The id the store set aside for the new reservation.
    pub reservation: ReservationId,
    pub holder: UserId,
    pub concert_id: ConcertId,
    pub date: time::Date,
    pub limit: HoldLimit,
    pub ttl: Duration,
}

/// Holds `seat` for `terms.holder` until `now + ttl`, if the holder is under the hold limit and
/// the seat is free at `now` (never held, or its hold lapsed).
pub fn hold(
    seat: &mut Seat,
    holds: &UserHolds,
    terms: HoldTerms,
    now: OffsetDateTime,
) -> Result<HoldGranted, HoldDenied> {
    terms.limit.admits(holds, now)?;
    let granted = seat.hold(terms.reservation, terms.holder, now, terms.ttl)?;
    let reservation = Reservation::held(
        terms.reservation,
        terms.holder,
        crate::reservation::SeatRef {
            concert_id: terms.concert_id,
            date: terms.date,
            seat_no: seat.no(),
        },
        seat.price(),
        granted.until,
    );
    Ok(HoldGranted {
        reservation,
        replaced: granted.replaced,
    })
}

/// Why a payment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PaymentDenied {
    #[error(transparent)]
    Reservation(#[from] PayRefused),
    #[error(transparent)]
    InsufficientBalance(#[from] DebitRefused),
}

/// Pays `reservation` from `wallet`: the payer's own reservation, still held at `now`, whose
/// seat is still held by it; the balance must cover the price. On success the reservation is
/// `CONFIRMED`, the seat sold to the payer and the price taken off the wallet.
pub fn pay(
    reservation: &mut Reservation,
    seat: &mut Seat,
    wallet: &mut Wallet,
    payer: UserId,
    now: OffsetDateTime,
) -> Result<BalanceChange, PaymentDenied> {
    let mut confirmed = reservation.clone();
    confirmed.confirm(payer, now)?;
    let mut sold = seat.clone();
    sold.sell(reservation.id(), now)
        .map_err(|refused| match refused {
            SellRefused::HoldLapsed => PayRefused::Expired,
            // The seat went to another hold: this reservation no longer holds it.
            SellRefused::NotHeldByReservation => PayRefused::NotHeld,
        })?;
    let change = wallet.debit(reservation.price(), now)?;
    *reservation = confirmed;
    *seat = sold;
    Ok(change)
}

/// Cancels `user`'s held reservation and frees its seat at once. Returns whether the seat was
/// still held by it (and so is now free).
pub fn cancel(
    reservation: &mut Reservation,
    seat: &mut Seat,
    user: UserId,
    now: OffsetDateTime,
) -> Result<bool, CancelRefused> {
    reservation.cancel(user, now)?;
    Ok(seat.release(reservation.id()))
}

/// Writes down a hold that has lapsed: the reservation reads `EXPIRED` and its seat, if still
/// claimed by it, is free. Correctness never waits for this; it only tidies.
pub fn expire(
    reservation: &mut Reservation,
    seat: &mut Seat,
    now: OffsetDateTime,
) -> Result<bool, ExpireRefused> {
    reservation.expire(now)?;
    Ok(seat.release(reservation.id()))
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};
    use uuid::Uuid;

    use super::*;
    use crate::reservation::{ReservationStatus, SeatRef};
    use crate::seat::SeatClaim;
    use crate::{Amount, Balance, Price, SeatCount, SeatNo, WalletLimits};

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
    const TTL: Duration = Duration::minutes(5);

    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }

    fn id(n: i64) -> ReservationId {
        ReservationId::new(n).expect("id")
    }

    fn seat() -> Seat {
        Seat::available(
            SeatNo::parse(7, SeatCount::DEFAULT).expect("seat"),
            Price::from_stored(100),
        )
    }

    fn terms(reservation: i64, holder: u128) -> HoldTerms {
        HoldTerms {
            reservation: id(reservation),
            holder: user(holder),
            concert_id: ConcertId::new(1).expect("concert"),
            date: date!(2026 - 12 - 24),
            limit: HoldLimit::new(2).expect("limit"),
            ttl: TTL,
        }
    }

    fn wallet(balance: i64) -> Wallet {
        let mut wallet = Wallet::empty(user(1));
        if balance > 0 {
            let amount = Amount::parse(balance, balance).expect("amount");
            wallet
                .charge(amount, WalletLimits::default(), NOW)
                .expect("charged");
        }
        wallet
    }

    #[test]
    fn hold_creates_a_held_reservation_at_the_seats_price() {
        let mut seat = seat();
        let granted = hold(&mut seat, &UserHolds::default(), terms(5, 1), NOW).expect("held");
        assert_eq!(granted.replaced, None);
        let reservation = granted.reservation;
        assert_eq!(reservation.id(), id(5));
        assert_eq!(reservation.user(), user(1));
        assert_eq!(reservation.price(), Price::from_stored(100));
        assert_eq!(reservation.expires_at(), NOW + TTL);
        assert_eq!(reservation.status_at(NOW), ReservationStatus::Held);
        assert!(!seat.is_available(NOW));
    }

    #[test]
    fn hold_limit_is_checked_first_and_counts_only_live_holds() {
        let mut taken = seat();
        taken
            .hold(id(1), user(9), NOW, TTL)
            .expect("someone else's hold");
        let full = UserHolds::new(vec![NOW + TTL, NOW + TTL]);
        assert!(matches!(
            hold(&mut taken.clone(), &full, terms(5, 1), NOW),
            Err(HoldDenied::LimitReached(_))
        ));
        let one_lapsed = UserHolds::new(vec![NOW + TTL, NOW]);
        assert_eq!(
            hold(&mut taken, &one_lapsed, terms(5, 1), NOW),
            Err(HoldDenied::SeatUnavailable(HoldRefused::HeldByOther))
        );
        let mut free = seat();
        assert!(hold(&mut free, &one_lapsed, terms(5, 1), NOW).is_ok());
    }

    #[test]
    fn a_refused_hold_leaves_the_seat_as_it_was() {
        let mut seat = seat();
        let full = UserHolds::new(vec![NOW + TTL, NOW + TTL]);
        let before = seat.clone();
        assert!(hold(&mut seat, &full, terms(5, 1), NOW).is_err());
        assert_eq!(seat, before);
    }

    fn held(seat: &mut Seat, reservation: i64, holder: u128) -> Reservation {
        hold(seat, &UserHolds::default(), terms(reservation, holder), NOW)
            .expect("held")
            .reservation
    }

    #[test]
    fn payment_confirms_sells_and_debits() {
        let mut seat = seat();
        let mut reservation = held(&mut seat, 5, 1);
        let mut wallet = wallet(150);
        let change = pay(&mut reservation, &mut seat, &mut wallet, user(1), NOW).expect("paid");
        assert_eq!(change.amount, -100);
        assert_eq!(wallet.balance(), Balance::new(50).expect("balance"));
        assert_eq!(reservation.stored_status(), ReservationStatus::Confirmed);
        assert_eq!(
            seat.claim(),
            SeatClaim::Sold {
                reservation: id(5),
                owner: user(1)
            }
        );
    }

    #[test]
    fn a_refused_payment_changes_nothing() {
        let mut seat = seat();
        let mut reservation = held(&mut seat, 5, 1);
        let mut wallet = wallet(99);
        let before = (reservation.clone(), seat.clone(), wallet);
        assert!(matches!(
            pay(&mut reservation, &mut seat, &mut wallet, user(1), NOW),
            Err(PaymentDenied::InsufficientBalance(_))
        ));
        assert_eq!((reservation.clone(), seat.clone(), wallet), before);
        assert_eq!(
            pay(&mut reservation, &mut seat, &mut wallet, user(2), NOW),
            Err(PaymentDenied::Reservation(PayRefused::NotYours))
        );
        assert_eq!(
            pay(&mut reservation, &mut seat, &mut wallet, user(1), NOW + TTL),
            Err(PaymentDenied::Reservation(PayRefused::Expired))
        );
        assert_eq!((reservation, seat, wallet), before);
    }

    #[test]
    fn a_seat_taken_over_by_another_hold_cannot_be_paid() {
        let mut seat = seat();
        let mut stale = Reservation::held(
            id(4),
            user(1),
            SeatRef {
                concert_id: ConcertId::new(1).expect("concert"),
                date: date!(2026 - 12 - 24),
                seat_no: seat.no(),
            },
            seat.price(),
            NOW + TTL,
        );
        let _other = held(&mut seat, 5, 2);
        let mut wallet = wallet(150);
        assert_eq!(
            pay(&mut stale, &mut seat, &mut wallet, user(1), NOW),
            Err(PaymentDenied::Reservation(PayRefused::NotHeld))
        );
    }

    #[test]
    fn cancel_and_expire_free_the_seat_they_hold() {
        let mut seat = seat();
        let mut reservation = held(&mut seat, 5, 1);
        assert_eq!(
            cancel(&mut reservation.clone(), &mut seat.clone(), user(2), NOW),
            Err(CancelRefused::NotYours)
        );
        assert_eq!(
            expire(&mut reservation.clone(), &mut seat.clone(), NOW),
            Err(ExpireRefused::StillLive)
        );
        let mut lapsed_seat = seat.clone();
        assert_eq!(
            expire(&mut reservation.clone(), &mut lapsed_seat, NOW + TTL),
            Ok(true)
        );
        assert!(lapsed_seat.is_available(NOW));
        assert_eq!(cancel(&mut reservation, &mut seat, user(1), NOW), Ok(true));
        assert!(seat.is_available(NOW));
        assert_eq!(reservation.stored_status(), ReservationStatus::Cancelled);
    }
}
