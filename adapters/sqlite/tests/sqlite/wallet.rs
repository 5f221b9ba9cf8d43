//! `SqliteWalletRepository` beyond the port contract (`concert_contract::wallets`, run in
//! `contract.rs`): ledger ids come from the store's own `counters` row, which a rolled-back
//! write leaves as it was (PostgreSQL's sequences leave gaps).

use concert_application::ports::Written;
use concert_contract::Store;
use concert_contract::fixtures::{NOW, charge, decide_charge, key, user};

use crate::contract::EmbeddedStore;

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_charge_draws_no_ledger_id() {
    let store = EmbeddedStore::fresh().await;
    let wallets = store.wallets();
    let someone = user();
    charge(&store, someone, 1_000, NOW, None).await;
    let keyed = decide_charge(&store, someone, 1, NOW, Some(key("k"))).await;
    assert_eq!(
        wallets.save_charge(&keyed).await.expect("save"),
        Written::Done(())
    );
    let replay = decide_charge(&store, someone, 1, NOW, Some(key("k"))).await;
    assert_eq!(
        wallets.save_charge(&replay).await.expect("save"),
        Written::Stale
    );
    charge(&store, someone, 1, NOW, None).await;
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
