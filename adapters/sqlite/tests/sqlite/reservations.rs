//! `SqliteReservationRepository` beyond the port contract (`concert_contract::reservations`,
//! run in `contract.rs`): reservation ids come from the store's own `counters` row.

use concert_contract::Store;
use concert_contract::fixtures::{NOW, concert, hold, seat_ref, user};
use concert_sqlite::testing;

use crate::contract::EmbeddedStore;

#[tokio::test(flavor = "multi_thread")]
async fn the_ids_set_aside_never_collide_with_a_stored_reservation() {
    let store = EmbeddedStore::fresh().await;
    let id = concert(&store, 10).await;
    let repo = store.reservations();
    // Ids are drawn from the `reservations` counter: each load draws one, written or not.
    let first = hold(&store, user(), seat_ref(id, 1), NOW).await;
    let unused = repo
        .load_hold(user(), seat_ref(id, 2))
        .await
        .expect("load")
        .expect("seat")
        .next_reservation;
    let second = hold(&store, user(), seat_ref(id, 3), NOW).await;
    assert!(first.id() < unused && unused < second.id());
    // A counter row lost (or a store whose rows came from elsewhere) starts past the highest id.
    testing::execute(
        &store.store,
        "DELETE FROM counters WHERE name = 'reservations'",
    )
    .await
    .expect("the counter row deleted");
    let next = repo
        .load_hold(user(), seat_ref(id, 4))
        .await
        .expect("load")
        .expect("seat")
        .next_reservation;
    assert_eq!(next.get(), second.id().get() + 1);
}
