//! Idempotency keys: the stored first answer (`PgIdempotencyStore::find`), scopes, and the
//! protocol of the use cases over the real store (replay, key reused, refused requests store no
//! key).
//!
//! The old adapter serialised requests with one key under an advisory lock and waited up to
//! `IDEMPOTENCY_WAIT` for an in-flight twin; both are gone. A twin now simply finds its write
//! `Stale` (the key row's unique violation rolls its statement back) and replays the stored answer;
//! `races.rs` runs twins in parallel.

use concert_application::charge_points::{ChargePointsCommand, ChargePointsError};
use concert_application::pay_reservation::{PayReservationCommand, PayReservationError};
use concert_application::ports::{
    IdempotencyStore, IdempotentAnswer, PaymentRepository, WalletRepository, Written,
};
use concert_domain::{Balance, HoldLimit, IdempotencyKey, IdempotencyScope};

use crate::support::{
    Ctx, NOW, active, active_ticket, charge, claims, concert, decide_charge, decide_payment, fixed,
    hold, key, user,
};

#[tokio::test(flavor = "multi_thread")]
async fn find_returns_the_first_answer_of_a_charge_key_per_user_and_scope() {
    let ctx = Ctx::new().await;
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
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn find_returns_the_receipt_of_a_payment_key() {
    let ctx = Ctx::new().await;
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
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_retried_with_its_key_is_answered_from_the_first_and_charged_once() {
    let ctx = Ctx::new().await;
    let services = ctx.services(0, fixed(NOW), HoldLimit::DEFAULT);
    let someone = user();
    charge(&ctx, someone, 1_000).await;
    let command = ChargePointsCommand {
        user: someone,
        amount: 500,
        idempotency_key: Some(IdempotencyKey::parse("charge-1").expect("key")),
    };

    let first = services
        .charge_points
        .execute(command.clone())
        .await
        .expect("charge");
    assert_eq!(first.get(), 1_500);
    charge(&ctx, someone, 1).await;
    let retried = services
        .charge_points
        .execute(command.clone())
        .await
        .expect("retry");
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
    let reused = services
        .charge_points
        .execute(ChargePointsCommand {
            amount: 600,
            ..command
        })
        .await;
    assert!(
        matches!(reused, Err(ChargePointsError::IdempotencyKeyReused)),
        "{reused:?}"
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_retried_with_its_key_after_its_ticket_ended_gets_the_first_receipt() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 300_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 4, NOW).await;
    let services = ctx.services(0, fixed(NOW), HoldLimit::DEFAULT);
    services
        .lines
        .default_line()
        .refresh(NOW)
        .await
        .expect("refresh");
    let command = PayReservationCommand {
        claims: claims(buyer, ticket),
        reservation: reservation.id(),
        idempotency_key: Some(IdempotencyKey::parse("pay-1").expect("key")),
    };

    let receipt = services
        .pay_reservation
        .execute(command.clone())
        .await
        .expect("pay");
    assert_eq!(receipt.balance.get(), 180_000);
    // The ticket ended with the payment; the retry is answered from the key all the same.
    let retried = services
        .pay_reservation
        .execute(command.clone())
        .await
        .expect("retry");
    assert_eq!(retried, receipt);
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 1);
    // Without the key, the same request is refused: the token has ended.
    let unkeyed = services
        .pay_reservation
        .execute(PayReservationCommand {
            idempotency_key: None,
            ..command
        })
        .await;
    assert!(
        matches!(unkeyed, Err(PayReservationError::Unauthorized(_))),
        "{unkeyed:?}"
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_request_stores_no_key_so_the_retry_is_processed_anew() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let buyer = user();
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 2, NOW).await;
    let services = ctx.services(0, fixed(NOW), HoldLimit::DEFAULT);
    services
        .lines
        .default_line()
        .refresh(NOW)
        .await
        .expect("refresh");
    let command = PayReservationCommand {
        claims: claims(buyer, ticket),
        reservation: reservation.id(),
        idempotency_key: Some(IdempotencyKey::parse("pay-after-top-up").expect("key")),
    };

    let refused = services.pay_reservation.execute(command.clone()).await;
    assert!(
        matches!(
            refused,
            Err(PayReservationError::InsufficientBalance {
                balance: 0,
                price: 120_000
            })
        ),
        "{refused:?}"
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
    let paid = services
        .pay_reservation
        .execute(command)
        .await
        .expect("pay after the top-up");
    assert_eq!(paid.balance.get(), 0);
    ctx.finish().await;
}
