//! `ReservationRepository`: holds are written over the versions read, so a seat goes to one
//! claim and a user never passes the hold limit however requests interleave; a lapsed hold is
//! free to take; releases (cancellations, the sweeper's expiries) are written once.

use std::sync::Arc;

use concert_application::ports::{ReleaseWrite, Versioned, Written};
use concert_domain::booking;
use concert_domain::reservation::HoldLimitReached;
use concert_domain::seat::HoldRefused;
use concert_domain::{
    HoldDenied, HoldLimit, ReservationId, ReservationStatus, SeatClaim, UserHolds,
};
use time::Duration;

use crate::fixtures::{
    HOLD_TTL, NOW, concert, decide_hold, finish, hold, load_hold, race, seat_ref, shared, try_hold,
    user,
};
use crate::{RACERS, Store};

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
