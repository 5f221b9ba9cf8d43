//! A write outside a transaction block commits after the server has sent its rows. A commit that
//! fails then (here: a deferred constraint trigger that refuses every commit on the table; in
//! production: a backend terminated between the rows and the commit) must come back as an error,
//! never as a write done: the caller would answer 200 for an effect that is gone.

use concert_application::ports::{JoinWrite, PaymentRepository};
use concert_contract::Store;
use concert_contract::fixtures::{
    NOW, PRICE, active_ticket, charge, concert, decide_cancel, decide_charge, decide_hold,
    decide_payment, hold, load_hold, paid, seat_ref, user,
};
use concert_domain::{HoldLimit, LineNo};
use concert_postgres::{PgPaymentRepository, TicketEnds};

use crate::contract::PgStore;
use crate::support::ticket_status;

/// From now on every commit that inserted or updated a row of `table` fails.
async fn refuse_commits_on(store: &PgStore, table: &str) {
    store
        .ctx
        .execute(
            "CREATE OR REPLACE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'commit refused by the test'; END $$",
        )
        .await;
    store
        .ctx
        .execute(&format!(
            "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT OR UPDATE ON {table} \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
        ))
        .await;
}

async fn count(store: &PgStore, table: &str) -> i64 {
    store
        .ctx
        .count(&format!("SELECT count(*) AS count FROM {table}"))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_whose_commit_fails_is_an_error() {
    let store = PgStore::fresh().await;
    let someone = user();
    refuse_commits_on(&store, "ledger_entries").await;

    let write = decide_charge(&store, someone, 40_000, NOW, None).await;
    let saved = store.wallets().save_charge(&write).await;
    assert!(saved.is_err(), "a charge that was rolled back: {saved:?}");
    assert_eq!(count(&store, "ledger_entries").await, 0);
    assert_eq!(
        store
            .wallets()
            .balance(someone)
            .await
            .expect("balance")
            .get(),
        0
    );
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_whose_commit_fails_is_an_error() {
    let store = PgStore::fresh().await;
    let seat = seat_ref(concert(&store, 10).await, 3);
    refuse_commits_on(&store, "reservations").await;

    let holder = user();
    let state = load_hold(&store, holder, seat).await;
    let write = decide_hold(&state, holder, seat, HoldLimit::DEFAULT, NOW).expect("granted");
    let saved = store.reservations().save_hold(&write).await;
    assert!(saved.is_err(), "a hold that was rolled back: {saved:?}");
    assert_eq!(count(&store, "reservations").await, 0);
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_whose_commit_fails_is_an_error() {
    let store = PgStore::fresh().await;
    let concert = concert(&store, 10).await;
    let held = hold(&store, user(), seat_ref(concert, 4), NOW).await;
    refuse_commits_on(&store, "reservations").await;

    let write = decide_cancel(&store, held.id(), NOW).await;
    let saved = store.reservations().save_releases(&[write]).await;
    assert!(saved.is_err(), "a release that was rolled back: {saved:?}");
    assert_eq!(
        store
            .ctx
            .count("SELECT count(*) AS count FROM reservations WHERE status = 'HELD'")
            .await,
        1
    );
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_whose_commit_fails_is_an_error() {
    let store = PgStore::fresh().await;
    let concert = concert(&store, 10).await;
    let buyer = user();
    let held = hold(&store, buyer, seat_ref(concert, 5), NOW).await;
    charge(&store, buyer, PRICE, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    refuse_commits_on(&store, "payments").await;

    let write = decide_payment(&store, held.id(), buyer, paid(ticket), NOW, None)
        .await
        .expect("payable");
    let saved = store.payments().save(&write).await;
    assert!(saved.is_err(), "a payment that was rolled back: {saved:?}");
    assert_eq!(count(&store, "payments").await, 0);
    assert_eq!(
        store.wallets().balance(buyer).await.expect("balance").get(),
        PRICE
    );
    assert_eq!(ticket_status(&store.ctx, ticket).await, "ACTIVE");
    store.finish().await;
}

/// A payment that writes its ticket end to the outbox: `table`'s commits fail, so neither the
/// payment nor the outbox row is there afterwards, and the ticket was never touched.
async fn an_outbox_payment_whose_commit_fails_on(table: &str) {
    let store = PgStore::fresh().await;
    let concert = concert(&store, 10).await;
    let buyer = user();
    let held = hold(&store, buyer, seat_ref(concert, 5), NOW).await;
    charge(&store, buyer, PRICE, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    refuse_commits_on(&store, table).await;
    let payments =
        PgPaymentRepository::with_ticket_ends(store.ctx.pool.clone(), TicketEnds::Outbox);

    let write = decide_payment(&store, held.id(), buyer, paid(ticket), NOW, None)
        .await
        .expect("payable");
    let saved = payments.save(&write).await;
    assert!(saved.is_err(), "a payment that was rolled back: {saved:?}");
    assert_eq!(count(&store, "payments").await, 0);
    assert_eq!(count(&store, "ticket_end_outbox").await, 0);
    assert_eq!(
        store.wallets().balance(buyer).await.expect("balance").get(),
        PRICE
    );
    assert_eq!(ticket_status(&store.ctx, ticket).await, "ACTIVE");
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_payment_whose_commit_fails_writes_no_outbox_row() {
    an_outbox_payment_whose_commit_fails_on("payments").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_row_whose_commit_fails_undoes_the_payment() {
    an_outbox_payment_whose_commit_fails_on("ticket_end_outbox").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_whose_commit_fails_is_an_error() {
    let store = PgStore::fresh().await;
    let queue = store.queue();
    let someone = user();
    refuse_commits_on(&store, "queue_tickets").await;

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
    assert_eq!(count(&store, "queue_tickets").await, 0);
    store.finish().await;
}
