//! `SqliteWalletRepository`'s contract (the PostgreSQL adapter's, `wallet.rs` there): the wallet
//! loads with its version; a charge over that version writes the balance, exactly one ledger
//! entry and the key row in one step, or nothing.

use concert_application::ports::{ChargeWrite, Version, Versioned, WalletRepository, Written};
use concert_domain::wallet::{LedgerKind, ledger_is_consistent};
use concert_domain::{Balance, LedgerEntryId, Wallet, WalletLimits};
use time::Duration;

use crate::booking_support::{Ctx, NOW, amount, charge, decide_charge, key, user};

#[tokio::test(flavor = "multi_thread")]
async fn a_user_never_seen_loads_as_an_absent_empty_wallet() {
    let ctx = Ctx::new();
    let wallets = ctx.wallets();
    let someone = user();
    let loaded = wallets.load(someone).await.expect("load");
    assert_eq!(loaded.version, Version::ABSENT);
    assert_eq!(loaded.value, Wallet::empty(someone));
    assert_eq!(
        wallets.balance(someone).await.expect("balance"),
        Balance::ZERO
    );
    assert!(
        wallets
            .history(someone, 50, None)
            .await
            .expect("history")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_over_the_version_read_writes_balance_and_exactly_one_entry_and_bumps_it() {
    let ctx = Ctx::new();
    let wallets = ctx.wallets();
    let someone = user();

    let first = decide_charge(&ctx, someone, 50_000, NOW, None).await;
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
    let second = decide_charge(&ctx, someone, 45_000, later, None).await;
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
        ctx.count("SELECT count(*) AS count FROM idempotency_keys")
            .await,
        0,
        "no key, no key row"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_over_an_older_version_is_stale_and_writes_nothing() {
    let ctx = Ctx::new();
    let wallets = ctx.wallets();
    let someone = user();

    // Two charges decided on the absent wallet: the second finds it created meanwhile.
    let first = decide_charge(&ctx, someone, 100, NOW, None).await;
    let twin = decide_charge(&ctx, someone, 200, NOW, Some(key("twin"))).await;
    assert_eq!(
        wallets.save_charge(&first).await.expect("save"),
        Written::Done(())
    );
    let before = ctx.rows().await;
    assert_eq!(
        wallets.save_charge(&twin).await.expect("save"),
        Written::Stale
    );
    assert_eq!(
        ctx.rows().await,
        before,
        "nothing written, not even the key"
    );

    // Two charges decided on version 1: the second finds version 2.
    let a = decide_charge(&ctx, someone, 10, NOW, None).await;
    let b = decide_charge(&ctx, someone, 20, NOW, Some(key("b"))).await;
    assert_eq!(a.wallet.version, Version::new(1));
    assert_eq!(
        wallets.save_charge(&a).await.expect("save"),
        Written::Done(())
    );
    let before = ctx.rows().await;
    assert_eq!(wallets.save_charge(&b).await.expect("save"), Written::Stale);
    assert_eq!(ctx.rows().await, before);
    assert_eq!(wallets.balance(someone).await.expect("balance").get(), 110);
    // Decided again on the current version, it goes through.
    let b = decide_charge(&ctx, someone, 20, NOW, Some(key("b"))).await;
    assert_eq!(
        wallets.save_charge(&b).await.expect("save"),
        Written::Done(())
    );
    let history = wallets.history(someone, 50, None).await.expect("history");
    assert_eq!(history.len(), 3);
    assert!(ledger_is_consistent(
        &history,
        Balance::new(130).expect("balance")
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_with_a_key_stores_the_key_row_pointing_at_its_entry_in_the_same_step() {
    let ctx = Ctx::new();
    let wallets = ctx.wallets();
    let someone = user();
    charge(&ctx, someone, 1_000).await;

    let write = decide_charge(&ctx, someone, 500, NOW, Some(key("charge-1"))).await;
    assert_eq!(
        wallets.save_charge(&write).await.expect("save"),
        Written::Done(())
    );
    let entry = wallets.history(someone, 1, None).await.expect("history")[0].clone();
    assert_eq!(entry.balance_after.get(), 1_500);
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM idempotency_keys WHERE user_id = '{someone}' \
             AND scope = 'charge' AND key = 'charge-1' AND request_hash = 'hash-of-charge-1' \
             AND ledger_entry_id = {} AND payment_id IS NULL",
            entry.id.get()
        ))
        .await,
        1
    );

    // The key already stored: a write decided on the current version is stale, not an error,
    // and writes nothing (the whole transaction is rolled back).
    let replay = decide_charge(&ctx, someone, 500, NOW, Some(key("charge-1"))).await;
    assert_eq!(replay.wallet.version, Version::new(2));
    let before = ctx.rows().await;
    assert_eq!(
        wallets.save_charge(&replay).await.expect("save"),
        Written::Stale
    );
    assert_eq!(ctx.rows().await, before);
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        1_500
    );
    // The same key of another user is another key.
    let other = user();
    let theirs = decide_charge(&ctx, other, 500, NOW, Some(key("charge-1"))).await;
    assert_eq!(
        wallets.save_charge(&theirs).await.expect("save"),
        Written::Done(())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_charge_draws_no_ledger_id() {
    let ctx = Ctx::new();
    let wallets = ctx.wallets();
    let someone = user();
    charge(&ctx, someone, 1_000).await;
    let keyed = decide_charge(&ctx, someone, 1, NOW, Some(key("k"))).await;
    assert_eq!(
        wallets.save_charge(&keyed).await.expect("save"),
        Written::Done(())
    );
    let replay = decide_charge(&ctx, someone, 1, NOW, Some(key("k"))).await;
    assert_eq!(
        wallets.save_charge(&replay).await.expect("save"),
        Written::Stale
    );
    charge(&ctx, someone, 1).await;
    let ids: Vec<i64> = wallets
        .history(someone, 10, None)
        .await
        .expect("history")
        .iter()
        .map(|e| e.id.get())
        .collect();
    assert_eq!(
        ids,
        vec![3, 2, 1],
        "the counter moved back with the rollback"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_balance_limit_is_the_domains_and_the_adapter_writes_what_it_decided() {
    let ctx = Ctx::new();
    let wallets = ctx.wallets();
    let someone = user();
    let limits = WalletLimits {
        max_charge: 10_000_000,
        max_balance: 150,
    };
    charge(&ctx, someone, 100).await;
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
}

#[tokio::test(flavor = "multi_thread")]
async fn history_pages_newest_first_and_chains_to_the_balance() {
    let ctx = Ctx::new();
    let wallets = ctx.wallets();
    let someone = user();
    for value in 1..=7 {
        charge(&ctx, someone, value * 10).await;
    }
    charge(&ctx, user(), 999).await; // someone else's entries never show
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
    let before: LedgerEntryId = first_page.last().expect("entry").id;
    let second_page = wallets
        .history(someone, 3, Some(before))
        .await
        .expect("history");
    assert_eq!(
        second_page.iter().map(|e| e.amount).collect::<Vec<_>>(),
        vec![40, 30, 20]
    );
    let last = wallets
        .history(someone, 3, Some(second_page.last().expect("entry").id))
        .await
        .expect("history");
    assert_eq!(last.iter().map(|e| e.amount).collect::<Vec<_>>(), vec![10]);
}
