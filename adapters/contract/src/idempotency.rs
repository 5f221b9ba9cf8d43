//! `IdempotencyStore` with the writes that store keys: a key is stored in the same atomic step
//! as its effect, and `find` answers with what that write stored, per user and per scope.

use concert_application::ports::{IdempotentAnswer, StoredAnswer, Written};
use concert_domain::{Balance, IdempotencyScope};

use crate::Store;
use crate::fixtures::{
    NOW, PRICE, active_ticket, charge, concert, decide_charge, decide_payment, hold, key, paid,
    seat_ref, user,
};

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
