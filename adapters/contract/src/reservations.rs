//! `ReservationRepository`: holds are written over the versions read, so a seat goes to one
//! claim and a user never passes the hold limit however requests interleave; a lapsed hold is
//! free to take; releases (cancellations, the sweeper's expiries) are written once.

use std::sync::Arc;

use concert_application::ports::{HoldState, HoldWrite, ReleaseWrite, Version, Versioned, Written};
use concert_domain::booking;
use concert_domain::reservation::HoldLimitReached;
use concert_domain::seat::HoldRefused;
use concert_domain::{
    HoldDenied, HoldLimit, Price, Reservation, ReservationId, ReservationStatus, Seat, SeatClaim,
    SeatRef, UserHolds, UserId,
};
use time::{Duration, OffsetDateTime};

use crate::fixtures::{
    DATE, HOLD_TTL, NOW, PRICE, active_ticket, charge, concert, decide_cancel, decide_expiries,
    decide_hold, finish, fixed, hold, instance, load_hold, paid, pay, race, seat_no, seat_ref,
    shared, try_hold, user,
};
use crate::{RACERS, RowTimes, Store};

/// Loads `who`'s hold of `seat` and lets the domain grant it (default limit); panics if refused.
async fn granted<S: Store>(
    store: &S,
    who: UserId,
    seat: SeatRef,
    now: OffsetDateTime,
) -> (HoldState, HoldWrite) {
    let state = load_hold(store, who, seat).await;
    let write = decide_hold(&state, who, seat, HoldLimit::DEFAULT, now).expect("granted");
    (state, write)
}

/// The version of the reservation's row, as loaded.
async fn reservation_version<S: Store>(store: &S, id: ReservationId) -> Version {
    store
        .reservations()
        .load_booking(id)
        .await
        .expect("load_booking")
        .expect("stored")
        .reservation
        .version
}

async fn status<S: Store>(store: &S, id: ReservationId) -> ReservationStatus {
    store
        .reservations()
        .find(id)
        .await
        .expect("find")
        .expect("stored")
        .stored_status()
}

pub async fn a_seat_claim_is_won_once<S: Store>() {
    let store = shared::<S>().await;
    let gala = concert(&*store, 4).await;
    let users: Vec<_> = (0..RACERS).map(|_| user()).collect();
    let outcomes = race(RACERS, |i| {
        let (store, who) = (Arc::clone(&store), users[i]);
        async move { try_hold(&*store, who, seat_ref(gala, 1), HoldLimit::DEFAULT, NOW).await }
    })
    .await;
    let won: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "exactly one hold is written: {outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || *o == Err(HoldDenied::SeatUnavailable(HoldRefused::HeldByOther))),
        "every loser reads the winner's claim: {outcomes:?}"
    );
    let seat = load_hold(&*store, user(), seat_ref(gala, 1))
        .await
        .seat
        .value;
    assert_eq!(
        seat.claim(),
        SeatClaim::Held {
            reservation: won[0].id(),
            holder: won[0].user(),
            until: NOW + HOLD_TTL,
        }
    );
    finish(store).await;
}

pub async fn the_hold_limit_holds_under_a_race<S: Store>() {
    let store = shared::<S>().await;
    let gala = concert(&*store, RACERS as i64).await;
    let who = user();
    let limit = HoldLimit::new(2).expect("a limit");
    let outcomes = race(RACERS, |i| {
        let store = Arc::clone(&store);
        async move { try_hold(&*store, who, seat_ref(gala, i as i64 + 1), limit, NOW).await }
    })
    .await;
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        2,
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().all(
            |o| o.is_ok() || *o == Err(HoldDenied::LimitReached(HoldLimitReached { limit: 2 }))
        ),
        "{outcomes:?}"
    );
    let holds = load_hold(&*store, who, seat_ref(gala, 1)).await.holds.value;
    assert_eq!(holds.live_at(NOW), 2);
    assert_eq!(
        store
            .reservations()
            .count_live_holds(NOW)
            .await
            .expect("count"),
        2
    );
    finish(store).await;
}

pub async fn a_lapsed_hold_is_free_to_take<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 2).await;
    let (first, second) = (user(), user());
    let lapsed = hold(&store, first, seat_ref(gala, 1), NOW).await;
    let later = NOW + HOLD_TTL;

    let state = load_hold(&store, second, seat_ref(gala, 1)).await;
    let write =
        decide_hold(&state, second, seat_ref(gala, 1), HoldLimit::DEFAULT, later).expect("granted");
    assert_eq!(
        write.granted.replaced,
        Some(lapsed.id()),
        "the domain takes over the lapsed hold"
    );
    let reservations = store.reservations();
    assert_eq!(
        reservations.save_hold(&write).await.expect("save_hold"),
        Written::Done(())
    );

    let replaced = reservations
        .find(lapsed.id())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(
        replaced.stored_status(),
        ReservationStatus::Expired,
        "written EXPIRED with it"
    );
    let taken = reservations
        .find(write.granted.reservation.id())
        .await
        .expect("find");
    assert_eq!(taken, Some(write.granted.reservation.clone()));
    assert_eq!(
        load_hold(&store, first, seat_ref(gala, 2))
            .await
            .holds
            .value,
        UserHolds::new(vec![]),
        "the lapsed hold no longer counts among its holder's"
    );
    assert_eq!(
        reservations.count_live_holds(later).await.expect("count"),
        1
    );
    store.finish().await;
}

pub async fn a_hold_over_a_moved_seat_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 2).await;
    let (late, early) = (user(), user());
    let state = load_hold(&store, late, seat_ref(gala, 1)).await;
    let write =
        decide_hold(&state, late, seat_ref(gala, 1), HoldLimit::DEFAULT, NOW).expect("granted");
    let winner = hold(&store, early, seat_ref(gala, 1), NOW).await;

    let reservations = store.reservations();
    assert_eq!(
        reservations.save_hold(&write).await.expect("save_hold"),
        Written::Stale
    );
    assert_eq!(
        reservations
            .find(state.next_reservation)
            .await
            .expect("find"),
        None
    );
    let now_stored = load_hold(&store, late, seat_ref(gala, 1)).await;
    assert_eq!(
        now_stored.seat.value.claim(),
        SeatClaim::Held {
            reservation: winner.id(),
            holder: early,
            until: NOW + HOLD_TTL
        }
    );
    assert_eq!(
        now_stored.holds.value,
        UserHolds::new(vec![]),
        "no hold counted for the loser"
    );
    assert_eq!(reservations.count_live_holds(NOW).await.expect("count"), 1);
    store.finish().await;
}

pub async fn a_hold_over_moved_user_holds_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 2).await;
    let who = user();
    let one = HoldLimit::new(1).expect("a limit");
    let state = load_hold(&store, who, seat_ref(gala, 1)).await;
    let write = decide_hold(&state, who, seat_ref(gala, 1), one, NOW).expect("granted");
    // Another request of the same user takes another seat meanwhile.
    try_hold(&store, who, seat_ref(gala, 2), one, NOW)
        .await
        .expect("granted");

    let reservations = store.reservations();
    assert_eq!(
        reservations.save_hold(&write).await.expect("save_hold"),
        Written::Stale
    );
    let again = load_hold(&store, who, seat_ref(gala, 1)).await;
    assert_eq!(again.seat.value.claim(), SeatClaim::Available);
    assert_eq!(again.holds.value.live_at(NOW), 1);
    assert_eq!(
        decide_hold(&again, who, seat_ref(gala, 1), one, NOW).map(|_| ()),
        Err(HoldDenied::LimitReached(HoldLimitReached { limit: 1 })),
        "decided again, the limit is reached"
    );
    store.finish().await;
}

pub async fn a_booking_reads_back_as_written<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 2).await;
    let who = user();
    let held = hold(&store, who, seat_ref(gala, 2), NOW).await;
    let reservations = store.reservations();
    assert_eq!(
        reservations.find(held.id()).await.expect("find"),
        Some(held.clone())
    );
    let booking = reservations
        .load_booking(held.id())
        .await
        .expect("load_booking")
        .expect("the booking");
    assert_eq!(booking.reservation.value, held);
    assert_eq!(
        booking.seat.value.claim(),
        SeatClaim::Held {
            reservation: held.id(),
            holder: who,
            until: NOW + HOLD_TTL
        }
    );
    assert_eq!(booking.seat.value.no(), held.seat_no());
    let missing = ReservationId::new(held.id().get() + 1_000).expect("an id");
    assert_eq!(reservations.find(missing).await.expect("find"), None);
    assert_eq!(
        reservations.load_booking(missing).await.expect("load"),
        None
    );
    assert_eq!(
        reservations
            .load_hold(who, seat_ref(gala, 3))
            .await
            .expect("load_hold"),
        None,
        "a seat the date does not have"
    );
    store.finish().await;
}

pub async fn a_release_is_written_once_over_the_versions_read<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 1).await;
    let (who, next) = (user(), user());
    let held = hold(&store, who, seat_ref(gala, 1), NOW).await;
    let reservations = store.reservations();
    let booking = reservations
        .load_booking(held.id())
        .await
        .expect("load")
        .expect("booking");
    let (mut reservation, mut seat) = (booking.reservation.value, booking.seat.value);
    let freed = booking::cancel(&mut reservation, &mut seat, who, NOW).expect("cancelled");
    assert!(freed);
    let write = ReleaseWrite {
        reservation: Versioned::new(reservation, booking.reservation.version),
        seat: Some(Versioned::new(seat, booking.seat.version)),
        now: NOW,
    };
    assert_eq!(
        reservations
            .save_releases(std::slice::from_ref(&write))
            .await
            .expect("release"),
        1
    );
    assert_eq!(
        reservations.save_releases(&[write]).await.expect("release"),
        0,
        "the same release again is stale"
    );
    let stored = reservations
        .find(held.id())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(stored.stored_status(), ReservationStatus::Cancelled);
    assert_eq!(reservations.count_live_holds(NOW).await.expect("count"), 0);
    hold(&store, next, seat_ref(gala, 1), NOW).await;
    store.finish().await;
}

pub async fn lapsed_lists_only_holds_past_their_deadline_oldest_first<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 3).await;
    let oldest = hold(
        &store,
        user(),
        seat_ref(gala, 1),
        NOW - Duration::minutes(10),
    )
    .await;
    let at_deadline = hold(&store, user(), seat_ref(gala, 2), NOW - HOLD_TTL).await;
    let live = hold(
        &store,
        user(),
        seat_ref(gala, 3),
        NOW - Duration::minutes(1),
    )
    .await;
    let reservations = store.reservations();

    let ids = |bookings: &[concert_application::ports::Booking]| {
        bookings
            .iter()
            .map(|b| b.reservation.value.id())
            .collect::<Vec<_>>()
    };
    let lapsed = reservations.lapsed(NOW, 10).await.expect("lapsed");
    assert_eq!(ids(&lapsed), vec![oldest.id(), at_deadline.id()]);
    assert_eq!(
        ids(&reservations.lapsed(NOW, 1).await.expect("lapsed")),
        vec![oldest.id()]
    );
    assert_eq!(reservations.count_live_holds(NOW).await.expect("count"), 1);

    // The sweeper: the domain expires each, the store writes them.
    let writes: Vec<ReleaseWrite> = lapsed
        .into_iter()
        .map(|b| {
            let (mut reservation, mut seat) = (b.reservation.value, b.seat.value);
            let freed = booking::expire(&mut reservation, &mut seat, NOW).expect("lapsed");
            ReleaseWrite {
                reservation: Versioned::new(reservation, b.reservation.version),
                seat: freed.then(|| Versioned::new(seat, b.seat.version)),
                now: NOW,
            }
        })
        .collect();
    assert_eq!(
        reservations.save_releases(&writes).await.expect("release"),
        2
    );
    assert_eq!(reservations.lapsed(NOW, 10).await.expect("lapsed"), vec![]);
    let expired = reservations
        .find(oldest.id())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(expired.stored_status(), ReservationStatus::Expired);
    let still = reservations
        .find(live.id())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(still.stored_status(), ReservationStatus::Held);
    store.finish().await;
}

pub async fn load_hold_gives_the_seat_the_users_holds_and_their_versions<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let repo = store.reservations();
    let holder = user();

    let fresh = load_hold(&store, holder, seat_ref(gala, 7)).await;
    assert_eq!(fresh.seat.version, Version::new(1));
    assert_eq!(fresh.seat.value.claim(), SeatClaim::Available);
    assert_eq!(fresh.seat.value.no().get(), 7);
    assert_eq!(fresh.seat.value.price().get(), PRICE);
    assert_eq!(fresh.holds.version, Version::ABSENT, "a user never seen");
    assert_eq!(fresh.holds.value, UserHolds::default());
    let again = load_hold(&store, holder, seat_ref(gala, 7)).await;
    assert_ne!(
        again.next_reservation, fresh.next_reservation,
        "every load sets a new id aside"
    );
    assert_eq!(
        repo.load_hold(holder, seat_ref(gala, 11))
            .await
            .expect("load"),
        None,
        "a seat that does not exist"
    );

    let reservation = hold(&store, holder, seat_ref(gala, 7), NOW).await;
    let loaded = load_hold(&store, holder, seat_ref(gala, 8)).await;
    assert_eq!(loaded.holds.version, Version::new(1));
    assert_eq!(loaded.holds.value, UserHolds::new(vec![NOW + HOLD_TTL]));
    let held = load_hold(&store, user(), seat_ref(gala, 7)).await;
    assert_eq!(held.seat.version, Version::new(2));
    assert_eq!(
        held.seat.value.claim(),
        SeatClaim::Held {
            reservation: reservation.id(),
            holder,
            until: NOW + HOLD_TTL
        }
    );
    assert_eq!(held.holds.version, Version::ABSENT, "another user's holds");
    store.finish().await;
}

pub async fn a_hold_over_the_versions_read_writes_the_claim_the_reservation_and_the_holder<
    S: Store,
>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let holder = user();
    let repo = store.reservations();

    let (state, write) = granted(&store, holder, seat_ref(gala, 7), NOW).await;
    assert_eq!(
        repo.save_hold(&write).await.expect("save"),
        Written::Done(())
    );

    let reservation = write.granted.reservation.clone();
    assert_eq!(reservation.id(), state.next_reservation);
    assert_eq!(reservation.user(), holder);
    assert_eq!(reservation.seat(), seat_ref(gala, 7));
    assert_eq!(reservation.price().get(), PRICE);
    assert_eq!(reservation.stored_status(), ReservationStatus::Held);
    assert_eq!(reservation.expires_at(), NOW + HOLD_TTL);
    assert_eq!(
        repo.find(reservation.id()).await.expect("find"),
        Some(reservation.clone())
    );
    let seat = load_hold(&store, user(), seat_ref(gala, 7)).await.seat;
    assert_eq!(seat.version, Version::new(2));
    assert_eq!(
        seat.value.claim(),
        SeatClaim::Held {
            reservation: reservation.id(),
            holder,
            until: NOW + HOLD_TTL
        }
    );
    assert_eq!(
        reservation_version(&store, reservation.id()).await,
        Version::new(1)
    );
    assert_eq!(
        store.reservation_times(reservation.id()).await,
        Some(RowTimes {
            created_at: NOW,
            updated_at: NOW
        })
    );
    assert_eq!(
        load_hold(&store, holder, seat_ref(gala, 9))
            .await
            .holds
            .version,
        Version::new(1)
    );
    // The next hold of the same user bumps the holder's version again.
    hold(&store, holder, seat_ref(gala, 8), NOW).await;
    assert_eq!(
        load_hold(&store, holder, seat_ref(gala, 9))
            .await
            .holds
            .version,
        Version::new(2)
    );
    let missing = ReservationId::new(reservation.id().get() + 1000).expect("an id");
    assert_eq!(repo.find(missing).await.expect("find"), None);
    store.finish().await;
}

pub async fn a_hold_over_an_older_seat_version_is_stale_and_leaves_no_reservation<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let repo = store.reservations();
    let (first, second) = (user(), user());
    // Both decided on the same free seat; the first is written.
    let (_, winner) = granted(&store, first, seat_ref(gala, 7), NOW).await;
    let (_, loser) = granted(&store, second, seat_ref(gala, 7), NOW).await;
    assert_eq!(
        repo.save_hold(&winner).await.expect("save"),
        Written::Done(())
    );
    let winner_claim = || async {
        let seat = load_hold(&store, user(), seat_ref(gala, 7)).await.seat;
        (seat.version, seat.value.claim())
    };
    let claimed = (
        Version::new(2),
        SeatClaim::Held {
            reservation: winner.granted.reservation.id(),
            holder: first,
            until: NOW + HOLD_TTL,
        },
    );
    assert_eq!(winner_claim().await, claimed);

    assert_eq!(repo.save_hold(&loser).await.expect("save"), Written::Stale);
    assert_eq!(
        store.booking_counts().await.reservations,
        1,
        "no reservation without its claim"
    );
    assert_eq!(
        winner_claim().await,
        claimed,
        "the winner's claim is untouched"
    );
    assert_eq!(
        repo.find(loser.granted.reservation.id())
            .await
            .expect("find"),
        None
    );
    // The loser's holds are as they were: reloaded, it is free to hold another seat.
    let (reloaded, retry) = granted(&store, second, seat_ref(gala, 8), NOW).await;
    assert_eq!(reloaded.holds.value, UserHolds::default());
    assert_eq!(
        repo.save_hold(&retry).await.expect("save"),
        Written::Done(())
    );
    // The stale write cannot be replayed over the old seat version either.
    assert_eq!(repo.save_hold(&loser).await.expect("save"), Written::Stale);
    assert_eq!(store.booking_counts().await.reservations, 2);
    store.finish().await;
}

pub async fn a_hold_over_an_older_holds_version_is_stale_and_claims_no_seat<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let repo = store.reservations();
    let holder = user();
    // Two holds of one user decided on the same (empty) holds, on two different free seats.
    let (_, first) = granted(&store, holder, seat_ref(gala, 1), NOW).await;
    let (_, second) = granted(&store, holder, seat_ref(gala, 2), NOW).await;
    assert_eq!(
        repo.save_hold(&first).await.expect("save"),
        Written::Done(())
    );
    let before = store.booking_rows().await;

    assert_eq!(repo.save_hold(&second).await.expect("save"), Written::Stale);
    assert_eq!(store.booking_rows().await, before, "nothing written");
    assert_eq!(
        load_hold(&store, holder, seat_ref(gala, 2))
            .await
            .seat
            .version,
        Version::new(1)
    );

    // A later decision of that user on the current holds goes through, and the holder's row
    // of a user who already has one is guarded too (not only the first write of it).
    let (_, third) = granted(&store, holder, seat_ref(gala, 2), NOW).await;
    let (_, fourth) = granted(&store, holder, seat_ref(gala, 3), NOW).await;
    assert_eq!(
        repo.save_hold(&third).await.expect("save"),
        Written::Done(())
    );
    let before = store.booking_rows().await;
    assert_eq!(repo.save_hold(&fourth).await.expect("save"), Written::Stale);
    assert_eq!(store.booking_rows().await, before, "nothing written");
    store.finish().await;
}

pub async fn the_hold_limit_is_decided_on_the_deadlines_loaded_and_lapsed_holds_do_not_count<
    S: Store,
>() {
    let store = S::fresh().await;
    let gala = concert(&store, 20).await;
    let holder = user();
    let repo = store.reservations();
    let limit = HoldLimit::new(2).expect("a limit");
    for no in [1, 2] {
        let state = load_hold(&store, holder, seat_ref(gala, no)).await;
        let write = decide_hold(&state, holder, seat_ref(gala, no), limit, NOW).expect("granted");
        assert_eq!(
            repo.save_hold(&write).await.expect("save"),
            Written::Done(())
        );
    }
    let state = load_hold(&store, holder, seat_ref(gala, 3)).await;
    assert_eq!(state.holds.value.live_at(NOW), 2);
    assert!(limit.admits(&state.holds.value, NOW).is_err());
    // Once they lapse, the same stored rows no longer count: no sweeper needed.
    assert_eq!(state.holds.value.live_at(NOW + HOLD_TTL), 0);
    let later =
        decide_hold(&state, holder, seat_ref(gala, 3), limit, NOW + HOLD_TTL).expect("granted");
    assert_eq!(
        repo.save_hold(&later).await.expect("save"),
        Written::Done(())
    );
    assert_eq!(repo.count_live_holds(NOW).await.expect("count"), 3);
    assert_eq!(
        repo.count_live_holds(NOW + HOLD_TTL).await.expect("count"),
        1
    );
    store.finish().await;
}

pub async fn a_hold_over_a_lapsed_hold_writes_the_replaced_reservation_expired_in_the_same_step<
    S: Store,
>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let first = hold(&store, user(), seat_ref(gala, 5), NOW).await;
    let repo = store.reservations();
    let later = NOW + HOLD_TTL;

    // Two users decide on the same lapsed seat; the first write takes it over.
    let (state, write) = granted(&store, user(), seat_ref(gala, 5), later).await;
    let (_, twin) = granted(&store, user(), seat_ref(gala, 5), later).await;
    assert_eq!(write.granted.replaced, Some(first.id()));
    assert_eq!(state.seat.version, Version::new(2));
    assert_eq!(
        repo.save_hold(&write).await.expect("save"),
        Written::Done(())
    );

    // docs/DATABASE.md §5.1: the lapsed reservation is written EXPIRED by the same write.
    assert_eq!(status(&store, first.id()).await, ReservationStatus::Expired);
    assert_eq!(
        reservation_version(&store, first.id()).await,
        Version::new(2)
    );
    assert_eq!(
        store.reservation_times(first.id()).await,
        Some(RowTimes {
            created_at: NOW,
            updated_at: later
        })
    );
    let seat = load_hold(&store, user(), seat_ref(gala, 5)).await.seat;
    assert_eq!(seat.version, Version::new(3));
    assert!(matches!(
        seat.value.claim(),
        SeatClaim::Held { reservation, .. } if reservation == write.granted.reservation.id()
    ));
    assert!(
        repo.lapsed(later, 10).await.expect("lapsed").is_empty(),
        "nothing left for the sweeper"
    );

    // The twin's write is stale: no reservation, no claim, no holder's row, and the replaced
    // one not rewritten.
    let before = store.booking_rows().await;
    assert_eq!(repo.save_hold(&twin).await.expect("save"), Written::Stale);
    assert_eq!(store.booking_rows().await, before);
    store.finish().await;
}

/// A stale write writes nothing: a hold that is stale on its seat (but not on the user's holds)
/// must not touch the user's holds either.
pub async fn a_hold_stale_on_its_seat_writes_nothing_at_all<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let repo = store.reservations();
    let (_, winner) = granted(&store, user(), seat_ref(gala, 7), NOW).await;
    let (_, loser) = granted(&store, user(), seat_ref(gala, 7), NOW).await;
    assert_eq!(
        repo.save_hold(&winner).await.expect("save"),
        Written::Done(())
    );
    let before = store.booking_rows().await;
    assert_eq!(repo.save_hold(&loser).await.expect("save"), Written::Stale);
    assert_eq!(
        store.booking_rows().await,
        before,
        "a stale hold wrote the holder's row"
    );
    store.finish().await;
}

pub async fn load_booking_gives_the_reservation_and_its_seat_with_versions<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let holder = user();
    let reservation = hold(&store, holder, seat_ref(gala, 4), NOW).await;
    let repo = store.reservations();

    let booking = repo
        .load_booking(reservation.id())
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(booking.reservation.value, reservation);
    assert_eq!(booking.reservation.version, Version::new(1));
    assert_eq!(booking.seat.version, Version::new(2));
    assert_eq!(booking.seat.value.no().get(), 4);
    assert_eq!(booking.seat.value.price().get(), PRICE);
    assert!(matches!(
        booking.seat.value.claim(),
        SeatClaim::Held { reservation: r, holder: h, .. } if r == reservation.id() && h == holder
    ));
    let missing = ReservationId::new(reservation.id().get() + 1000).expect("an id");
    assert!(repo.load_booking(missing).await.expect("load").is_none());

    // A sold seat reads back as sold to the payer.
    charge(&store, holder, PRICE, NOW, None).await;
    let ticket = active_ticket(&store, holder, NOW).await;
    pay(&store, reservation.id(), holder, paid(ticket), NOW).await;
    let sold = repo
        .load_booking(reservation.id())
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(
        sold.reservation.value.stored_status(),
        ReservationStatus::Confirmed
    );
    assert_eq!(sold.reservation.version, Version::new(2));
    assert_eq!(sold.seat.version, Version::new(3));
    assert_eq!(
        sold.seat.value.claim(),
        SeatClaim::Sold {
            reservation: reservation.id(),
            owner: holder
        }
    );
    store.finish().await;
}

pub async fn a_release_over_the_versions_read_frees_the_seat_and_a_stale_one_writes_nothing<
    S: Store,
>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let reservation = hold(&store, user(), seat_ref(gala, 8), NOW).await;
    let repo = store.reservations();
    let at = NOW + Duration::seconds(10);

    let write = decide_cancel(&store, reservation.id(), at).await;
    assert!(write.seat.is_some());
    assert_eq!(
        repo.save_releases(std::slice::from_ref(&write))
            .await
            .expect("save"),
        1
    );
    assert_eq!(
        status(&store, reservation.id()).await,
        ReservationStatus::Cancelled
    );
    assert_eq!(
        reservation_version(&store, reservation.id()).await,
        Version::new(2)
    );
    assert_eq!(
        store.reservation_times(reservation.id()).await,
        Some(RowTimes {
            created_at: NOW,
            updated_at: at
        })
    );
    let seat = load_hold(&store, user(), seat_ref(gala, 8)).await.seat;
    assert_eq!(seat.version, Version::new(3));
    assert_eq!(
        seat.value.claim(),
        SeatClaim::Available,
        "the seat is free again"
    );
    assert!(
        store
            .catalog()
            .available_seats(gala, DATE, at)
            .await
            .expect("seats")
            .iter()
            .any(|s| s.seat_no.get() == 8)
    );

    // The same write again, over versions that are now old: nothing is written.
    let before = store.booking_rows().await;
    assert_eq!(repo.save_releases(&[write]).await.expect("save"), 0);
    assert_eq!(store.booking_rows().await, before);
    store.finish().await;
}

pub async fn a_release_over_an_older_seat_or_reservation_version_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let reservation = hold(&store, user(), seat_ref(gala, 2), NOW).await;
    let repo = store.reservations();
    let write = decide_cancel(&store, reservation.id(), NOW).await;
    // Another write of the seat alone.
    store.bump_seat(seat_ref(gala, 2)).await;
    let before = store.booking_rows().await;
    assert_eq!(repo.save_releases(&[write]).await.expect("save"), 0);
    assert_eq!(store.booking_rows().await, before);
    // And over an older reservation version, with the seat unchanged.
    let write = decide_cancel(&store, reservation.id(), NOW).await;
    store.bump_reservation(reservation.id()).await;
    let before = store.booking_rows().await;
    assert_eq!(repo.save_releases(&[write]).await.expect("save"), 0);
    assert_eq!(store.booking_rows().await, before);
    store.finish().await;
}

pub async fn a_release_that_leaves_the_seat_alone_checks_only_the_reservation<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let holder = user();
    let reservation = hold(&store, holder, seat_ref(gala, 6), NOW).await;
    let repo = store.reservations();
    // The domain decided the seat no longer carries this reservation's claim (`seat: None`):
    // a write of the seat meanwhile does not make the release stale, and the seat is untouched.
    let booking = repo
        .load_booking(reservation.id())
        .await
        .expect("load")
        .expect("stored");
    let mut cancelled = booking.reservation.value.clone();
    cancelled.cancel(holder, NOW).expect("cancellable");
    let write = ReleaseWrite {
        reservation: Versioned::new(cancelled, booking.reservation.version),
        seat: None,
        now: NOW,
    };
    store.bump_seat(seat_ref(gala, 6)).await;
    assert_eq!(repo.save_releases(&[write]).await.expect("save"), 1);
    assert_eq!(
        status(&store, reservation.id()).await,
        ReservationStatus::Cancelled
    );
    assert_eq!(
        load_hold(&store, user(), seat_ref(gala, 6))
            .await
            .seat
            .version,
        Version::new(3),
        "the seat untouched"
    );
    store.finish().await;
}

pub async fn lapsed_gives_only_held_reservations_at_or_past_their_deadline_oldest_first<
    S: Store,
>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let repo = store.reservations();
    let buyer = user();
    let at = |no| seat_ref(gala, no);
    let oldest = hold(&store, user(), at(1), NOW).await;
    let middle = hold(&store, user(), at(2), NOW + Duration::seconds(1)).await;
    let exact = hold(&store, user(), at(3), NOW + Duration::seconds(2)).await;
    let live = hold(&store, user(), at(4), NOW + Duration::minutes(3)).await;
    let cancelled = hold(&store, user(), at(5), NOW).await;
    let sold = hold(&store, buyer, at(6), NOW).await;
    let write = decide_cancel(&store, cancelled.id(), NOW).await;
    assert_eq!(repo.save_releases(&[write]).await.expect("cancel"), 1);
    charge(&store, buyer, PRICE, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    pay(&store, sold.id(), buyer, paid(ticket), NOW).await;

    // Exactly at the third hold's deadline: it is lapsed (a hold ends at its deadline).
    let sweep_at = exact.expires_at();
    let lapsed = repo.lapsed(sweep_at, 10).await.expect("lapsed");
    let ids: Vec<ReservationId> = lapsed.iter().map(|b| b.reservation.value.id()).collect();
    assert_eq!(ids, vec![oldest.id(), middle.id(), exact.id()]);
    for found in &lapsed {
        assert_eq!(found.reservation.version, Version::new(1));
        assert_eq!(found.seat.version, Version::new(2));
        assert_eq!(found.seat.value.no(), found.reservation.value.seat_no());
    }
    assert!(!ids.contains(&live.id()));
    let batch = repo.lapsed(sweep_at, 2).await.expect("lapsed");
    assert_eq!(
        batch
            .iter()
            .map(|b| b.reservation.value.id())
            .collect::<Vec<_>>(),
        vec![oldest.id(), middle.id()]
    );
    assert!(
        repo.lapsed(sweep_at - Duration::microseconds(1), 10)
            .await
            .expect("lapsed")
            .iter()
            .all(|b| b.reservation.value.id() != exact.id()),
        "one microsecond before its deadline a hold is live"
    );
    store.finish().await;
}

pub async fn save_releases_writes_each_release_on_its_own_and_counts_them<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let repo = store.reservations();
    let mut held: Vec<Reservation> = Vec::new();
    for no in 1..=3 {
        held.push(hold(&store, user(), seat_ref(gala, no), NOW).await);
    }
    let sweep_at = NOW + HOLD_TTL;
    let writes = decide_expiries(&store, sweep_at).await;
    assert_eq!(writes.len(), 3);
    // Meanwhile the second seat is taken over by a new hold: that release alone is stale.
    let newer = hold(&store, user(), seat_ref(gala, 2), sweep_at).await;

    assert_eq!(repo.save_releases(&writes).await.expect("save"), 2);
    assert_eq!(
        status(&store, held[0].id()).await,
        ReservationStatus::Expired
    );
    assert_eq!(
        status(&store, held[1].id()).await,
        ReservationStatus::Expired,
        "written by the hold that took its seat over"
    );
    assert_eq!(
        reservation_version(&store, held[1].id()).await,
        Version::new(2),
        "once, by the hold: the sweep's stale release wrote nothing"
    );
    assert_eq!(
        status(&store, held[2].id()).await,
        ReservationStatus::Expired
    );
    assert_eq!(store.booking_counts().await.held_seats, 1);
    assert!(matches!(
        load_hold(&store, user(), seat_ref(gala, 2)).await.seat.value.claim(),
        SeatClaim::Held { reservation, .. } if reservation == newer.id()
    ));
    assert_eq!(repo.save_releases(&writes).await.expect("again"), 0);
    assert_eq!(repo.save_releases(&[]).await.expect("none"), 0);
    store.finish().await;
}

pub async fn the_sweeper_expires_lapsed_holds_and_leaves_live_ones<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let lapsing = [
        hold(&store, user(), seat_ref(gala, 1), NOW).await,
        hold(&store, user(), seat_ref(gala, 2), NOW).await,
    ];
    let live = hold(
        &store,
        user(),
        seat_ref(gala, 3),
        NOW + Duration::minutes(3),
    )
    .await;
    let sweep_at = NOW + HOLD_TTL + Duration::seconds(1);
    let app = instance(&store, fixed(sweep_at), HoldLimit::DEFAULT).await;

    assert_eq!(app.sweep_lapsed_holds.run_once().await.expect("sweep"), 2);
    assert_eq!(app.sweep_lapsed_holds.run_once().await.expect("sweep"), 0);
    drop(app);
    for reservation in &lapsing {
        assert_eq!(
            status(&store, reservation.id()).await,
            ReservationStatus::Expired
        );
    }
    assert_eq!(status(&store, live.id()).await, ReservationStatus::Held);
    assert_eq!(
        store.booking_counts().await.held_seats,
        1,
        "only the live hold keeps its seat claim"
    );
    // A seat that is free again reads so through the domain too.
    assert_eq!(
        load_hold(&store, user(), seat_ref(gala, 1))
            .await
            .seat
            .value,
        Seat::available(seat_no(1), Price::from_stored(PRICE))
    );
    store.finish().await;
}
