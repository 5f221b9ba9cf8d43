//! `SqliteWalletRepository` beyond the port contract (`concert_contract::wallets`, run in
//! `contract.rs`): ledger ids come from the store's own `counters` row, which a rolled-back
//! write leaves as it was (PostgreSQL's sequences leave gaps).

use concert_application::ports::{WalletRepository, Written};

use crate::booking_support::{Ctx, NOW, charge, decide_charge, key, user};

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
