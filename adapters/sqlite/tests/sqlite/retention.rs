//! `SqliteRetentionRepository`: only records past their cutoff go, in batches of at most the
//! limit, oldest first; purges running at once share the rows. The records are fixtures written
//! raw (their own ports are tested elsewhere).

use concert_application::ports::{RetentionRepository, RoomRepository, Written};
use concert_domain::{NewRoom, Room, RoomId, RoomState};
use concert_sqlite::{SqliteRetentionRepository, SqliteRoomRepository};
use time::{Duration, OffsetDateTime};

use crate::catalog::{NOW, Raw, concert, micros, user};

const KEYS_SQL: &str = "SELECT count(*) AS count FROM idempotency_keys";
const TICKETS_SUM_SQL: &str = "SELECT coalesce(sum(ticket), 0) AS count FROM queue_tickets";

/// `count` charges of one user, each with its ledger entry and its key stored at `at`.
fn keyed_charges(raw: &Raw, at: OffsetDateTime, count: usize) {
    let who = user();
    for n in 0..count {
        raw.execute(&format!(
            "INSERT INTO ledger_entries (user_id, kind, amount, balance_after, at) \
             VALUES ('{who}', 'CHARGE', 10, {balance}, {at}); \
             INSERT INTO idempotency_keys (user_id, scope, key, request_hash, ledger_entry_id, \
                                           created_at) \
             VALUES ('{who}', 'charge', 'k{n}', 'hash', last_insert_rowid(), {at});",
            who = who.get(),
            balance = 10 * (n + 1),
            at = micros(at),
        ));
    }
}

/// A ticket row as `status` with `ended_at`, issued ten days before `NOW` (an ended one was
/// admitted: it goes with the tickets' retention, whatever the line's counter).
fn ticket(raw: &Raw, number: i64, status: &str, ended: Option<OffsetDateTime>) {
    let issued = micros(NOW - Duration::days(10));
    let admitted = if status == "WAITING" {
        "NULL".to_owned()
    } else {
        issued.to_string()
    };
    let (ended, reason) = match ended {
        Some(at) => (micros(at).to_string(), "'PAID'"),
        None => ("NULL".to_owned(), "NULL"),
    };
    raw.execute(&format!(
        "INSERT INTO queue_tickets (ticket, user_id, status, issued_at, admitted_at, \
                                    active_until, last_seen, ended_at, end_reason) \
         VALUES ({number}, '{}', '{status}', {issued}, {admitted}, {admitted}, {admitted}, \
                 {ended}, {reason})",
        user().get()
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_older_than_their_cutoff_go_in_batches_and_their_effects_stay() {
    let raw = Raw::new().await;
    let records = SqliteRetentionRepository::new(raw.store.clone());
    keyed_charges(&raw, NOW - Duration::days(8), 3);
    keyed_charges(&raw, NOW - Duration::days(6), 2);
    let cutoff = NOW - Duration::days(7);

    for expected in [2, 1, 0] {
        assert_eq!(
            records
                .purge_idempotency_keys(cutoff, 2)
                .await
                .expect("purge"),
            expected
        );
    }
    assert_eq!(raw.count(KEYS_SQL), 2, "the younger keys stay");
    assert_eq!(
        raw.count(&format!(
            "SELECT count(*) AS count FROM idempotency_keys WHERE created_at < {}",
            micros(cutoff)
        )),
        0,
        "every key before the cutoff went"
    );
    assert_eq!(
        raw.count("SELECT count(*) AS count FROM ledger_entries"),
        5,
        "the charges themselves stay"
    );
    // A key stored exactly at the cutoff is not before it.
    assert_eq!(
        records
            .purge_idempotency_keys(NOW - Duration::days(6), 10)
            .await
            .expect("purge"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_go_oldest_first() {
    let raw = Raw::new().await;
    let records = SqliteRetentionRepository::new(raw.store.clone());
    // The younger batch is written first: row order is not age order.
    keyed_charges(&raw, NOW - Duration::days(8), 2);
    keyed_charges(&raw, NOW - Duration::days(9), 2);
    assert_eq!(
        records.purge_idempotency_keys(NOW, 2).await.expect("purge"),
        2
    );
    assert_eq!(
        raw.count(&format!(
            "SELECT count(*) AS count FROM idempotency_keys WHERE created_at = {}",
            micros(NOW - Duration::days(8))
        )),
        2,
        "the two oldest went"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_tickets_ended_before_the_cutoff_go() {
    let raw = Raw::new().await;
    let records = SqliteRetentionRepository::new(raw.store.clone());
    ticket(&raw, 1, "EXPIRED", Some(NOW - Duration::hours(30)));
    ticket(&raw, 2, "EXPIRED", Some(NOW - Duration::hours(2)));
    ticket(&raw, 3, "ACTIVE", None);
    ticket(&raw, 4, "WAITING", None);

    let purged = records
        .purge_ended_tickets(NOW - Duration::days(1), 100)
        .await
        .expect("purge");

    assert_eq!(purged, 1);
    assert_eq!(raw.count(TICKETS_SUM_SQL), 2 + 3 + 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_that_left_while_waiting_stays_until_admission_passes_its_place() {
    let raw = Raw::new().await;
    let records = SqliteRetentionRepository::new(raw.store.clone());
    // Tickets 5, 6 and 9 left long ago, unadmitted; the line has served up to 6.
    for number in [5, 6, 9] {
        raw.execute(&format!(
            "INSERT INTO queue_tickets (ticket, user_id, status, issued_at, ended_at, end_reason) \
             VALUES ({number}, '{}', 'EXPIRED', {}, {}, 'LEFT')",
            user().get(),
            micros(NOW - Duration::days(3)),
            micros(NOW - Duration::days(2)),
        ));
    }
    raw.execute("UPDATE queue_state SET serving = 6 WHERE line = 0");

    let purged = records
        .purge_ended_tickets(NOW - Duration::days(1), 100)
        .await
        .expect("purge");

    assert_eq!(purged, 2, "only the ones the line has reached");
    assert_eq!(raw.count(TICKETS_SUM_SQL), 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_queue_entries_go_only_once_their_room_opened_and_their_story_is_over() {
    let raw = Raw::new().await;
    let rooms = SqliteRoomRepository::new(raw.store.clone());
    let retention = SqliteRetentionRepository::new(raw.store.clone());
    rooms
        .create_if_absent(&Room::new(RoomId::default_room(), 500, RoomState::Open).expect("a room"))
        .await
        .expect("default");
    let new = NewRoom {
        id: RoomId::parse("gala").expect("an id"),
        concerts: vec![concert(&raw.store, 10).await],
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
    raw.execute(&format!(
        "INSERT INTO pre_queue (entry, line, user_id, issued_at, ended_at, end_reason) \
         VALUES ({}, {line}, '{}', {issued}, {issued}, 'LEFT'); \
         INSERT INTO pre_queue (entry, line, user_id, issued_at) \
         VALUES ({}, {line}, '{}', {issued}), ({}, {line}, '{}', {issued});",
        base + 1,
        user().get(),
        base + 2,
        user().get(),
        base + 3,
        user().get(),
    ));
    let purge = || retention.purge_pre_queue_entries(NOW + Duration::days(30), 100);

    // Before the opening nothing goes, not even the entry that left.
    assert_eq!(purge().await.expect("purge"), 0);
    // The opening gives entries 2 and 3 their places.
    raw.execute(&format!(
        "UPDATE rooms SET opened = 1, version = version + 1 WHERE room_id = 'gala'; \
         UPDATE pre_queue SET ticket = {place} WHERE entry = {e2}; \
         UPDATE pre_queue SET ticket = {p2} WHERE entry = {e3};",
        e2 = base + 2,
        e3 = base + 3,
        p2 = place + 1,
    ));
    for number in [place, place + 1] {
        ticket(&raw, number, "WAITING", None);
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
    assert_eq!(raw.count("SELECT count(*) AS count FROM pre_queue"), 2);
    // A placed entry goes once its ticket was purged.
    raw.execute(&format!("DELETE FROM queue_tickets WHERE ticket = {place}"));
    assert_eq!(purge().await.expect("purge"), 1);
    assert_eq!(
        raw.count(&format!(
            "SELECT count(*) AS count FROM pre_queue WHERE entry = {}",
            base + 3
        )),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_running_at_once_share_the_rows() {
    let raw = Raw::new().await;
    keyed_charges(&raw, NOW - Duration::days(9), 60);
    keyed_charges(&raw, NOW, 5);

    let purges: Vec<_> = (0..3)
        .map(|_| {
            let records = SqliteRetentionRepository::new(raw.store.clone());
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
    assert_eq!(raw.count(KEYS_SQL), 5);
}
