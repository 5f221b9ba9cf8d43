//! `WalletRepository`: every charge is written over the wallet version read, with exactly one
//! ledger entry, so concurrent charges all count and a stale one writes nothing.

use std::sync::Arc;

use concert_application::ports::{ChargeWrite, Version, Versioned, Written};
use concert_domain::wallet::ledger_is_consistent;
use concert_domain::{Amount, Balance, LedgerEntryId, LedgerKind, Wallet, WalletLimits};
use time::Duration;

use crate::fixtures::{NOW, charge, decide_charge, finish, key, race, shared, user};
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
    assert_eq!(loaded.value, Wallet::empty(who));
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

pub async fn a_charge_over_the_version_read_writes_one_entry_and_bumps_it<S: Store>() {
    let store = S::fresh().await;
    let wallets = store.wallets();
    let someone = user();

    let first = decide_charge(&store, someone, 50_000, NOW, None).await;
    assert_eq!(first.wallet.version, Version::ABSENT);
    assert_eq!(
        wallets.save_charge(&first).await.expect("save"),
        Written::Done(())
    );
    let loaded = wallets.load(someone).await.expect("load");
    assert_eq!(loaded.version, Version::new(1), "created at version 1");
    assert_eq!(loaded.value.balance().get(), 50_000);
    assert_eq!(loaded.value.last_change_at(), Some(NOW));

    let later = NOW + Duration::seconds(3);
    let second = decide_charge(&store, someone, 45_000, later, None).await;
    assert_eq!(second.wallet.version, Version::new(1));
    assert_eq!(
        wallets.save_charge(&second).await.expect("save"),
        Written::Done(())
    );
    let loaded = wallets.load(someone).await.expect("load");
    assert_eq!(loaded.version, Version::new(2));
    assert_eq!(loaded.value.balance().get(), 95_000);
    assert_eq!(loaded.value.last_change_at(), Some(later));
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        95_000
    );

    let history = wallets.history(someone, 50, None).await.expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].kind, LedgerKind::Charge);
    assert_eq!(history[0].amount, 45_000);
    assert_eq!(history[0].balance_after.get(), 95_000);
    assert_eq!(history[0].at, later);
    assert_eq!(history[1].at, NOW);
    assert!(history[0].id > history[1].id, "newest first");
    assert_eq!(
        store.booking_counts().await.idempotency_keys,
        0,
        "no key, no key row"
    );
    store.finish().await;
}

pub async fn a_charge_over_a_moved_wallet_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let wallets = store.wallets();
    let someone = user();

    // Two charges decided on the absent wallet: the second finds it created meanwhile.
    let first = decide_charge(&store, someone, 100, NOW, None).await;
    let twin = decide_charge(&store, someone, 200, NOW, Some(key("twin"))).await;
    assert_eq!(
        wallets.save_charge(&first).await.expect("save"),
        Written::Done(())
    );
    let before = store.booking_rows().await;
    assert_eq!(
        wallets.save_charge(&twin).await.expect("save"),
        Written::Stale
    );
    assert_eq!(
        store.booking_rows().await,
        before,
        "nothing written, not even the key"
    );

    // Two charges decided on version 1: the second finds version 2.
    let a = decide_charge(&store, someone, 10, NOW, None).await;
    let b = decide_charge(&store, someone, 20, NOW, Some(key("b"))).await;
    assert_eq!(a.wallet.version, Version::new(1));
    assert_eq!(
        wallets.save_charge(&a).await.expect("save"),
        Written::Done(())
    );
    let before = store.booking_rows().await;
    assert_eq!(wallets.save_charge(&b).await.expect("save"), Written::Stale);
    assert_eq!(store.booking_rows().await, before);
    assert_eq!(wallets.balance(someone).await.expect("balance").get(), 110);
    // Decided again on the current version, it goes through.
    let b = decide_charge(&store, someone, 20, NOW, Some(key("b"))).await;
    assert_eq!(
        wallets.save_charge(&b).await.expect("save"),
        Written::Done(())
    );
    let history = wallets.history(someone, 50, None).await.expect("history");
    assert_eq!(history.len(), 3, "no entry for a stale charge");
    assert!(ledger_is_consistent(
        &history,
        Balance::new(130).expect("a balance")
    ));
    store.finish().await;
}

pub async fn the_balance_limit_is_the_domains_and_the_store_writes_what_it_decided<S: Store>() {
    let store = S::fresh().await;
    let wallets = store.wallets();
    let someone = user();
    let limits = WalletLimits {
        max_charge: 10_000_000,
        max_balance: 150,
    };
    let amount = |value| Amount::parse(value, limits.max_charge).expect("an amount");
    charge(&store, someone, 100, NOW, None).await;
    let loaded = wallets.load(someone).await.expect("load");
    let mut wallet = loaded.value;
    let change = wallet
        .charge(amount(50), limits, NOW)
        .expect("exactly the maximum");
    let write = ChargeWrite {
        wallet: Versioned::new(wallet, loaded.version),
        change,
        idempotency: None,
    };
    assert_eq!(
        wallets.save_charge(&write).await.expect("save"),
        Written::Done(())
    );
    let mut wallet = wallets.load(someone).await.expect("load").value;
    assert!(wallet.charge(amount(1), limits, NOW).is_err());
    assert_eq!(wallets.balance(someone).await.expect("balance").get(), 150);
    store.finish().await;
}

pub async fn history_pages_newest_first_and_chains_to_the_balance<S: Store>() {
    let store = S::fresh().await;
    let wallets = store.wallets();
    let someone = user();
    for value in 1..=7 {
        charge(&store, someone, value * 10, NOW, None).await;
    }
    charge(&store, user(), 999, NOW, None).await; // someone else's entries never show
    let balance = wallets.balance(someone).await.expect("balance");
    assert_eq!(balance.get(), 280);

    let all = wallets.history(someone, 100, None).await.expect("history");
    assert_eq!(all.len(), 7);
    assert!(ledger_is_consistent(&all, balance));

    let first_page = wallets.history(someone, 3, None).await.expect("history");
    assert_eq!(
        first_page.iter().map(|e| e.amount).collect::<Vec<_>>(),
        vec![70, 60, 50]
    );
    let before: LedgerEntryId = first_page.last().expect("an entry").id;
    let second_page = wallets
        .history(someone, 3, Some(before))
        .await
        .expect("history");
    assert_eq!(
        second_page.iter().map(|e| e.amount).collect::<Vec<_>>(),
        vec![40, 30, 20]
    );
    let last = wallets
        .history(someone, 3, Some(second_page.last().expect("an entry").id))
        .await
        .expect("history");
    assert_eq!(last.iter().map(|e| e.amount).collect::<Vec<_>>(), vec![10]);
    store.finish().await;
}
