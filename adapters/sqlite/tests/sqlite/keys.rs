//! `deployment_key`: the first candidate stored is the key for good, across restarts; keys are
//! kept by name.

use concert_sqlite::{QUEUE_TOKEN_KEY, SqliteStore, deployment_key};

use crate::store::Scratch;

#[tokio::test(flavor = "multi_thread")]
async fn the_first_candidate_is_kept_and_every_later_start_reads_it() {
    let scratch = Scratch::new();
    let url = scratch.url("concert.db");
    let first = [7_u8; 32];
    let store = SqliteStore::open(&url).await.expect("open");
    assert_eq!(
        deployment_key(&store, QUEUE_TOKEN_KEY, &first)
            .await
            .expect("key"),
        first
    );
    assert_eq!(
        deployment_key(&store, QUEUE_TOKEN_KEY, &[8_u8; 32])
            .await
            .expect("key"),
        first,
        "another candidate does not replace it"
    );
    // Another name is another key.
    assert_eq!(
        deployment_key(&store, "other", &[9_u8; 48])
            .await
            .expect("key"),
        vec![9_u8; 48]
    );
    drop(store);

    let reopened = SqliteStore::open(&url).await.expect("reopen");
    assert_eq!(
        deployment_key(&reopened, QUEUE_TOKEN_KEY, &[10_u8; 32])
            .await
            .expect("key"),
        first,
        "kept across a restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn of_candidates_offered_at_once_one_is_stored_and_everyone_reads_it() {
    const STARTS: u8 = 8;
    let store = SqliteStore::in_memory().expect("store");
    let handles: Vec<_> = (0..STARTS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                deployment_key(&store, QUEUE_TOKEN_KEY, &[i; 32])
                    .await
                    .expect("key")
            })
        })
        .collect();
    let mut keys = Vec::new();
    for handle in handles {
        keys.push(handle.await.expect("joined"));
    }
    assert!(keys.windows(2).all(|pair| pair[0] == pair[1]), "{keys:?}");
    assert_eq!(keys[0].len(), 32);
}

/// The same name as PostgreSQL's (spelled out: this crate does not depend on that adapter), so
/// a deployment moved between the stores finds its key under the name it knows.
#[test]
fn the_queue_token_key_has_postgresql_s_name() {
    assert_eq!(QUEUE_TOKEN_KEY, "queue-token");
}

#[tokio::test]
async fn a_candidate_too_short_to_sign_with_is_refused() {
    let store = SqliteStore::in_memory().expect("store");
    assert!(
        deployment_key(&store, QUEUE_TOKEN_KEY, &[1_u8; 16])
            .await
            .is_err()
    );
}
