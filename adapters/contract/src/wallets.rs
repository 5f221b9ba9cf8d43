//! `WalletRepository`: every charge is written over the wallet version read, with exactly one
//! ledger entry, so concurrent charges all count and a stale one writes nothing.

use std::sync::Arc;

use concert_application::ports::{Version, Written};
use concert_domain::wallet::ledger_is_consistent;
use concert_domain::{Balance, LedgerKind};
use time::Duration;

use crate::fixtures::{NOW, charge, decide_charge, finish, race, shared, user};
use crate::{RACERS, Store};

pub async fn a_wallet_never_seen_is_empty<S: Store>() {
    let store = S::fresh().await;
    let wallets = store.wallets();
    let who = user();
    assert_eq!(wallets.balance(who).await.expect("balance"), Balance::ZERO);
    let loaded = wallets.load(who).await.expect("load");
    assert_eq!(loaded.version, Version::ABSENT);
    assert_eq!(loaded.value.balance(), Balance::ZERO);
    assert_eq!(loaded.value.user(), who);
    assert_eq!(
        wallets.history(who, 10, None).await.expect("history"),
        vec![]
    );
    store.finish().await;
}

pub async fn charges_add_up_with_one_ledger_entry_each<S: Store>() {
    let store = S::fresh().await;
    let wallets = store.wallets();
    let (who, other) = (user(), user());
    for (n, value) in [100, 250, 7].into_iter().enumerate() {
        charge(&store, who, value, NOW + Duration::seconds(n as i64), None).await;
    }
    charge(&store, other, 1, NOW, None).await;

    assert_eq!(wallets.balance(who).await.expect("balance").get(), 357);
    let loaded = wallets.load(who).await.expect("load");
    assert_eq!(
        loaded.value.last_change_at(),
        Some(NOW + Duration::seconds(2))
    );
    let history = wallets.history(who, 10, None).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|e| (e.kind, e.amount, e.balance_after.get(), e.at))
            .collect::<Vec<_>>(),
        vec![
            (LedgerKind::Charge, 7, 357, NOW + Duration::seconds(2)),
            (LedgerKind::Charge, 250, 350, NOW + Duration::seconds(1)),
            (LedgerKind::Charge, 100, 100, NOW),
        ],
        "newest first, only this user's"
    );
    assert!(ledger_is_consistent(&history, loaded.value.balance()));
    let page = wallets
        .history(who, 1, Some(history[0].id))
        .await
        .expect("history");
    assert_eq!(
        page,
        vec![history[1].clone()],
        "older than the cursor, at most the limit"
    );
    store.finish().await;
}

pub async fn racing_charges_of_one_wallet_all_count<S: Store>() {
    let store = shared::<S>().await;
    let who = user();
    race(RACERS, |i| {
        let store = Arc::clone(&store);
        async move { charge(&*store, who, 10 + i as i64, NOW, None).await }
    })
    .await;
    let wallets = store.wallets();
    let expected: i64 = (0..RACERS as i64).map(|i| 10 + i).sum();
    let balance = wallets.balance(who).await.expect("balance");
    assert_eq!(balance.get(), expected, "no charge lost");
    let history = wallets.history(who, 100, None).await.expect("history");
    assert_eq!(history.len(), RACERS, "one ledger entry per charge");
    assert!(ledger_is_consistent(&history, balance));
    finish(store).await;
}

pub async fn a_charge_over_a_moved_wallet_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let wallets = store.wallets();
    let who = user();
    // Two first charges over the absent wallet: one creates it, the other is stale.
    let first = decide_charge(&store, who, 100, NOW, None).await;
    let twin = decide_charge(&store, who, 40, NOW, None).await;
    assert_eq!(
        wallets.save_charge(&first).await.expect("save"),
        Written::Done(())
    );
    assert_eq!(
        wallets.save_charge(&twin).await.expect("save"),
        Written::Stale
    );
    // And over a stored wallet: the same.
    let second = decide_charge(&store, who, 5, NOW, None).await;
    let late = decide_charge(&store, who, 9, NOW, None).await;
    assert_eq!(
        wallets.save_charge(&second).await.expect("save"),
        Written::Done(())
    );
    assert_eq!(
        wallets.save_charge(&late).await.expect("save"),
        Written::Stale
    );

    assert_eq!(wallets.balance(who).await.expect("balance").get(), 105);
    let history = wallets.history(who, 10, None).await.expect("history");
    assert_eq!(history.len(), 2, "no entry for a stale charge");
    assert!(ledger_is_consistent(
        &history,
        Balance::new(105).expect("a balance")
    ));
    store.finish().await;
}
