//! `IdempotencyStore` with the writes that store keys: a key is stored in the same atomic step
//! as its effect, and `find` answers with what that write stored, per user and per scope.

use concert_application::charge_points::{ChargePointsCommand, ChargePointsError};
use concert_application::pay_reservation::{PayReservationCommand, PayReservationError};
use concert_application::ports::{IdempotentAnswer, StoredAnswer, Version, Written};
use concert_domain::{Balance, HoldLimit, IdempotencyKey, IdempotencyScope};
use time::Duration;

use crate::fixtures::{
    NOW, PRICE, active_ticket, charge, claims, concert, decide_charge, decide_payment, fixed, hold,
    instance, key, paid, seat_ref, user,
};
use crate::{Store, StoredKey};

pub async fn a_charge_key_replays_the_stored_balance<S: Store>() {
    let store = S::fresh().await;
    let (who, other) = (user(), user());
    charge(&store, who, 300, NOW, None).await;
    charge(&store, who, 200, NOW, Some(key("k-1"))).await;
    charge(&store, who, 1, NOW, None).await;
    let keys = store.idempotency();
    let stored = keys
        .find(who, IdempotencyScope::Charge, &key("k-1").key)
        .await
        .expect("find");
    assert_eq!(
        stored,
        Some(StoredAnswer {
            request_hash: "hash-of-k-1".to_owned(),
            answer: IdempotentAnswer::Charge {
                balance: Balance::new(500).expect("a balance")
            },
        }),
        "the balance right after the keyed charge, whatever came later"
    );
    let k1 = key("k-1").key;
    assert_eq!(
        keys.find(other, IdempotencyScope::Charge, &k1)
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        keys.find(who, IdempotencyScope::Payment, &k1)
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        keys.find(who, IdempotencyScope::Charge, &key("k-2").key)
            .await
            .expect("find"),
        None
    );
    store.finish().await;
}

pub async fn a_payment_key_replays_the_receipt<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 1).await;
    let who = user();
    charge(&store, who, PRICE + 5, NOW, None).await;
    let held = hold(&store, who, seat_ref(gala, 1), NOW).await;
    let ticket = active_ticket(&store, who, NOW).await;
    let write = decide_payment(
        &store,
        held.id(),
        who,
        paid(ticket),
        NOW,
        Some(key("pay-1")),
    )
    .await
    .expect("payable");
    let Written::Done(receipt) = store.payments().save(&write).await.expect("save") else {
        panic!("nothing moved since the load");
    };
    let stored = store
        .idempotency()
        .find(who, IdempotencyScope::Payment, &key("pay-1").key)
        .await
        .expect("find");
    assert_eq!(
        stored,
        Some(StoredAnswer {
            request_hash: "hash-of-pay-1".to_owned(),
            answer: IdempotentAnswer::Payment(receipt),
        })
    );
    assert_eq!(receipt.balance.get(), 5);
    assert_eq!(
        store
            .idempotency()
            .find(who, IdempotencyScope::Charge, &key("pay-1").key)
            .await
            .expect("find"),
        None,
        "another scope"
    );
    store.finish().await;
}

pub async fn a_payment_receipt_is_stored_as_answered_from_a_clock_finer_than_the_store<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 1).await;
    let who = user();
    charge(&store, who, 300_000, NOW, None).await;
    let held = hold(&store, who, seat_ref(gala, 1), NOW).await;
    let ticket = active_ticket(&store, who, NOW).await;
    // A real clock reads nanoseconds; the stores keep microseconds, and so does the receipt.
    let at = NOW + Duration::nanoseconds(1_234_567);
    let write = decide_payment(&store, held.id(), who, paid(ticket), at, Some(key("pay-1")))
        .await
        .expect("payable");
    let Written::Done(receipt) = store.payments().save(&write).await.expect("save") else {
        panic!("nothing moved since the load");
    };
    assert_eq!(receipt.paid_at, NOW + Duration::microseconds(1_234));
    let stored = store
        .idempotency()
        .find(who, IdempotencyScope::Payment, &key("pay-1").key)
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.answer, IdempotentAnswer::Payment(receipt));
    store.finish().await;
}

pub async fn a_charge_key_is_stored_with_its_entry_in_the_same_step<S: Store>() {
    let store = S::fresh().await;
    let wallets = store.wallets();
    let someone = user();
    charge(&store, someone, 1_000, NOW, None).await;

    let write = decide_charge(&store, someone, 500, NOW, Some(key("charge-1"))).await;
    assert_eq!(
        wallets.save_charge(&write).await.expect("save"),
        Written::Done(())
    );
    let entry = wallets.history(someone, 1, None).await.expect("history")[0].clone();
    assert_eq!(entry.balance_after.get(), 1_500);
    assert_eq!(
        store
            .stored_key(someone, IdempotencyScope::Charge, &key("charge-1").key)
            .await,
        Some(StoredKey {
            request_hash: "hash-of-charge-1".to_owned(),
            ledger_entry: entry.id,
            payment: None,
            created_at: NOW,
        })
    );

    // The key already stored: a write decided on the current version is stale, not an error,
    // and writes nothing (the whole write is rolled back).
    let replay = decide_charge(&store, someone, 500, NOW, Some(key("charge-1"))).await;
    assert_eq!(replay.wallet.version, Version::new(2));
    let before = store.booking_rows().await;
    assert_eq!(
        wallets.save_charge(&replay).await.expect("save"),
        Written::Stale
    );
    assert_eq!(store.booking_rows().await, before);
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        1_500
    );
    // The same key of another user is another key.
    let other = user();
    let theirs = decide_charge(&store, other, 500, NOW, Some(key("charge-1"))).await;
    assert_eq!(
        wallets.save_charge(&theirs).await.expect("save"),
        Written::Done(())
    );
    store.finish().await;
}

pub async fn a_key_is_stored_only_with_its_effect<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 1).await;
    let who = user();
    charge(&store, who, PRICE, NOW, None).await;
    let held = hold(&store, who, seat_ref(gala, 1), NOW).await;
    let ticket = active_ticket(&store, who, NOW).await;
    let stale_charge = decide_charge(&store, who, 7, NOW, Some(key("charge-1"))).await;
    let stale_payment = decide_payment(
        &store,
        held.id(),
        who,
        paid(ticket),
        NOW,
        Some(key("pay-1")),
    )
    .await
    .expect("payable");
    charge(&store, who, 3, NOW, None).await;

    assert_eq!(
        store
            .wallets()
            .save_charge(&stale_charge)
            .await
            .expect("save"),
        Written::Stale
    );
    assert_eq!(
        store.payments().save(&stale_payment).await.expect("save"),
        Written::Stale
    );
    let keys = store.idempotency();
    assert_eq!(
        keys.find(who, IdempotencyScope::Charge, &key("charge-1").key)
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        keys.find(who, IdempotencyScope::Payment, &key("pay-1").key)
            .await
            .expect("find"),
        None
    );
    store.finish().await;
}

pub async fn a_key_stored_by_a_twin_makes_the_write_stale<S: Store>() {
    let store = S::fresh().await;
    let who = user();
    charge(&store, who, 100, NOW, Some(key("twin"))).await;
    // The twin looked the key up before the first committed, then loaded the new wallet.
    let twin = decide_charge(&store, who, 100, NOW, Some(key("twin"))).await;
    assert_eq!(
        store.wallets().save_charge(&twin).await.expect("save"),
        Written::Stale
    );
    assert_eq!(
        store.wallets().balance(who).await.expect("balance").get(),
        100,
        "charged once"
    );
    assert_eq!(
        store
            .wallets()
            .history(who, 10, None)
            .await
            .expect("history")
            .len(),
        1
    );
    store.finish().await;
}

pub async fn a_charge_retried_with_its_key_is_answered_from_the_first_and_charged_once<S: Store>() {
    let store = S::fresh().await;
    let app = instance(&store, fixed(NOW), HoldLimit::DEFAULT).await;
    let someone = user();
    charge(&store, someone, 1_000, NOW, None).await;
    let command = ChargePointsCommand {
        user: someone,
        amount: 500,
        idempotency_key: Some(IdempotencyKey::parse("charge-1").expect("a key")),
    };

    let first = app
        .charge_points
        .execute(command.clone())
        .await
        .expect("charge");
    assert_eq!(first.get(), 1_500);
    charge(&store, someone, 1, NOW, None).await;
    let retried = app
        .charge_points
        .execute(command.clone())
        .await
        .expect("retry");
    assert_eq!(retried, first, "the first answer");
    let wallets = store.wallets();
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        1_501
    );
    assert_eq!(
        wallets
            .history(someone, 10, None)
            .await
            .expect("history")
            .len(),
        3
    );
    let reused = app
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
    drop(app);
    store.finish().await;
}

pub async fn a_payment_retried_with_its_key_after_its_ticket_ended_gets_the_first_receipt<
    S: Store,
>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let buyer = user();
    charge(&store, buyer, 300_000, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    let held = hold(&store, buyer, seat_ref(gala, 4), NOW).await;
    let app = instance(&store, fixed(NOW), HoldLimit::DEFAULT).await;
    let command = PayReservationCommand {
        claims: claims(buyer, ticket),
        reservation: held.id(),
        idempotency_key: Some(IdempotencyKey::parse("pay-1").expect("a key")),
    };

    let receipt = app
        .pay_reservation
        .execute(command.clone())
        .await
        .expect("pay");
    assert_eq!(receipt.balance.get(), 180_000);
    // The ticket ended with the payment; the retry is answered from the key all the same.
    let retried = app
        .pay_reservation
        .execute(command.clone())
        .await
        .expect("retry");
    assert_eq!(retried, receipt);
    assert_eq!(store.booking_counts().await.payments, 1);
    // Without the key, the same request is refused: the token has ended.
    let unkeyed = app
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
    drop(app);
    store.finish().await;
}

pub async fn a_refused_request_stores_no_key_so_the_retry_is_processed_anew<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let buyer = user();
    let ticket = active_ticket(&store, buyer, NOW).await;
    let held = hold(&store, buyer, seat_ref(gala, 2), NOW).await;
    let app = instance(&store, fixed(NOW), HoldLimit::DEFAULT).await;
    let command = PayReservationCommand {
        claims: claims(buyer, ticket),
        reservation: held.id(),
        idempotency_key: Some(IdempotencyKey::parse("pay-after-top-up").expect("a key")),
    };

    let refused = app.pay_reservation.execute(command.clone()).await;
    assert!(
        matches!(
            refused,
            Err(PayReservationError::InsufficientBalance {
                balance: 0,
                price: PRICE
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        store
            .idempotency()
            .find(
                buyer,
                IdempotencyScope::Payment,
                &key("pay-after-top-up").key
            )
            .await
            .expect("find"),
        None
    );
    assert_eq!(store.booking_counts().await.payments, 0);
    charge(&store, buyer, PRICE, NOW, None).await;
    let paid = app
        .pay_reservation
        .execute(command)
        .await
        .expect("pay after the top-up");
    assert_eq!(paid.balance.get(), 0);
    drop(app);
    store.finish().await;
}
