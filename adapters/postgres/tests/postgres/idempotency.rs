//! Idempotency keys: the stored first answer, scopes, and keys of failed requests.

use concert_application::ports::{
    ChargeOutcome, ChargeRequest, IdempotencyStore, IdempotentAnswer, PaymentOutcome,
    PaymentRepository, WalletRepository,
};
use concert_domain::IdempotencyScope;

use crate::payments::{active_ticket, pay_request};
use crate::support::{Ctx, MAX_BALANCE, NOW, amount, charge, concert, hold, key, user};

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_retried_with_its_key_is_answered_from_the_first_and_charged_once() {
    let ctx = Ctx::new().await;
    let wallets = ctx.wallets();
    let someone = user();
    charge(&ctx, someone, 1_000).await;
    let request = ChargeRequest {
        user: someone,
        amount: amount(500),
        max_balance: MAX_BALANCE,
        now: NOW,
        idempotency: Some(key("charge-1")),
    };
    assert_eq!(
        wallets.charge(&request).await.expect("charge"),
        ChargeOutcome::Charged(concert_domain::Balance::new(1_500).expect("balance"))
    );
    charge(&ctx, someone, 1).await; // the balance moves on after the first answer
    assert_eq!(
        wallets.charge(&request).await.expect("retry"),
        ChargeOutcome::KeyAlreadyUsed
    );

    let stored = ctx
        .idempotency()
        .find(
            someone,
            IdempotencyScope::Charge,
            &request.idempotency.as_ref().expect("key").key,
        )
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.request_hash, "hash-of-charge-1");
    assert_eq!(
        stored.answer,
        IdempotentAnswer::Charge {
            balance: concert_domain::Balance::new(1_500).expect("balance")
        },
        "the first answer, not the current balance"
    );
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        1_501
    );
    assert_eq!(
        wallets
            .history(someone, 100, None)
            .await
            .expect("history")
            .len(),
        3
    );
    // The same key under another user or another scope is another key.
    let other = ChargeRequest {
        user: user(),
        ..request.clone()
    };
    assert!(matches!(
        wallets.charge(&other).await.expect("charge"),
        ChargeOutcome::Charged(_)
    ));
    assert_eq!(
        ctx.idempotency()
            .find(
                someone,
                IdempotencyScope::Payment,
                &request.idempotency.as_ref().expect("key").key
            )
            .await
            .expect("find"),
        None
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_key_stores_the_receipt() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 300_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 4, NOW).await;
    let mut request = pay_request(&reservation, buyer, ticket, NOW);
    request.idempotency = Some(key("pay-1"));

    let PaymentOutcome::Paid(receipt) = ctx.payments().pay(&request).await.expect("pay") else {
        panic!("expected a payment");
    };
    assert_eq!(
        ctx.payments().pay(&request).await.expect("retry"),
        PaymentOutcome::KeyAlreadyUsed
    );
    let stored = ctx
        .idempotency()
        .find(
            buyer,
            IdempotencyScope::Payment,
            &request.idempotency.as_ref().expect("key").key,
        )
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.request_hash, "hash-of-pay-1");
    assert_eq!(stored.answer, IdempotentAnswer::Payment(receipt));
    assert_eq!(
        ctx.wallets().balance(buyer).await.expect("balance").get(),
        180_000
    );
    // A charge with the same key string is not the payment's key.
    let charge_request = ChargeRequest {
        user: buyer,
        amount: amount(1),
        max_balance: MAX_BALANCE,
        now: NOW,
        idempotency: Some(key("pay-1")),
    };
    assert!(matches!(
        ctx.wallets().charge(&charge_request).await.expect("charge"),
        ChargeOutcome::Charged(_)
    ));
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_request_stores_no_key_so_the_retry_is_processed_anew() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let buyer = user();
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 2, NOW).await;
    let mut request = pay_request(&reservation, buyer, ticket, NOW);
    request.idempotency = Some(key("pay-after-top-up"));

    assert_eq!(
        ctx.payments().pay(&request).await.expect("pay"),
        PaymentOutcome::InsufficientBalance
    );
    assert_eq!(
        ctx.idempotency()
            .find(
                buyer,
                IdempotencyScope::Payment,
                &request.idempotency.as_ref().expect("key").key
            )
            .await
            .expect("find"),
        None
    );
    charge(&ctx, buyer, 120_000).await;
    assert!(matches!(
        ctx.payments().pay(&request).await.expect("pay"),
        PaymentOutcome::Paid(_)
    ));

    let over = ChargeRequest {
        user: buyer,
        amount: amount(100),
        max_balance: 50,
        now: NOW,
        idempotency: Some(key("charge-after-refusal")),
    };
    assert_eq!(
        ctx.wallets().charge(&over).await.expect("charge"),
        ChargeOutcome::BalanceLimitExceeded
    );
    let within = ChargeRequest {
        max_balance: MAX_BALANCE,
        ..over
    };
    assert!(matches!(
        ctx.wallets().charge(&within).await.expect("charge"),
        ChargeOutcome::Charged(_)
    ));
    ctx.finish().await;
}
