//! Idempotency keys (the PostgreSQL adapter's `idempotency.rs` there): the stored first answer
//! (`SqliteIdempotencyStore::find`), scopes, and the protocol over the real store: the real
//! `ChargePoints` use case, and the payment protocol over the ports (`pay_reservation`; the use
//! case itself needs the queue's port). A twin finds its write `Stale` (the key row's unique
//! violation rolls its transaction back) and replays the stored answer; `races.rs` runs twins
//! in parallel.

use concert_application::charge_points::{ChargePointsCommand, ChargePointsError};
use concert_application::ports::{
    IdempotencyStore, IdempotentAnswer, PaymentRepository, WalletRepository, Written,
};
use concert_domain::booking::PaymentDenied;
use concert_domain::wallet::DebitRefused;
use concert_domain::{Balance, IdempotencyKey, IdempotencyScope};

use crate::booking_support::{
    Ctx, NOW, PayRefusal, active, active_ticket, charge, concert, decide_charge, decide_payment,
    fixed, hold, key, pay_reservation, user,
};

#[tokio::test(flavor = "multi_thread")]
async fn find_returns_the_first_answer_of_a_charge_key_per_user_and_scope() {
    let ctx = Ctx::new();
    let someone = user();
    charge(&ctx, someone, 1_000).await;
    let write = decide_charge(&ctx, someone, 500, NOW, Some(key("charge-1"))).await;
    assert_eq!(
        ctx.wallets().save_charge(&write).await.expect("save"),
        Written::Done(())
    );
    charge(&ctx, someone, 1).await; // the balance moves on after the first answer

    let store = ctx.idempotency();
    let the_key = key("charge-1").key;
    let stored = store
        .find(someone, IdempotencyScope::Charge, &the_key)
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.request_hash, "hash-of-charge-1");
    assert_eq!(
        stored.answer,
        IdempotentAnswer::Charge {
            balance: Balance::new(1_500).expect("balance")
        },
        "the first answer, not the current balance"
    );
    assert_eq!(
        store
            .find(someone, IdempotencyScope::Payment, &the_key)
            .await
            .expect("find"),
        None,
        "another scope"
    );
    assert_eq!(
        store
            .find(user(), IdempotencyScope::Charge, &the_key)
            .await
            .expect("find"),
        None,
        "another user"
    );
    let unknown = IdempotencyKey::parse("never-used").expect("key");
    assert_eq!(
        store
            .find(someone, IdempotencyScope::Charge, &unknown)
            .await
            .expect("find"),
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn find_returns_the_receipt_of_a_payment_key() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 300_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 4, NOW).await;
    let mut write = decide_payment(&ctx, reservation.id(), buyer, active(ticket), NOW).await;
    write.idempotency = Some(key("pay-1"));
    let Written::Done(receipt) = ctx.payments().save(&write).await.expect("save") else {
        panic!("expected a payment");
    };

    let stored = ctx
        .idempotency()
        .find(buyer, IdempotencyScope::Payment, &key("pay-1").key)
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.request_hash, "hash-of-pay-1");
    assert_eq!(stored.answer, IdempotentAnswer::Payment(receipt));
    assert_eq!(receipt.balance.get(), 180_000);
    assert_eq!(
        ctx.idempotency()
            .find(buyer, IdempotencyScope::Charge, &key("pay-1").key)
            .await
            .expect("find"),
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_receipt_is_stored_as_answered_even_from_a_clock_finer_than_the_store() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 300_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 4, NOW).await;
    // A real clock reads nanoseconds; the store keeps microseconds, and so does the receipt.
    let at = NOW + time::Duration::nanoseconds(1_234_567);
    let mut write = decide_payment(&ctx, reservation.id(), buyer, active(ticket), at).await;
    write.idempotency = Some(key("pay-1"));
    let Written::Done(receipt) = ctx.payments().save(&write).await.expect("save") else {
        panic!("expected a payment");
    };
    assert_eq!(receipt.paid_at, NOW + time::Duration::microseconds(1_234));
    let stored = ctx
        .idempotency()
        .find(buyer, IdempotencyScope::Payment, &key("pay-1").key)
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.answer, IdempotentAnswer::Payment(receipt));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_retried_with_its_key_is_answered_from_the_first_and_charged_once() {
    let ctx = Ctx::new();
    let charge_points = ctx.charge_points(fixed(NOW));
    let someone = user();
    charge(&ctx, someone, 1_000).await;
    let command = ChargePointsCommand {
        user: someone,
        amount: 500,
        idempotency_key: Some(IdempotencyKey::parse("charge-1").expect("key")),
    };

    let first = charge_points
        .execute(command.clone())
        .await
        .expect("charge");
    assert_eq!(first.get(), 1_500);
    charge(&ctx, someone, 1).await;
    let retried = charge_points.execute(command.clone()).await.expect("retry");
    assert_eq!(retried, first, "the first answer");
    assert_eq!(
        ctx.wallets().balance(someone).await.expect("balance").get(),
        1_501
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM ledger_entries")
            .await,
        3
    );
    let reused = charge_points
        .execute(ChargePointsCommand {
            amount: 600,
            ..command
        })
        .await;
    assert!(
        matches!(reused, Err(ChargePointsError::IdempotencyKeyReused)),
        "{reused:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_retried_with_its_key_after_its_ticket_ended_gets_the_first_receipt() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 300_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 4, NOW).await;
    let pay_key = Some(key("pay-1"));

    let receipt = pay_reservation(&ctx, buyer, ticket, reservation.id(), pay_key.clone(), NOW)
        .await
        .expect("pay");
    assert_eq!(receipt.balance.get(), 180_000);
    // The ticket ended with the payment; the retry is answered from the key all the same.
    let retried = pay_reservation(&ctx, buyer, ticket, reservation.id(), pay_key, NOW)
        .await
        .expect("retry");
    assert_eq!(retried, receipt);
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 1);
    // Without the key, the same request is refused: the ticket has ended.
    let unkeyed = pay_reservation(&ctx, buyer, ticket, reservation.id(), None, NOW).await;
    assert_eq!(unkeyed, Err(PayRefusal::TicketEnded));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_request_stores_no_key_so_the_retry_is_processed_anew() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 2, NOW).await;
    let pay_key = Some(key("pay-after-top-up"));

    let refused =
        pay_reservation(&ctx, buyer, ticket, reservation.id(), pay_key.clone(), NOW).await;
    assert_eq!(
        refused,
        Err(PayRefusal::Denied(PaymentDenied::InsufficientBalance(
            DebitRefused::InsufficientBalance {
                balance: 0,
                needed: 120_000
            }
        )))
    );
    assert_eq!(
        ctx.idempotency()
            .find(
                buyer,
                IdempotencyScope::Payment,
                &key("pay-after-top-up").key
            )
            .await
            .expect("find"),
        None
    );
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 0);
    charge(&ctx, buyer, 120_000).await;
    let paid = pay_reservation(&ctx, buyer, ticket, reservation.id(), pay_key, NOW)
        .await
        .expect("pay after the top-up");
    assert_eq!(paid.balance.get(), 0);
}
