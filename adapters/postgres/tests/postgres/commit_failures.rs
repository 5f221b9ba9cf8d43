//! A write outside a transaction block commits after the server has sent its rows. A commit that
//! fails then (here: a deferred constraint trigger that refuses every commit on the table; in
//! production: a backend terminated between the rows and the commit) must come back as an error,
//! never as a write done: the caller would answer 200 for an effect that is gone.

use concert_application::ports::{
    JoinWrite, PaymentRepository, QueueRepository, ReleaseWrite, ReservationRepository, Versioned,
    WalletRepository,
};
use concert_domain::booking;
use concert_domain::{LineNo, ReservationId};
use time::OffsetDateTime;

use crate::support::{
    Ctx, NOW, PRICE, active, active_ticket, charge, concert, decide_charge, decide_hold,
    decide_payment, hold, ticket_status, user,
};

/// From now on every commit that inserted or updated a row of `table` fails.
async fn refuse_commits_on(ctx: &Ctx, table: &str) {
    ctx.execute(
        "CREATE OR REPLACE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'commit refused by the test'; END $$",
    )
    .await;
    ctx.execute(&format!(
        "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT OR UPDATE ON {table} \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
    ))
    .await;
}

async fn count(ctx: &Ctx, table: &str) -> i64 {
    ctx.count(&format!("SELECT count(*) AS count FROM {table}"))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_whose_commit_fails_is_an_error() {
    let ctx = Ctx::new().await;
    let someone = user();
    refuse_commits_on(&ctx, "ledger_entries").await;

    let write = decide_charge(&ctx, someone, 40_000, NOW, None).await;
    let saved = ctx.wallets().save_charge(&write).await;
    assert!(saved.is_err(), "a charge that was rolled back: {saved:?}");
    assert_eq!(count(&ctx, "ledger_entries").await, 0);
    assert_eq!(
        ctx.wallets().balance(someone).await.expect("balance").get(),
        0
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_whose_commit_fails_is_an_error() {
    let ctx = Ctx::new().await;
    let concert = concert(&ctx, 10).await;
    refuse_commits_on(&ctx, "reservations").await;

    let (_, write) = decide_hold(&ctx, user(), concert, 3, NOW).await;
    let saved = ctx.reservations().save_hold(&write).await;
    assert!(saved.is_err(), "a hold that was rolled back: {saved:?}");
    assert_eq!(count(&ctx, "reservations").await, 0);
    ctx.finish().await;
}

/// Cancels `id` as the domain decides at `now`.
async fn decide_cancel(ctx: &Ctx, id: ReservationId, now: OffsetDateTime) -> ReleaseWrite {
    let booking = ctx
        .reservations()
        .load_booking(id)
        .await
        .expect("load_booking")
        .expect("stored");
    let mut reservation = booking.reservation.value.clone();
    let mut seat = booking.seat.value.clone();
    let holder = reservation.user();
    let released = booking::cancel(&mut reservation, &mut seat, holder, now).expect("cancellable");
    ReleaseWrite {
        reservation: Versioned::new(reservation, booking.reservation.version),
        seat: released.then(|| Versioned::new(seat, booking.seat.version)),
        now,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_whose_commit_fails_is_an_error() {
    let ctx = Ctx::new().await;
    let concert = concert(&ctx, 10).await;
    let held = hold(&ctx, user(), concert, 4, NOW).await;
    refuse_commits_on(&ctx, "reservations").await;

    let write = decide_cancel(&ctx, held.id(), NOW).await;
    let saved = ctx.reservations().save_releases(&[write]).await;
    assert!(saved.is_err(), "a release that was rolled back: {saved:?}");
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM reservations WHERE status = 'HELD'")
            .await,
        1
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_whose_commit_fails_is_an_error() {
    let ctx = Ctx::new().await;
    let concert = concert(&ctx, 10).await;
    let buyer = user();
    let held = hold(&ctx, buyer, concert, 5, NOW).await;
    charge(&ctx, buyer, PRICE).await;
    let ticket = active_ticket(&ctx, buyer).await;
    refuse_commits_on(&ctx, "payments").await;

    let write = decide_payment(&ctx, held.id(), buyer, active(ticket), NOW).await;
    let saved = ctx.payments().save(&write).await;
    assert!(saved.is_err(), "a payment that was rolled back: {saved:?}");
    assert_eq!(count(&ctx, "payments").await, 0);
    assert_eq!(
        ctx.wallets().balance(buyer).await.expect("balance").get(),
        PRICE
    );
    assert_eq!(ticket_status(&ctx, ticket).await, "ACTIVE");
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_whose_commit_fails_is_an_error() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let someone = user();
    refuse_commits_on(&ctx, "queue_tickets").await;

    let live = queue
        .load_live(someone, LineNo::DEFAULT)
        .await
        .expect("load_live");
    let write = JoinWrite {
        line: LineNo::DEFAULT,
        user: someone,
        version: live.version,
        now: NOW,
    };
    let saved = queue.save_join(&write).await;
    assert!(saved.is_err(), "a join that was rolled back: {saved:?}");
    assert_eq!(count(&ctx, "queue_tickets").await, 0);
    ctx.finish().await;
}
