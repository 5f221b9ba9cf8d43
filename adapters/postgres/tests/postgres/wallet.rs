//! `PgWalletRepository`: balances, charges and the ledger.

use concert_application::ports::{ChargeOutcome, ChargeRequest, WalletRepository};
use concert_domain::LedgerEntryId;
use concert_domain::wallet::{LedgerKind, ledger_is_consistent};

use crate::support::{Ctx, MAX_BALANCE, NOW, amount, charge, user};

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_adds_to_the_balance_and_writes_one_ledger_entry() {
    let ctx = Ctx::new().await;
    let wallets = ctx.wallets();
    let someone = user();
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        0,
        "a new user has zero"
    );

    let outcome = wallets
        .charge(&ChargeRequest {
            user: someone,
            amount: amount(50_000),
            max_balance: MAX_BALANCE,
            now: NOW,
            idempotency: None,
        })
        .await
        .expect("charge");
    let ChargeOutcome::Charged(balance) = outcome else {
        panic!("expected a charge, got {outcome:?}");
    };
    assert_eq!(balance.get(), 50_000);
    charge(&ctx, someone, 45_000).await;
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        95_000
    );

    let history = wallets.history(someone, 50, None).await.expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].kind, LedgerKind::Charge);
    assert_eq!(history[0].amount, 45_000);
    assert_eq!(history[0].balance_after.get(), 95_000);
    assert_eq!(history[0].at, NOW);
    assert!(history[0].id > history[1].id, "newest first");
    assert!(
        wallets
            .history(user(), 50, None)
            .await
            .expect("history")
            .is_empty()
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_past_the_maximum_balance_changes_nothing() {
    let ctx = Ctx::new().await;
    let wallets = ctx.wallets();
    let someone = user();
    let request = |value, max_balance| ChargeRequest {
        user: someone,
        amount: amount(value),
        max_balance,
        now: NOW,
        idempotency: None,
    };
    assert!(matches!(
        wallets.charge(&request(100, 150)).await.expect("charge"),
        ChargeOutcome::Charged(_)
    ));
    assert!(
        matches!(
            wallets.charge(&request(50, 150)).await.expect("charge"),
            ChargeOutcome::Charged(b) if b.get() == 150
        ),
        "exactly the maximum is allowed"
    );
    assert_eq!(
        wallets.charge(&request(1, 150)).await.expect("charge"),
        ChargeOutcome::BalanceLimitExceeded
    );
    // A single charge larger than the maximum: refused, not overflowed.
    assert_eq!(
        wallets
            .charge(&request(10_000_000, 5))
            .await
            .expect("charge"),
        ChargeOutcome::BalanceLimitExceeded
    );
    assert_eq!(wallets.balance(someone).await.expect("balance").get(), 150);
    assert_eq!(
        wallets
            .history(someone, 100, None)
            .await
            .expect("history")
            .len(),
        2
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_pages_newest_first_and_chains_to_the_balance() {
    let ctx = Ctx::new().await;
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
    ctx.finish().await;
}
