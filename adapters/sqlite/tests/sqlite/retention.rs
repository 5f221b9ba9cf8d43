//! `SqliteRetentionRepository` beyond the port contract (`concert-contract`, which holds what
//! every store does): purges running at once take the rows one writer at a time, each exactly
//! what the others left.

use concert_application::ports::RetentionRepository;
use concert_domain::UserId;
use concert_sqlite::testing::{count, execute};
use concert_sqlite::{SqliteRetentionRepository, SqliteStore};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);
const KEYS_SQL: &str = "SELECT count(*) AS count FROM idempotency_keys";

fn user() -> UserId {
    UserId::from_uuid(uuid::Uuid::new_v4())
}

/// An instant as the store keeps it (microseconds since the epoch), for raw fixtures.
fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).expect("in range")
}

/// Runs a fixture's SQL; panics if it fails.
async fn run(store: &SqliteStore, sql: &str) {
    execute(store, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

/// `count` charges of one user, each with its ledger entry and its key stored at `at`.
async fn keyed_charges(store: &SqliteStore, at: OffsetDateTime, count: usize) {
    let who = user();
    for n in 0..count {
        run(
            store,
            &format!(
                "INSERT INTO ledger_entries (user_id, kind, amount, balance_after, at) \
                 VALUES ('{who}', 'CHARGE', 10, {balance}, {at})",
                who = who.get(),
                balance = 10 * (n + 1),
                at = micros(at),
            ),
        )
        .await;
        run(
            store,
            &format!(
                "INSERT INTO idempotency_keys (user_id, scope, key, request_hash, \
                                               ledger_entry_id, created_at) \
                 VALUES ('{who}', 'charge', 'k{n}', 'hash', \
                         (SELECT max(id) FROM ledger_entries), {at})",
                who = who.get(),
                at = micros(at),
            ),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_running_at_once_share_the_rows() {
    let store = SqliteStore::in_memory().expect("store");
    keyed_charges(&store, NOW - Duration::days(9), 60).await;
    keyed_charges(&store, NOW, 5).await;

    let purges: Vec<_> = (0..3)
        .map(|_| {
            let records = SqliteRetentionRepository::new(store.clone());
            tokio::spawn(async move {
                records
                    .purge_idempotency_keys(NOW - Duration::days(7), 25)
                    .await
                    .expect("purge")
            })
        })
        .collect();
    let mut purged = Vec::new();
    for purge in purges {
        purged.push(purge.await.expect("joined"));
    }
    purged.sort_unstable();
    // One writer at a time: each takes what the others left, none fails or takes a row twice.
    assert_eq!(purged, vec![10, 25, 25]);
    assert_eq!(count(&store, KEYS_SQL).await, 5);
}
