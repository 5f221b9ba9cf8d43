//! `SqliteReservationRepository`'s contract (the PostgreSQL adapter's, `reservations.rs` there):
//! loads carry versions, a write over the versions read is `Done` and bumps them, a write over
//! an older version is `Stale` and writes nothing.

use concert_application::ports::{
    ReleaseWrite, ReservationRepository, Version, Versioned, Written,
};
use concert_domain::booking;
use concert_domain::{
    HoldLimit, Price, Reservation, ReservationId, ReservationStatus, Seat, SeatClaim, UserHolds,
};
use time::{Duration, OffsetDateTime};

use crate::booking_support::{
    Ctx, HOLD_TTL, NOW, PRICE, active, active_ticket, charge, concert, decide_hold, fixed, grant,
    hold, pay, seat, seat_ref, user,
};

fn seat_version_sql(seat_no: i64) -> String {
    format!("SELECT version AS count FROM seats WHERE seat_no = {seat_no}")
}

fn reservation_version_sql(id: ReservationId) -> String {
    format!(
        "SELECT version AS count FROM reservations WHERE id = {}",
        id.get()
    )
}

/// An instant as the store keeps it (microseconds since the epoch), for raw-row assertions.
fn stored(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos() / 1_000
}

/// The cancellation of `reservation` at `now` as the domain decides it, over a fresh load.
async fn decide_cancel(ctx: &Ctx, id: ReservationId, now: OffsetDateTime) -> ReleaseWrite {
    let booking = ctx
        .reservations()
        .load_booking(id)
        .await
        .expect("load_booking")
        .expect("stored");
    let mut reservation = booking.reservation.value.clone();
    let mut seat = booking.seat.value.clone();
    let user = reservation.user();
    let released = booking::cancel(&mut reservation, &mut seat, user, now).expect("cancellable");
    ReleaseWrite {
        reservation: Versioned::new(reservation, booking.reservation.version),
        seat: released.then(|| Versioned::new(seat, booking.seat.version)),
        now,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn load_hold_returns_the_seat_the_users_holds_and_their_versions() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let repo = ctx.reservations();
    let holder = user();

    let fresh = repo
        .load_hold(holder, seat_ref(id, 7))
        .await
        .expect("load")
        .expect("seat");
    assert_eq!(fresh.seat.version, Version::new(1));
    assert_eq!(fresh.seat.value.claim(), SeatClaim::Available);
    assert_eq!(fresh.seat.value.no().get(), 7);
    assert_eq!(fresh.seat.value.price().get(), PRICE);
    assert_eq!(fresh.holds.version, Version::ABSENT, "a user never seen");
    assert_eq!(fresh.holds.value, UserHolds::default());
    let again = repo
        .load_hold(holder, seat_ref(id, 7))
        .await
        .expect("load")
        .expect("seat");
    assert_ne!(
        again.next_reservation, fresh.next_reservation,
        "every load sets a new id aside"
    );
    assert_eq!(
        repo.load_hold(holder, seat_ref(id, 11))
            .await
            .expect("load"),
        None,
        "a seat that does not exist"
    );

    let reservation = hold(&ctx, holder, id, 7, NOW).await;
    let loaded = repo
        .load_hold(holder, seat_ref(id, 8))
        .await
        .expect("load")
        .expect("seat");
    assert_eq!(loaded.holds.version, Version::new(1));
    assert_eq!(loaded.holds.value, UserHolds::new(vec![NOW + HOLD_TTL]));
    let held = repo
        .load_hold(user(), seat_ref(id, 7))
        .await
        .expect("load")
        .expect("seat");
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
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ids_set_aside_never_collide_with_a_stored_reservation() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let repo = ctx.reservations();
    // Ids are drawn from the `reservations` counter: each load draws one, written or not.
    let first = hold(&ctx, user(), id, 1, NOW).await;
    let unused = repo
        .load_hold(user(), seat_ref(id, 2))
        .await
        .expect("load")
        .expect("seat")
        .next_reservation;
    let second = hold(&ctx, user(), id, 3, NOW).await;
    assert!(first.id() < unused && unused < second.id());
    // A counter row lost (or a store whose rows came from elsewhere) starts past the highest id.
    ctx.execute("DELETE FROM counters WHERE name = 'reservations'")
        .await;
    let next = repo
        .load_hold(user(), seat_ref(id, 4))
        .await
        .expect("load")
        .expect("seat")
        .next_reservation;
    assert_eq!(next.get(), second.id().get() + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_over_the_versions_read_writes_the_claim_the_reservation_and_the_holder() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let holder = user();
    let repo = ctx.reservations();

    let (state, write) = decide_hold(&ctx, holder, id, 7, NOW).await;
    assert_eq!(
        repo.save_hold(&write).await.expect("save"),
        Written::Done(())
    );

    let reservation = write.granted.reservation.clone();
    assert_eq!(reservation.id(), state.next_reservation);
    assert_eq!(reservation.user(), holder);
    assert_eq!(reservation.seat(), seat_ref(id, 7));
    assert_eq!(reservation.price().get(), PRICE);
    assert_eq!(reservation.stored_status(), ReservationStatus::Held);
    assert_eq!(reservation.expires_at(), NOW + HOLD_TTL);
    assert_eq!(
        repo.find(reservation.id()).await.expect("find"),
        Some(reservation.clone())
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM seats WHERE seat_no = 7 AND held_by_reservation = {} \
             AND held_by_user = '{holder}' AND held_until = {} \
             AND sold_to_user IS NULL AND version = 2",
            reservation.id().get(),
            stored(NOW + HOLD_TTL)
        ))
        .await,
        1
    );
    assert_eq!(
        ctx.count(&reservation_version_sql(reservation.id())).await,
        1
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM reservations WHERE id = {} AND user_id = '{holder}' \
             AND status = 'HELD' AND expires_at = {} AND created_at = {} AND updated_at = {}",
            reservation.id().get(),
            stored(NOW + HOLD_TTL),
            stored(NOW),
            stored(NOW)
        ))
        .await,
        1
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT version AS count FROM user_holds WHERE user_id = '{holder}'"
        ))
        .await,
        1
    );
    // The next hold of the same user bumps the holder's version again.
    hold(&ctx, holder, id, 8, NOW).await;
    assert_eq!(
        ctx.count(&format!(
            "SELECT version AS count FROM user_holds WHERE user_id = '{holder}'"
        ))
        .await,
        2
    );
    let missing = ReservationId::new(reservation.id().get() + 1000).expect("id");
    assert_eq!(repo.find(missing).await.expect("find"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_over_an_older_seat_version_is_stale_and_leaves_no_reservation() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let repo = ctx.reservations();
    let (first, second) = (user(), user());
    // Both decided on the same free seat; the first is written.
    let (_, winner) = decide_hold(&ctx, first, id, 7, NOW).await;
    let (_, loser) = decide_hold(&ctx, second, id, 7, NOW).await;
    assert_eq!(
        repo.save_hold(&winner).await.expect("save"),
        Written::Done(())
    );
    let winner_claim = format!(
        "SELECT count(*) AS count FROM seats WHERE seat_no = 7 AND version = 2 \
         AND held_by_reservation = {}",
        winner.granted.reservation.id().get()
    );
    assert_eq!(ctx.count(&winner_claim).await, 1);

    assert_eq!(repo.save_hold(&loser).await.expect("save"), Written::Stale);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM reservations")
            .await,
        1,
        "no reservation without its claim"
    );
    assert_eq!(
        ctx.count(&winner_claim).await,
        1,
        "the winner's claim is untouched"
    );
    assert_eq!(
        repo.find(loser.granted.reservation.id())
            .await
            .expect("find"),
        None
    );
    // The loser's holds are as they were: reloaded, it is free to hold another seat.
    let reloaded = repo
        .load_hold(second, seat_ref(id, 8))
        .await
        .expect("load")
        .expect("seat");
    assert_eq!(reloaded.holds.value, UserHolds::default());
    let retry = grant(&reloaded, second, id, NOW, HoldLimit::DEFAULT);
    assert_eq!(
        repo.save_hold(&retry).await.expect("save"),
        Written::Done(())
    );
    // The stale write cannot be replayed over the old seat version either.
    assert_eq!(repo.save_hold(&loser).await.expect("save"), Written::Stale);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM reservations")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_over_an_older_holds_version_is_stale_and_claims_no_seat() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let repo = ctx.reservations();
    let holder = user();
    // Two holds of one user decided on the same (empty) holds, on two different free seats.
    let (_, first) = decide_hold(&ctx, holder, id, 1, NOW).await;
    let (_, second) = decide_hold(&ctx, holder, id, 2, NOW).await;
    assert_eq!(
        repo.save_hold(&first).await.expect("save"),
        Written::Done(())
    );
    let before = ctx.rows().await;

    assert_eq!(repo.save_hold(&second).await.expect("save"), Written::Stale);
    assert_eq!(ctx.rows().await, before, "nothing written");
    assert_eq!(ctx.count(&seat_version_sql(2)).await, 1);

    // A later decision of that user on the current holds goes through, and the user_holds row
    // of a user who already has one is guarded too (not only the first insert).
    let (_, third) = decide_hold(&ctx, holder, id, 2, NOW).await;
    let (_, fourth) = decide_hold(&ctx, holder, id, 3, NOW).await;
    assert_eq!(
        repo.save_hold(&third).await.expect("save"),
        Written::Done(())
    );
    let before = ctx.rows().await;
    assert_eq!(repo.save_hold(&fourth).await.expect("save"), Written::Stale);
    assert_eq!(ctx.rows().await, before, "nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hold_limit_is_decided_on_the_deadlines_loaded_and_lapsed_holds_do_not_count() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 20).await;
    let holder = user();
    let repo = ctx.reservations();
    let limit = HoldLimit::new(2).expect("limit");
    for seat_no in [1, 2] {
        let state = repo
            .load_hold(holder, seat_ref(id, seat_no))
            .await
            .expect("load")
            .expect("seat");
        let write = grant(&state, holder, id, NOW, limit);
        assert_eq!(
            repo.save_hold(&write).await.expect("save"),
            Written::Done(())
        );
    }
    let state = repo
        .load_hold(holder, seat_ref(id, 3))
        .await
        .expect("load")
        .expect("seat");
    assert_eq!(state.holds.value.live_at(NOW), 2);
    assert!(limit.admits(&state.holds.value, NOW).is_err());
    // Once they lapse, the same stored rows no longer count: no sweeper needed.
    assert_eq!(state.holds.value.live_at(NOW + HOLD_TTL), 0);
    let later = grant(&state, holder, id, NOW + HOLD_TTL, limit);
    assert_eq!(
        repo.save_hold(&later).await.expect("save"),
        Written::Done(())
    );
    assert_eq!(repo.count_live_holds(NOW).await.expect("count"), 3);
    assert_eq!(
        repo.count_live_holds(NOW + HOLD_TTL).await.expect("count"),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_over_a_lapsed_hold_writes_the_replaced_reservation_expired_in_the_same_step() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let first = hold(&ctx, user(), id, 5, NOW).await;
    let repo = ctx.reservations();

    // Two users decide on the same lapsed seat; the first write takes it over.
    let (state, write) = decide_hold(&ctx, user(), id, 5, NOW + HOLD_TTL).await;
    let (_, twin) = decide_hold(&ctx, user(), id, 5, NOW + HOLD_TTL).await;
    assert_eq!(write.granted.replaced, Some(first.id()));
    assert_eq!(state.seat.version, Version::new(2));
    assert_eq!(
        repo.save_hold(&write).await.expect("save"),
        Written::Done(())
    );

    // docs/DATABASE.md §5.1: the lapsed reservation is written EXPIRED by the same write.
    let old = repo.find(first.id()).await.expect("find").expect("stored");
    assert_eq!(old.stored_status(), ReservationStatus::Expired);
    assert_eq!(ctx.count(&reservation_version_sql(first.id())).await, 2);
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM reservations WHERE id = {} AND updated_at = {}",
            first.id().get(),
            stored(NOW + HOLD_TTL)
        ))
        .await,
        1
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM seats WHERE seat_no = 5 AND version = 3 \
             AND held_by_reservation = {}",
            write.granted.reservation.id().get()
        ))
        .await,
        1
    );
    assert!(
        repo.lapsed(NOW + HOLD_TTL, 10)
            .await
            .expect("lapsed")
            .is_empty(),
        "nothing left for the sweeper"
    );

    // The twin's write is stale: no reservation, no claim, and the replaced one not rewritten.
    let before = ctx.rows_except(&["user_holds"]).await;
    assert_eq!(repo.save_hold(&twin).await.expect("save"), Written::Stale);
    assert_eq!(ctx.rows_except(&["user_holds"]).await, before);
}

/// The port's contract: a stale write writes nothing. A hold that is stale on its seat (but not
/// on the user's holds) must not touch the user's `user_holds` row either.
#[tokio::test(flavor = "multi_thread")]
async fn a_hold_stale_on_its_seat_writes_nothing_at_all() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let repo = ctx.reservations();
    let (_, winner) = decide_hold(&ctx, user(), id, 7, NOW).await;
    let (_, loser) = decide_hold(&ctx, user(), id, 7, NOW).await;
    assert_eq!(
        repo.save_hold(&winner).await.expect("save"),
        Written::Done(())
    );
    let before = ctx.rows().await;
    assert_eq!(repo.save_hold(&loser).await.expect("save"), Written::Stale);
    assert_eq!(ctx.rows().await, before, "a stale hold wrote user_holds");
}

#[tokio::test(flavor = "multi_thread")]
async fn load_booking_returns_the_reservation_and_its_seat_with_versions() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let holder = user();
    let reservation = hold(&ctx, holder, id, 4, NOW).await;
    let repo = ctx.reservations();

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
    let missing = ReservationId::new(reservation.id().get() + 1000).expect("id");
    assert!(repo.load_booking(missing).await.expect("load").is_none());

    // A sold seat reads back as sold to the payer.
    charge(&ctx, holder, PRICE).await;
    let ticket = active_ticket(&ctx, holder).await;
    pay(&ctx, reservation.id(), holder, active(ticket), NOW).await;
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
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_over_the_versions_read_cancels_and_frees_the_seat_and_a_stale_one_writes_nothing()
 {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let reservation = hold(&ctx, user(), id, 8, NOW).await;
    let repo = ctx.reservations();
    let at = NOW + Duration::seconds(10);

    let write = decide_cancel(&ctx, reservation.id(), at).await;
    assert!(write.seat.is_some());
    assert_eq!(
        repo.save_releases(std::slice::from_ref(&write))
            .await
            .expect("save"),
        1
    );
    let stored_reservation = repo
        .find(reservation.id())
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(
        stored_reservation.stored_status(),
        ReservationStatus::Cancelled
    );
    assert_eq!(
        ctx.count(&reservation_version_sql(reservation.id())).await,
        2
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM reservations WHERE id = {} AND updated_at = {}",
            reservation.id().get(),
            stored(at)
        ))
        .await,
        1
    );
    assert_eq!(
        ctx.count(
            "SELECT count(*) AS count FROM seats WHERE seat_no = 8 AND version = 3 \
             AND held_by_reservation IS NULL AND held_by_user IS NULL AND held_until IS NULL \
             AND sold_to_user IS NULL"
        )
        .await,
        1,
        "the seat is free again"
    );
    let seat_now = repo
        .load_hold(user(), seat_ref(id, 8))
        .await
        .expect("load")
        .expect("seat");
    assert!(seat_now.seat.value.is_available(at));

    // The same write again, over versions that are now old: nothing is written.
    let before = ctx.rows().await;
    assert_eq!(repo.save_releases(&[write]).await.expect("save"), 0);
    assert_eq!(ctx.rows().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_over_an_older_seat_version_is_stale_even_if_the_reservation_did_not_change() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let reservation = hold(&ctx, user(), id, 2, NOW).await;
    let repo = ctx.reservations();
    let write = decide_cancel(&ctx, reservation.id(), NOW).await;
    // Another write of the seat alone.
    ctx.execute("UPDATE seats SET version = version + 1 WHERE seat_no = 2")
        .await;
    let before = ctx.rows().await;
    assert_eq!(repo.save_releases(&[write]).await.expect("save"), 0);
    assert_eq!(ctx.rows().await, before);
    // And over an older reservation version, with the seat unchanged.
    let write = decide_cancel(&ctx, reservation.id(), NOW).await;
    ctx.execute(&format!(
        "UPDATE reservations SET version = version + 1 WHERE id = {}",
        reservation.id().get()
    ))
    .await;
    let before = ctx.rows().await;
    assert_eq!(repo.save_releases(&[write]).await.expect("save"), 0);
    assert_eq!(ctx.rows().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_that_leaves_the_seat_alone_checks_only_the_reservation() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let holder = user();
    let reservation = hold(&ctx, holder, id, 6, NOW).await;
    let repo = ctx.reservations();
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
    ctx.execute("UPDATE seats SET version = version + 1 WHERE seat_no = 6")
        .await;
    assert_eq!(repo.save_releases(&[write]).await.expect("save"), 1);
    assert_eq!(
        repo.find(reservation.id())
            .await
            .expect("find")
            .expect("stored")
            .stored_status(),
        ReservationStatus::Cancelled
    );
    assert_eq!(
        ctx.count(&seat_version_sql(6)).await,
        3,
        "the seat untouched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lapsed_returns_only_stored_held_reservations_at_or_past_their_deadline_oldest_first() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let repo = ctx.reservations();
    let buyer = user();
    let oldest = hold(&ctx, user(), id, 1, NOW).await;
    let middle = hold(&ctx, user(), id, 2, NOW + Duration::seconds(1)).await;
    let exact = hold(&ctx, user(), id, 3, NOW + Duration::seconds(2)).await;
    let live = hold(&ctx, user(), id, 4, NOW + Duration::minutes(3)).await;
    let cancelled = hold(&ctx, user(), id, 5, NOW).await;
    let paid = hold(&ctx, buyer, id, 6, NOW).await;
    let write = decide_cancel(&ctx, cancelled.id(), NOW).await;
    assert_eq!(repo.save_releases(&[write]).await.expect("cancel"), 1);
    charge(&ctx, buyer, PRICE).await;
    let ticket = active_ticket(&ctx, buyer).await;
    pay(&ctx, paid.id(), buyer, active(ticket), NOW).await;

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
}

#[tokio::test(flavor = "multi_thread")]
async fn save_releases_writes_each_release_on_its_own_and_counts_them() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let repo = ctx.reservations();
    let mut held = Vec::new();
    for seat_no in 1..=3 {
        held.push(hold(&ctx, user(), id, seat_no, NOW).await);
    }
    let sweep_at = NOW + HOLD_TTL;
    let writes: Vec<ReleaseWrite> = repo
        .lapsed(sweep_at, 10)
        .await
        .expect("lapsed")
        .into_iter()
        .map(|found| {
            let mut reservation = found.reservation.value;
            let mut seat = found.seat.value;
            let released = booking::expire(&mut reservation, &mut seat, sweep_at).expect("expire");
            ReleaseWrite {
                reservation: Versioned::new(reservation, found.reservation.version),
                seat: released.then(|| Versioned::new(seat, found.seat.version)),
                now: sweep_at,
            }
        })
        .collect();
    assert_eq!(writes.len(), 3);
    // Meanwhile the second seat is taken over by a new hold: that release alone is stale.
    let newer = hold(&ctx, user(), id, 2, sweep_at).await;

    assert_eq!(repo.save_releases(&writes).await.expect("save"), 2);
    let status = |r: &Reservation| {
        let repo = repo.clone();
        let id = r.id();
        async move {
            repo.find(id)
                .await
                .expect("find")
                .expect("stored")
                .stored_status()
        }
    };
    assert_eq!(status(&held[0]).await, ReservationStatus::Expired);
    assert_eq!(
        status(&held[1]).await,
        ReservationStatus::Expired,
        "written by the hold that took its seat over"
    );
    assert_eq!(
        ctx.count(&reservation_version_sql(held[1].id())).await,
        2,
        "once, by the hold: the sweep's stale release wrote nothing"
    );
    assert_eq!(status(&held[2]).await, ReservationStatus::Expired);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM seats WHERE held_by_reservation IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM seats WHERE seat_no = 2 AND held_by_reservation = {}",
            newer.id().get()
        ))
        .await,
        1
    );
    assert_eq!(repo.save_releases(&writes).await.expect("again"), 0);
    assert_eq!(repo.save_releases(&[]).await.expect("none"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_use_case_expires_lapsed_holds_and_leaves_live_ones() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let lapsing = [
        hold(&ctx, user(), id, 1, NOW).await,
        hold(&ctx, user(), id, 2, NOW).await,
    ];
    let live = hold(&ctx, user(), id, 3, NOW + Duration::minutes(3)).await;
    let sweep_at = NOW + HOLD_TTL + Duration::seconds(1);
    let sweeper = ctx.sweeper(fixed(sweep_at));

    assert_eq!(sweeper.run_once().await.expect("sweep"), 2);
    assert_eq!(sweeper.run_once().await.expect("sweep"), 0);
    let repo = ctx.reservations();
    for reservation in &lapsing {
        assert_eq!(
            repo.find(reservation.id())
                .await
                .expect("find")
                .expect("stored")
                .stored_status(),
            ReservationStatus::Expired
        );
    }
    assert_eq!(
        repo.find(live.id())
            .await
            .expect("find")
            .expect("stored")
            .stored_status(),
        ReservationStatus::Held
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM seats WHERE held_by_reservation IS NOT NULL")
            .await,
        1,
        "only the live hold keeps its seat claim"
    );
    // A seat that is free again reads so through the domain too.
    let state = repo
        .load_hold(user(), seat_ref(id, 1))
        .await
        .expect("load")
        .expect("seat");
    assert_eq!(
        state.seat.value,
        Seat::available(seat(1), Price::from_stored(PRICE))
    );
}
