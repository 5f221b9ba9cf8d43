//! `PgReservationRepository`: holds, lazy expiry, cancellation and the sweeper.

use concert_application::ports::{CancelOutcome, HoldOutcome, ReservationRepository};
use concert_domain::{HoldLimit, ReservationId, ReservationStatus};
use time::Duration;

use crate::support::{Ctx, DATE, HOLD_TTL, NOW, concert, hold, hold_request, user};

#[tokio::test(flavor = "multi_thread")]
async fn hold_claims_the_seat_and_stores_a_held_reservation() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let holder = user();

    let reservation = hold(&ctx, holder, id, 7, NOW).await;

    assert_eq!(reservation.user, holder);
    assert_eq!(reservation.concert_id, id);
    assert_eq!(reservation.date, DATE);
    assert_eq!(reservation.seat_no.get(), 7);
    assert_eq!(reservation.price.get(), 120_000);
    assert_eq!(reservation.status, ReservationStatus::Held);
    assert_eq!(reservation.expires_at, NOW + HOLD_TTL);
    let found = ctx.reservations().find(reservation.id).await.expect("find");
    assert_eq!(found, Some(reservation.clone()));
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM seats WHERE seat_no = 7 AND held_by_reservation = {} \
             AND held_by_user = '{}' AND held_until = '2030-06-01T12:05:00Z'",
            reservation.id.get(),
            holder
        ))
        .await,
        1
    );
    let missing = ReservationId::new(reservation.id.get() + 1000).expect("id");
    assert_eq!(ctx.reservations().find(missing).await.expect("find"), None);
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_or_sold_seat_cannot_be_held_again_even_by_its_holder() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let holder = user();
    hold(&ctx, holder, id, 3, NOW).await;
    let repo = ctx.reservations();

    let later = NOW + Duration::seconds(30);
    assert_eq!(
        repo.hold(&hold_request(user(), id, 3, later))
            .await
            .expect("hold"),
        HoldOutcome::SeatUnavailable
    );
    assert_eq!(
        repo.hold(&hold_request(holder, id, 3, later))
            .await
            .expect("hold"),
        HoldOutcome::SeatUnavailable
    );
    ctx.execute("UPDATE seats SET sold_to_user = gen_random_uuid(), sold_reservation = (SELECT min(id) FROM reservations), held_by_reservation = NULL, held_by_user = NULL, held_until = NULL WHERE seat_no = 3").await;
    let much_later = NOW + Duration::days(30);
    assert_eq!(
        repo.hold(&hold_request(user(), id, 3, much_later))
            .await
            .expect("hold"),
        HoldOutcome::SeatUnavailable,
        "a sold seat never comes back"
    );
    // A seat that does not exist cannot be held either, and a refusal leaves no reservation.
    assert_eq!(
        repo.hold(&hold_request(user(), id, 11, NOW))
            .await
            .expect("hold"),
        HoldOutcome::SeatUnavailable
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM reservations")
            .await,
        1
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hold_limit_counts_only_live_holds() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 20).await;
    let holder = user();
    let repo = ctx.reservations();
    let limit = HoldLimit::new(2).expect("limit");
    let request = |seat_no, now| {
        let mut request = hold_request(holder, id, seat_no, now);
        request.limit = limit;
        request
    };
    assert!(matches!(
        repo.hold(&request(1, NOW)).await.expect("hold"),
        HoldOutcome::Held(_)
    ));
    assert!(matches!(
        repo.hold(&request(2, NOW)).await.expect("hold"),
        HoldOutcome::Held(_)
    ));
    assert_eq!(
        repo.hold(&request(3, NOW)).await.expect("hold"),
        HoldOutcome::HoldLimitReached
    );
    // Another user is not affected.
    let mut other = hold_request(user(), id, 3, NOW);
    other.limit = limit;
    assert!(matches!(
        repo.hold(&other).await.expect("hold"),
        HoldOutcome::Held(_)
    ));
    // Once the first two lapse, the user may hold again, with no sweeper run.
    let later = NOW + HOLD_TTL;
    assert!(matches!(
        repo.hold(&request(4, later)).await.expect("hold"),
        HoldOutcome::Held(_)
    ));
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_past_its_end_is_free_for_the_next_user_without_any_sweeper() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let first = hold(&ctx, user(), id, 5, NOW).await;
    let repo = ctx.reservations();

    // One second before the end: still held.
    let almost = NOW + HOLD_TTL - Duration::seconds(1);
    assert_eq!(
        repo.hold(&hold_request(user(), id, 5, almost))
            .await
            .expect("hold"),
        HoldOutcome::SeatUnavailable
    );
    // At the end: the next user takes it, and the lapsed reservation reads EXPIRED.
    let next_user = user();
    let second = hold(&ctx, next_user, id, 5, NOW + HOLD_TTL).await;
    assert_eq!(second.user, next_user);
    let old = repo.find(first.id).await.expect("find").expect("stored");
    assert_eq!(old.status, ReservationStatus::Expired);
    // The lapsed holder cannot cancel what is gone.
    assert_eq!(
        repo.cancel(first.id, first.user, NOW + HOLD_TTL)
            .await
            .expect("cancel"),
        CancelOutcome::NotHeld
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_frees_the_seat_at_once_only_for_the_holder_of_a_live_hold() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let holder = user();
    let reservation = hold(&ctx, holder, id, 8, NOW).await;
    let repo = ctx.reservations();
    let at = NOW + Duration::seconds(10);

    assert_eq!(
        repo.cancel(reservation.id, user(), at)
            .await
            .expect("cancel"),
        CancelOutcome::NotHeld
    );
    match repo
        .cancel(reservation.id, holder, at)
        .await
        .expect("cancel")
    {
        CancelOutcome::Cancelled(cancelled) => {
            assert_eq!(cancelled.id, reservation.id);
            assert_eq!(cancelled.status, ReservationStatus::Cancelled);
        }
        other => panic!("expected a cancellation, got {other:?}"),
    }
    assert_eq!(
        repo.cancel(reservation.id, holder, at)
            .await
            .expect("cancel"),
        CancelOutcome::NotHeld
    );
    let seats = concert_application::ports::CatalogRepository::available_seats(
        &ctx.catalog(),
        id,
        DATE,
        at,
    )
    .await
    .expect("seats");
    assert!(
        seats.iter().any(|s| s.seat_no.get() == 8),
        "the seat is free again"
    );
    // Someone else can hold it right away.
    hold(&ctx, user(), id, 8, at).await;
    let missing = ReservationId::new(reservation.id.get() + 1000).expect("id");
    assert_eq!(
        repo.cancel(missing, holder, at).await.expect("cancel"),
        CancelOutcome::NotHeld
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sweeper_expires_lapsed_holds_in_batches_and_leaves_live_ones() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let repo = ctx.reservations();
    let lapsing: Vec<_> = hold_each(&ctx, id, &[1, 2, 3], NOW).await;
    let live = hold(&ctx, user(), id, 4, NOW + Duration::minutes(3)).await;
    let sweep_at = NOW + HOLD_TTL + Duration::seconds(1);

    assert_eq!(repo.count_live_holds(NOW).await.expect("count"), 4);
    assert_eq!(repo.count_live_holds(sweep_at).await.expect("count"), 1);

    assert_eq!(repo.expire_lapsed(sweep_at, 2).await.expect("sweep"), 2);
    assert_eq!(repo.expire_lapsed(sweep_at, 2).await.expect("sweep"), 1);
    assert_eq!(repo.expire_lapsed(sweep_at, 2).await.expect("sweep"), 0);
    for reservation in &lapsing {
        let stored = repo
            .find(reservation.id)
            .await
            .expect("find")
            .expect("stored");
        assert_eq!(stored.status, ReservationStatus::Expired);
    }
    assert_eq!(
        repo.find(live.id)
            .await
            .expect("find")
            .expect("stored")
            .status,
        ReservationStatus::Held
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM seats WHERE held_by_reservation IS NOT NULL")
            .await,
        1,
        "only the live hold keeps its seat claim"
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sweeper_never_clears_a_seat_that_a_newer_hold_took_over() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let repo = ctx.reservations();
    let old = hold(&ctx, user(), id, 6, NOW).await;
    // Force the old reservation to stay HELD while a newer hold owns the seat (as if the lazy
    // tidy-up had skipped it).
    let newer = hold(&ctx, user(), id, 6, NOW + HOLD_TTL).await;
    ctx.execute(&format!(
        "UPDATE reservations SET status = 'HELD' WHERE id = {}",
        old.id.get()
    ))
    .await;
    assert_eq!(
        repo.expire_lapsed(NOW + HOLD_TTL, 10).await.expect("sweep"),
        1
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM seats WHERE seat_no = 6 AND held_by_reservation = {}",
            newer.id.get()
        ))
        .await,
        1
    );
    ctx.finish().await;
}

async fn hold_each(
    ctx: &Ctx,
    id: concert_domain::ConcertId,
    seats: &[i64],
    now: time::OffsetDateTime,
) -> Vec<concert_domain::Reservation> {
    let mut held = Vec::new();
    for seat_no in seats {
        held.push(hold(ctx, user(), id, *seat_no, now).await);
    }
    held
}
