//! `SqliteRetentionRepository` beyond the port contract (`concert-contract`, which holds what
//! every store does): purges running at once take the rows one writer at a time, each exactly
//! what the others left. And the pre-queue's retention, written raw here until it has a contract
//! of its own (its PostgreSQL twin is among the pre-queue tests of `tests/postgres/rooms.rs`).

use concert_application::ports::{RetentionRepository, RoomRepository, Written};
use concert_domain::{ConcertId, NewRoom, Room, RoomId, RoomState, UserId};
use concert_sqlite::testing::{count, execute, insert_concert};
use concert_sqlite::{SqliteRetentionRepository, SqliteRoomRepository, SqliteStore};
use time::macros::{date, datetime};
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

async fn concert(store: &SqliteStore) -> ConcertId {
    insert_concert(
        store,
        "Winter Gala",
        &[(date!(2030 - 06 - 10), 120_000, 10)],
    )
    .await
    .expect("a concert")
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

/// A `WAITING` ticket row, issued ten days before `NOW`.
async fn waiting_ticket(store: &SqliteStore, number: i64) {
    run(
        store,
        &format!(
            "INSERT INTO queue_tickets (ticket, user_id, status, issued_at) \
             VALUES ({number}, '{}', 'WAITING', {})",
            user().get(),
            micros(NOW - Duration::days(10)),
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_queue_entries_go_only_once_their_room_opened_and_their_story_is_over() {
    let store = SqliteStore::in_memory().expect("store");
    let rooms = SqliteRoomRepository::new(store.clone());
    let retention = SqliteRetentionRepository::new(store.clone());
    rooms
        .create_if_absent(&Room::new(RoomId::default_room(), 500, RoomState::Open).expect("a room"))
        .await
        .expect("default");
    let new = NewRoom {
        id: RoomId::parse("gala").expect("an id"),
        concerts: vec![concert(&store).await],
        max_active: 50,
        admit_per_minute: None,
        opens_at: Some(NOW + Duration::hours(1)),
        shuffle_at_open: false,
        waiting_idle_seconds: None,
    };
    let decided = Room::create(
        &new,
        false,
        &rooms.guards_of(&new.concerts).await.expect("guards"),
        NOW,
    )
    .expect("accepted");
    let Written::Done(gala) = rooms.create(&decided).await.expect("create") else {
        panic!("created");
    };
    let line = i64::from(gala.line().get());
    let base = gala.line().pre_queue_start();
    let place = gala.line().start().get() + 1;
    let issued = micros(NOW);
    // Entry 1 left; entries 2 and 3 wait.
    run(
        &store,
        &format!(
            "INSERT INTO pre_queue (entry, line, user_id, issued_at, ended_at, end_reason) \
             VALUES ({}, {line}, '{}', {issued}, {issued}, 'LEFT')",
            base + 1,
            user().get(),
        ),
    )
    .await;
    run(
        &store,
        &format!(
            "INSERT INTO pre_queue (entry, line, user_id, issued_at) \
             VALUES ({}, {line}, '{}', {issued}), ({}, {line}, '{}', {issued})",
            base + 2,
            user().get(),
            base + 3,
            user().get(),
        ),
    )
    .await;
    let purge = || retention.purge_pre_queue_entries(NOW + Duration::days(30), 100);

    // Before the opening nothing goes, not even the entry that left.
    assert_eq!(purge().await.expect("purge"), 0);
    // The opening gives entries 2 and 3 their places.
    run(
        &store,
        "UPDATE rooms SET opened = 1, version = version + 1 WHERE room_id = 'gala'",
    )
    .await;
    for (entry, ticket) in [(base + 2, place), (base + 3, place + 1)] {
        run(
            &store,
            &format!("UPDATE pre_queue SET ticket = {ticket} WHERE entry = {entry}"),
        )
        .await;
    }
    for number in [place, place + 1] {
        waiting_ticket(&store, number).await;
    }
    // Opened: the ended entry goes; the placed ones stay while their tickets are kept.
    assert_eq!(
        retention
            .purge_pre_queue_entries(NOW - Duration::seconds(1), 100)
            .await
            .expect("purge"),
        0,
        "an end after the cutoff stays"
    );
    assert_eq!(purge().await.expect("purge"), 1);
    assert_eq!(
        count(&store, "SELECT count(*) AS count FROM pre_queue").await,
        2
    );
    // A placed entry goes once its ticket was purged.
    run(
        &store,
        &format!("DELETE FROM queue_tickets WHERE ticket = {place}"),
    )
    .await;
    assert_eq!(purge().await.expect("purge"), 1);
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT count(*) AS count FROM pre_queue WHERE entry = {}",
                base + 3
            )
        )
        .await,
        1
    );
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
