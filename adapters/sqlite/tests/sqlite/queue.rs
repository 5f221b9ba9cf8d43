//! `SqliteQueueRepository`'s contract, calling the port directly (the behaviour tests of
//! `adapters/postgres/tests/postgres/queue.rs` and of the lines and pre-queues of `rooms.rs`):
//! loads carry the version of the user's place, a join over the version read draws the next
//! number and one over an older version is `Stale` and draws none, ends and activity write only
//! over the state read, an admission step writes exactly what its `AdmissionRules` decided or
//! nothing at all (`Stale`), and a room's pre-queue gets the line's first places at its opening,
//! once, in the order the opening rules return.
//!
//! Not ported: PostgreSQL's tests of a step made stale by a write on another connection between
//! its reads and its writes. Here a step holds the store's one writer lock from its first read
//! to its commit, so such a write waits for it instead
//! (`nothing_joins_while_a_step_holds_the_line`); the compare-and-set of the step's writes is
//! shown by rules that decide on tickets not as stored.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use concert_application::ports::{
    ActivityWrite, AdmissionReport, AdmissionRules, JoinWrite, OpeningRules, PreQueueEnd,
    PreQueueEntry, PreQueueJoin, PreQueueJoined, PreQueueOutcome, QueueRepository, QueueSnapshot,
    TicketEnd, Version, WaitingPoll, Written,
};
use concert_domain::queue::{Join, ServingCounter, admit_oldest, end_overdue, join as join_line};
use concert_domain::{
    Admission, EndReason, LineNo, Overdue, Pace, QueuePolicy, QueueTicket, Room, RoomChange,
    RoomId, RoomState, TicketNo, TicketStatus, UserId, WaitingIdle,
};
use concert_sqlite::testing::{count, insert_room, queue_rows};
use concert_sqlite::{SqliteQueueRepository, SqliteStore};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio::sync::{Barrier, watch};

pub const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);

/// An instant as stored (microseconds since the epoch), for raw queries.
pub fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).expect("an instant in range")
}

pub fn user() -> UserId {
    UserId::from_uuid(uuid::Uuid::new_v4())
}

/// A fresh store with the `default` room's line, and the queue on it.
pub fn fresh() -> (SqliteStore, SqliteQueueRepository) {
    let store = SqliteStore::in_memory().expect("an in-memory store");
    let queue = SqliteQueueRepository::new(store.clone());
    (store, queue)
}

pub fn policy(max_active: u32) -> QueuePolicy {
    QueuePolicy {
        max_active,
        active_ttl: Duration::minutes(10),
        idle_timeout: Duration::minutes(2),
        waiting_idle: None,
    }
}

/// Runs `task(i)` for `i` in `0..n`, each on its own tokio task, released together by a
/// barrier; the results in task order.
pub async fn race<T, F, Fut>(n: usize, task: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let work = task(i);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for handle in handles {
        results.push(handle.await.expect("a race task panicked"));
    }
    results
}

/// A small deterministic generator (xorshift).
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let len = u64::try_from(items.len()).ok()?;
        (len > 0).then(|| &items[usize::try_from(self.below(len)).unwrap_or(0)])
    }
}

fn member_version_sql(who: UserId) -> String {
    format!("SELECT coalesce(max(version), 0) AS count FROM queue_members WHERE user_id = '{who}'")
}

/// The line's counter (PostgreSQL's sequence): any number drawn changes it.
const COUNTER_SQL: &str =
    "SELECT coalesce(max(value), 0) AS count FROM counters WHERE name = 'queue_line_0'";

pub async fn ticket_status(store: &SqliteStore, ticket: TicketNo) -> String {
    match count(
        store,
        &format!(
            "SELECT CASE status WHEN 'WAITING' THEN 1 WHEN 'ACTIVE' THEN 2 ELSE 3 END AS count \
             FROM queue_tickets WHERE ticket = {}",
            ticket.get()
        ),
    )
    .await
    {
        1 => "WAITING",
        2 => "ACTIVE",
        _ => "EXPIRED",
    }
    .to_owned()
}

async fn stored(queue: &SqliteQueueRepository, ticket: TicketNo) -> QueueTicket {
    queue.find(ticket).await.expect("find").expect("ticket")
}

/// A join into `line` through the port: load, then draw over the version read; panics unless it
/// is drawn.
pub async fn join_in(
    queue: &SqliteQueueRepository,
    who: UserId,
    line: LineNo,
    now: OffsetDateTime,
) -> QueueTicket {
    let live = queue.load_live(who, line).await.expect("load_live");
    let write = JoinWrite {
        line,
        user: who,
        version: live.version,
        now,
    };
    match queue.save_join(&write).await.expect("save_join") {
        Written::Done(ticket) => ticket,
        Written::Stale => panic!("the join over the version just read was stale"),
    }
}

async fn join(queue: &SqliteQueueRepository, who: UserId, now: OffsetDateTime) -> QueueTicket {
    join_in(queue, who, LineNo::DEFAULT, now).await
}

/// `ticket` admitted with the deadlines the rules chose (not necessarily the domain's).
fn admitted(ticket: &QueueTicket, until: OffsetDateTime, seen: OffsetDateTime) -> QueueTicket {
    QueueTicket::restore(
        ticket.ticket(),
        ticket.user(),
        TicketStatus::Active,
        ticket.issued_at(),
        Some(until),
        Some(seen),
    )
}

fn numbers(tickets: &[QueueTicket]) -> Vec<i64> {
    tickets.iter().map(|t| t.ticket().get()).collect()
}

fn counts(queue_snapshot: QueueSnapshot) -> (i64, u64, u64, u64) {
    (
        queue_snapshot.serving.get(),
        queue_snapshot.admitted_total,
        queue_snapshot.waiting,
        queue_snapshot.active,
    )
}

/// What the adapter showed the rules.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Seen {
    active: Vec<i64>,
    waiting: Option<(Vec<i64>, u32)>,
}

/// Test rules: end every active ticket or none (or exactly `ends`), leave `free` places, admit
/// exactly `admit` and pass over exactly `pass_over`.
#[derive(Default)]
struct Scripted {
    end_all: bool,
    ends: Vec<QueueTicket>,
    free: u32,
    admit: Vec<QueueTicket>,
    pass_over: Vec<QueueTicket>,
    seen: Mutex<Seen>,
}

impl Scripted {
    fn seen(&self) -> Seen {
        self.seen.lock().expect("seen").clone()
    }
}

impl AdmissionRules for Scripted {
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue {
        self.seen.lock().expect("seen").active = numbers(active);
        let ended = if self.end_all {
            active
                .iter()
                .map(|ticket| {
                    let mut ended = ticket.clone();
                    ended.end(EndReason::Paid);
                    ended
                })
                .collect()
        } else {
            self.ends.clone()
        };
        Overdue {
            ended,
            free: self.free,
        }
    }

    fn waiting_candidates(&self, free: u32) -> u32 {
        free
    }

    fn admit_oldest(&self, waiting: &[QueueTicket], free: u32) -> Admission {
        self.seen.lock().expect("seen").waiting = Some((numbers(waiting), free));
        Admission {
            admitted: self.admit.clone(),
            passed_over: self.pass_over.clone(),
        }
    }

    fn is_paced(&self) -> bool {
        false
    }

    fn paced(&self, free: u32, _last_minute: u32, pace: Pace) -> (u32, Pace) {
        (free, pace)
    }
}

/// The domain's rules at one instant, as `AdmitNextInLine` passes them.
pub struct DomainRules {
    pub policy: QueuePolicy,
    pub now: OffsetDateTime,
    pub room: Option<Room>,
}

impl AdmissionRules for DomainRules {
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue {
        end_overdue(active, self.now, &self.policy)
    }

    fn waiting_candidates(&self, free: u32) -> u32 {
        self.policy.waiting_candidates(free)
    }

    fn admit_oldest(&self, waiting: &[QueueTicket], free: u32) -> Admission {
        admit_oldest(waiting, free, self.now, &self.policy)
    }

    fn is_paced(&self) -> bool {
        self.room.as_ref().is_some_and(Room::is_paced)
    }

    fn paced(&self, free: u32, last_minute: u32, pace: Pace) -> (u32, Pace) {
        match &self.room {
            Some(room) => room.paced(free, last_minute, pace, self.now),
            None => (free, pace),
        }
    }
}

/// One step of `line` under the domain's rules; panics if it is stale.
pub async fn step(
    queue: &SqliteQueueRepository,
    line: LineNo,
    policy: QueuePolicy,
    now: OffsetDateTime,
) -> AdmissionReport {
    admit_in_room(queue, line, policy, None, now).await
}

async fn admit_with(
    queue: &SqliteQueueRepository,
    policy: QueuePolicy,
    now: OffsetDateTime,
) -> AdmissionReport {
    step(queue, LineNo::DEFAULT, policy, now).await
}

async fn admit_in_room(
    queue: &SqliteQueueRepository,
    line: LineNo,
    policy: QueuePolicy,
    room: Option<Room>,
    now: OffsetDateTime,
) -> AdmissionReport {
    match queue
        .admit(line, now, &DomainRules { policy, now, room })
        .await
        .expect("admit")
    {
        Written::Done(report) => report,
        Written::Stale => panic!("nothing changed under this step"),
    }
}

// ---- Joins. ----

#[tokio::test(flavor = "multi_thread")]
async fn load_live_returns_the_live_ticket_and_the_version_of_the_users_place() {
    let (_store, queue) = fresh();
    let someone = user();

    let fresh = queue
        .load_live(someone, LineNo::DEFAULT)
        .await
        .expect("load");
    assert_eq!((fresh.ticket, fresh.version), (None, Version::ABSENT));

    let first = join(&queue, someone, NOW).await;
    join(&queue, user(), NOW).await; // another user's place is not this one's
    let waiting = queue
        .load_live(someone, LineNo::DEFAULT)
        .await
        .expect("load");
    assert_eq!(waiting.ticket, Some(first.clone()));
    assert_eq!(waiting.version, Version::new(1));

    // Admitted: still live, same place.
    let rules = Scripted {
        free: 1,
        admit: vec![admitted(&first, NOW + Duration::minutes(10), NOW)],
        ..Scripted::default()
    };
    assert!(matches!(
        queue
            .admit(LineNo::DEFAULT, NOW, &rules)
            .await
            .expect("admit"),
        Written::Done(_)
    ));
    let active = queue
        .load_live(someone, LineNo::DEFAULT)
        .await
        .expect("load");
    assert_eq!(
        active.ticket.as_ref().map(QueueTicket::stored_status),
        Some(TicketStatus::Active)
    );
    assert_eq!(active.version, Version::new(1));

    // Ended (EXPIRED): not live; the place keeps its version until the user joins again.
    let end = TicketEnd {
        ticket: first.ticket(),
        read_as: TicketStatus::Active,
        reason: EndReason::Left,
    };
    assert_eq!(queue.end(&end, NOW).await.expect("end"), Written::Done(()));
    let ended = queue
        .load_live(someone, LineNo::DEFAULT)
        .await
        .expect("load");
    assert_eq!((ended.ticket, ended.version), (None, Version::new(1)));

    let again = join(&queue, someone, NOW + Duration::minutes(1)).await;
    let rejoined = queue
        .load_live(someone, LineNo::DEFAULT)
        .await
        .expect("load");
    assert_eq!(rejoined.ticket, Some(again));
    assert_eq!(rejoined.version, Version::new(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_over_the_version_read_draws_the_next_number_and_moves_the_place() {
    let (store, queue) = fresh();
    let someone = user();

    let first = join(&queue, someone, NOW).await;
    assert_eq!(first.ticket().get(), 1, "the default line's first place");
    assert_eq!(first.user(), someone);
    assert_eq!(first.stored_status(), TicketStatus::Waiting);
    assert_eq!(first.issued_at(), NOW);
    assert_eq!((first.active_until(), first.last_seen()), (None, None));
    assert_eq!(stored(&queue, first.ticket()).await, first);
    assert_eq!(count(&store, &member_version_sql(someone)).await, 1);

    let second = join(&queue, user(), NOW + Duration::seconds(1)).await;
    assert_eq!(second.ticket().get(), first.ticket().get() + 1, "no gap");
    assert_eq!(
        queue
            .find(TicketNo::new(second.ticket().get() + 100).expect("ticket"))
            .await
            .expect("find"),
        None
    );
    let snapshot = queue.snapshot(LineNo::DEFAULT).await.expect("snapshot");
    assert_eq!(counts(snapshot), (0, 0, 2, 0));
    assert_eq!((snapshot.issued, snapshot.pre_queued), (2, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_over_an_old_version_is_stale_draws_no_number_and_writes_nothing() {
    let (store, queue) = fresh();
    let someone = user();
    let over_absent = JoinWrite {
        line: LineNo::DEFAULT,
        user: someone,
        version: Version::ABSENT,
        now: NOW,
    };

    // Two first joins decided on "never joined": the second loses the insert of the place.
    let first = match queue.save_join(&over_absent).await.expect("join") {
        Written::Done(ticket) => ticket,
        Written::Stale => panic!("the first join is stale"),
    };
    let check_stale = async |write: &JoinWrite, why: &str| {
        let before = queue_rows(&store).await;
        let counter = count(&store, COUNTER_SQL).await;
        assert_eq!(
            queue.save_join(write).await.expect("join"),
            Written::Stale,
            "{why}"
        );
        assert_eq!(queue_rows(&store).await, before, "{why}: nothing written");
        assert_eq!(
            count(&store, COUNTER_SQL).await,
            counter,
            "{why}: no number drawn"
        );
    };
    check_stale(&over_absent, "a duplicate first join").await;
    // A version the place never had.
    check_stale(
        &JoinWrite {
            version: Version::new(5),
            ..over_absent
        },
        "a version from nowhere",
    )
    .await;

    // Once the ticket ended, only the version tells a duplicate from a new join.
    let end = TicketEnd {
        ticket: first.ticket(),
        read_as: TicketStatus::Waiting,
        reason: EndReason::Left,
    };
    assert_eq!(queue.end(&end, NOW).await.expect("end"), Written::Done(()));
    check_stale(
        &over_absent,
        "a join decided before the first one, after its end",
    )
    .await;
    let again = JoinWrite {
        version: Version::new(1),
        ..over_absent
    };
    let second = match queue.save_join(&again).await.expect("join") {
        Written::Done(ticket) => ticket,
        Written::Stale => panic!("the join over the version read is stale"),
    };
    assert_eq!(second.ticket().get(), first.ticket().get() + 1, "no gap");
    check_stale(&again, "the same join twice").await;

    // The losers consumed no number: the next user's is exactly the next one.
    let next = join(&queue, user(), NOW).await;
    assert_eq!(next.ticket().get(), second.ticket().get() + 1, "no gap");
    assert_eq!(
        count(&store, "SELECT count(*) AS count FROM queue_tickets").await,
        3
    );
    assert_eq!(count(&store, &member_version_sql(someone)).await, 2);
}

// ---- Ends and activity. ----

#[tokio::test(flavor = "multi_thread")]
async fn end_only_ends_a_ticket_still_in_the_status_read() {
    let (store, queue) = fresh();
    let waiting = join(&queue, user(), NOW).await.ticket();
    let active = join(&queue, user(), NOW).await.ticket();
    let rules = Scripted {
        free: 1,
        admit: vec![admitted(
            &stored(&queue, active).await,
            NOW + Duration::minutes(10),
            NOW,
        )],
        ..Scripted::default()
    };
    assert!(matches!(
        queue
            .admit(LineNo::DEFAULT, NOW, &rules)
            .await
            .expect("admit"),
        Written::Done(_)
    ));
    let later = NOW + Duration::minutes(1);

    for (ticket, read_as) in [
        (waiting, TicketStatus::Active),
        (active, TicketStatus::Waiting),
        (active, TicketStatus::Expired),
    ] {
        let before = queue_rows(&store).await;
        let end = TicketEnd {
            ticket,
            read_as,
            reason: EndReason::Left,
        };
        assert_eq!(queue.end(&end, later).await.expect("end"), Written::Stale);
        assert_eq!(queue_rows(&store).await, before, "nothing written");
    }

    for (ticket, read_as, ended_waiting) in [
        (waiting, TicketStatus::Waiting, 1),
        (active, TicketStatus::Active, 1),
    ] {
        let end = TicketEnd {
            ticket,
            read_as,
            reason: EndReason::Left,
        };
        assert_eq!(
            queue.end(&end, later).await.expect("end"),
            Written::Done(())
        );
        assert_eq!(ticket_status(&store, ticket).await, "EXPIRED");
        assert_eq!(
            stored(&queue, ticket).await.end_reason(),
            Some(EndReason::Left)
        );
        assert_eq!(
            count(
                &store,
                &format!(
                    "SELECT count(*) AS count FROM queue_tickets \
                     WHERE ticket = {} AND ended_at = {}",
                    ticket.get(),
                    micros(later)
                )
            )
            .await,
            1
        );
        // Only the ticket that ended while waiting is tallied out of the line.
        assert_eq!(
            count(
                &store,
                "SELECT ended_waiting_total AS count FROM queue_state WHERE line = 0"
            )
            .await,
            ended_waiting
        );
        // Ended once: ending it again over the status read is stale.
        let before = queue_rows(&store).await;
        assert_eq!(queue.end(&end, later).await.expect("end"), Written::Stale);
        assert_eq!(queue_rows(&store).await, before);
    }
    let ended: Vec<(i64, Option<EndReason>, OffsetDateTime)> = queue
        .ended_since(LineNo::DEFAULT, later)
        .await
        .expect("ended since")
        .into_iter()
        .map(|e| (e.ticket.get(), e.reason, e.ended_at))
        .collect();
    let mut ended = ended;
    ended.sort_unstable_by_key(|e| e.0);
    assert_eq!(
        ended,
        vec![
            (waiting.get(), Some(EndReason::Left), later),
            (active.get(), Some(EndReason::Left), later)
        ]
    );
    assert!(
        queue
            .ended_since(LineNo::DEFAULT, later + Duration::seconds(1))
            .await
            .expect("ended since")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn activity_is_written_only_over_the_last_seen_read_and_only_on_an_active_ticket() {
    let (store, queue) = fresh();
    let busy = join(&queue, user(), NOW).await;
    let waiting = join(&queue, user(), NOW).await.ticket();
    let rules = Scripted {
        free: 1,
        admit: vec![admitted(&busy, NOW + Duration::minutes(10), NOW)],
        ..Scripted::default()
    };
    assert!(matches!(
        queue
            .admit(LineNo::DEFAULT, NOW, &rules)
            .await
            .expect("admit"),
        Written::Done(_)
    ));
    let busy = busy.ticket();
    let activity = |ticket, read: Option<OffsetDateTime>, minutes| ActivityWrite {
        ticket,
        read_last_seen: read,
        last_seen: NOW + Duration::minutes(minutes),
    };

    assert_eq!(
        queue
            .record_activity(&activity(busy, Some(NOW), 1))
            .await
            .expect("activity"),
        Written::Done(())
    );
    assert_eq!(
        stored(&queue, busy).await.last_seen(),
        Some(NOW + Duration::minutes(1))
    );

    let stale = [
        // Read before the write above (another request got there first).
        activity(busy, Some(NOW), 2),
        // A ticket never admitted has no activity read as "none".
        activity(waiting, None, 2),
        activity(busy, None, 2),
    ];
    for write in stale {
        let before = queue_rows(&store).await;
        assert_eq!(
            queue.record_activity(&write).await.expect("activity"),
            Written::Stale
        );
        assert_eq!(queue_rows(&store).await, before, "nothing written");
    }

    // An ended ticket records nothing, even over the last_seen it still has.
    let end = TicketEnd {
        ticket: busy,
        read_as: TicketStatus::Active,
        reason: EndReason::Left,
    };
    assert_eq!(queue.end(&end, NOW).await.expect("end"), Written::Done(()));
    let before = queue_rows(&store).await;
    assert_eq!(
        queue
            .record_activity(&activity(busy, Some(NOW + Duration::minutes(1)), 3))
            .await
            .expect("activity"),
        Written::Stale
    );
    assert_eq!(queue_rows(&store).await, before, "nothing written");
}

// ---- Admission. ----

#[tokio::test(flavor = "multi_thread")]
async fn an_admission_step_writes_exactly_what_its_rules_decided_and_moves_serving_forward_only() {
    let (store, queue) = fresh();
    let mut line = Vec::new();
    for _ in 0..5 {
        line.push(join(&queue, user(), NOW).await);
    }
    let no = |i: usize| line[i].ticket();
    assert_eq!(
        counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
        (0, 0, 5, 0)
    );

    // Step 1: nothing to end, two places; the rules admit with deadlines of their own.
    let until = NOW + Duration::minutes(7);
    let seen = NOW + Duration::seconds(3);
    let rules = Scripted {
        free: 2,
        admit: vec![
            admitted(&line[0], until, seen),
            admitted(&line[1], until, seen),
        ],
        ..Scripted::default()
    };
    let report = queue
        .admit(LineNo::DEFAULT, NOW, &rules)
        .await
        .expect("admit");
    assert_eq!(
        report,
        Written::Done(AdmissionReport {
            expired: 0,
            idle: 0,
            admitted: 2,
            passed_over: 0,
            serving: ServingCounter::new(no(1).get()),
        })
    );
    assert_eq!(
        rules.seen(),
        Seen {
            active: vec![],
            waiting: Some((vec![no(0).get(), no(1).get()], 2)),
        },
        "the adapter shows the oldest `free` waiting tickets, in ticket order"
    );
    for ticket in &line[..2] {
        assert_eq!(
            stored(&queue, ticket.ticket()).await,
            admitted(ticket, until, seen)
        );
        assert_eq!(
            count(
                &store,
                &format!(
                    "SELECT count(*) AS count FROM queue_tickets \
                     WHERE ticket = {} AND admitted_at = {} AND ended_at IS NULL",
                    ticket.ticket().get(),
                    micros(NOW)
                )
            )
            .await,
            1
        );
    }
    for ticket in &line[2..] {
        assert_eq!(&stored(&queue, ticket.ticket()).await, ticket, "untouched");
    }
    assert_eq!(
        counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
        (no(1).get(), 2, 3, 2)
    );

    // Step 2: the rules end every active ticket and admit ticket 4, passing over ticket 3: the
    // adapter writes what they decided (the order of the line is the domain's rule).
    let later = NOW + Duration::minutes(1);
    let rules = Scripted {
        end_all: true,
        free: 1,
        admit: vec![admitted(&line[3], until, later)],
        ..Scripted::default()
    };
    let report = queue
        .admit(LineNo::DEFAULT, later, &rules)
        .await
        .expect("admit");
    assert_eq!(
        report,
        Written::Done(AdmissionReport {
            expired: 2,
            idle: 0,
            admitted: 1,
            passed_over: 0,
            serving: ServingCounter::new(no(3).get()),
        })
    );
    assert_eq!(
        rules.seen(),
        Seen {
            active: vec![no(0).get(), no(1).get()],
            waiting: Some((vec![no(2).get()], 1)),
        }
    );
    for i in 0..2 {
        assert_eq!(ticket_status(&store, no(i)).await, "EXPIRED");
        assert_eq!(
            stored(&queue, no(i)).await.end_reason(),
            Some(EndReason::Paid)
        );
        assert_eq!(
            count(
                &store,
                &format!(
                    "SELECT count(*) AS count FROM queue_tickets \
                     WHERE ticket = {} AND ended_at = {}",
                    no(i).get(),
                    micros(later)
                )
            )
            .await,
            1
        );
    }
    assert_eq!(ticket_status(&store, no(2)).await, "WAITING");
    assert_eq!(ticket_status(&store, no(3)).await, "ACTIVE");
    assert_eq!(
        counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
        (no(3).get(), 3, 2, 1)
    );

    // Step 3: ticket 3 admitted after ticket 4: serving never moves back.
    let rules = Scripted {
        free: 1,
        admit: vec![admitted(&line[2], until, later)],
        ..Scripted::default()
    };
    let report = queue
        .admit(LineNo::DEFAULT, later, &rules)
        .await
        .expect("admit");
    assert_eq!(
        report,
        Written::Done(AdmissionReport {
            expired: 0,
            idle: 0,
            admitted: 1,
            passed_over: 0,
            serving: ServingCounter::new(no(3).get()),
        })
    );
    assert_eq!(rules.seen().active, vec![no(3).get()]);
    assert_eq!(
        counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
        (no(3).get(), 4, 1, 2)
    );

    // Step 4: no free place: the waiting tickets are not even read, nothing but the counters'
    // tallies move; a join after it counts as waiting at once.
    let rules = Scripted::default();
    let report = queue
        .admit(LineNo::DEFAULT, later, &rules)
        .await
        .expect("admit");
    assert_eq!(
        report,
        Written::Done(AdmissionReport {
            expired: 0,
            idle: 0,
            admitted: 0,
            passed_over: 0,
            serving: ServingCounter::new(no(3).get()),
        })
    );
    assert_eq!(rules.seen().waiting, None);
    join(&queue, user(), later).await;
    assert_eq!(
        counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
        (no(3).get(), 4, 2, 2)
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) AS count FROM queue_tickets WHERE status = 'WAITING'"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_domains_rules_end_tickets_at_their_active_or_idle_deadline_and_fill_the_places() {
    let (store, queue) = fresh();
    let busy = join(&queue, user(), NOW).await.ticket();
    let idle = join(&queue, user(), NOW).await.ticket();
    let waiting = join(&queue, user(), NOW).await.ticket();
    let report = admit_with(&queue, policy(2), NOW).await;
    assert_eq!((report.expired, report.admitted), (0, 2));

    // `busy` is used every minute, `idle` never after admission.
    for minute in 1..=3 {
        let write = ActivityWrite {
            ticket: busy,
            read_last_seen: stored(&queue, busy).await.last_seen(),
            last_seen: NOW + Duration::minutes(minute),
        };
        assert_eq!(
            queue.record_activity(&write).await.expect("activity"),
            Written::Done(())
        );
    }
    let report = admit_with(
        &queue,
        policy(2),
        NOW + policy(2).idle_deadline_after_activity(),
    )
    .await;
    assert_eq!((report.expired, report.idle, report.admitted), (1, 1, 1));
    assert_eq!(report.serving.get(), waiting.get());
    assert_eq!(ticket_status(&store, idle).await, "EXPIRED");
    assert_eq!(
        stored(&queue, idle).await.end_reason(),
        Some(EndReason::Idle)
    );
    assert_eq!(ticket_status(&store, waiting).await, "ACTIVE");

    // The active deadline ends even a busy ticket; `waiting`, used at 9 minutes, stays.
    for ticket in [busy, waiting] {
        let write = ActivityWrite {
            ticket,
            read_last_seen: stored(&queue, ticket).await.last_seen(),
            last_seen: NOW + Duration::minutes(9),
        };
        assert_eq!(
            queue.record_activity(&write).await.expect("activity"),
            Written::Done(())
        );
    }
    let report = admit_with(&queue, policy(2), NOW + Duration::minutes(10)).await;
    assert_eq!((report.expired, report.idle), (1, 0));
    assert_eq!(ticket_status(&store, busy).await, "EXPIRED");
    assert_eq!(
        stored(&queue, busy).await.end_reason(),
        Some(EndReason::ActiveTimeOver)
    );
    assert_eq!(
        counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
        (waiting.get(), 3, 0, 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admission_over_a_ticket_no_longer_waiting_is_stale_and_writes_nothing() {
    let (store, queue) = fresh();
    let first = join(&queue, user(), NOW).await;
    let second = join(&queue, user(), NOW).await;
    let third = join(&queue, user(), NOW).await;
    admit_with(&queue, policy(1), NOW).await;
    let end = TicketEnd {
        ticket: third.ticket(),
        read_as: TicketStatus::Waiting,
        reason: EndReason::Left,
    };
    assert_eq!(queue.end(&end, NOW).await.expect("end"), Written::Done(()));

    // Rules that end the active ticket and admit the waiting one and the ended one: the
    // admissions are written over WAITING only, so the whole step (the end too) is undone.
    let later = NOW + Duration::minutes(1);
    let until = later + Duration::minutes(10);
    let before = queue_rows(&store).await;
    let rules = Scripted {
        end_all: true,
        free: 2,
        admit: vec![
            admitted(&second, until, later),
            admitted(&third, until, later),
        ],
        ..Scripted::default()
    };
    assert_eq!(
        queue
            .admit(LineNo::DEFAULT, later, &rules)
            .await
            .expect("admit"),
        Written::Stale
    );
    assert_eq!(queue_rows(&store).await, before, "nothing written");
    assert_eq!(rules.seen().active, vec![first.ticket().get()]);

    // Admitting an active ticket again is just as stale.
    let rules = Scripted {
        free: 1,
        admit: vec![admitted(&first, until, later)],
        ..Scripted::default()
    };
    assert_eq!(
        queue
            .admit(LineNo::DEFAULT, later, &rules)
            .await
            .expect("admit"),
        Written::Stale
    );
    assert_eq!(queue_rows(&store).await, before, "nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_ending_a_ticket_over_another_last_seen_or_status_is_stale_and_writes_nothing() {
    let (store, queue) = fresh();
    let active = join(&queue, user(), NOW).await.ticket();
    let waiting = join(&queue, user(), NOW).await;
    admit_with(&queue, policy(1), NOW).await;
    let active = stored(&queue, active).await;
    let later = NOW + Duration::minutes(11);
    let before = queue_rows(&store).await;

    // The decision was made on activity older than the stored one (a request recorded it
    // meanwhile, on PostgreSQL): the end is not written, nor anything else of the step.
    let mut over_old_activity = QueueTicket::restore(
        active.ticket(),
        active.user(),
        TicketStatus::Active,
        active.issued_at(),
        active.active_until(),
        Some(NOW - Duration::seconds(1)),
    );
    over_old_activity.end(EndReason::Idle);
    let rules = Scripted {
        ends: vec![over_old_activity],
        free: 1,
        admit: vec![admitted(&waiting, later + Duration::minutes(10), later)],
        ..Scripted::default()
    };
    assert_eq!(
        queue
            .admit(LineNo::DEFAULT, later, &rules)
            .await
            .expect("admit"),
        Written::Stale
    );
    assert_eq!(queue_rows(&store).await, before, "nothing written");

    // Passing over a waiting ticket over a poll it never had: stale too.
    let mut passed = QueueTicket::restore(
        waiting.ticket(),
        waiting.user(),
        TicketStatus::Waiting,
        waiting.issued_at(),
        None,
        Some(NOW),
    );
    passed.end(EndReason::Idle);
    let rules = Scripted {
        free: 1,
        pass_over: vec![passed],
        ..Scripted::default()
    };
    assert_eq!(
        queue
            .admit(LineNo::DEFAULT, later, &rules)
            .await
            .expect("admit"),
        Written::Stale
    );
    assert_eq!(queue_rows(&store).await, before, "nothing written");

    // Over the state as stored, the same end is written.
    let mut ended = active.clone();
    ended.end(EndReason::Idle);
    let rules = Scripted {
        ends: vec![ended],
        ..Scripted::default()
    };
    assert!(matches!(
        queue
            .admit(LineNo::DEFAULT, later, &rules)
            .await
            .expect("admit"),
        Written::Done(AdmissionReport {
            expired: 1,
            idle: 1,
            ..
        })
    ));
    assert_eq!(ticket_status(&store, active.ticket()).await, "EXPIRED");
}

/// Rules that, while the step holds the line (between its reads and its writes), start a join
/// on the same store and check that it has not gone through by the time they decide.
struct JoinMeanwhile {
    queue: SqliteQueueRepository,
    joining: Mutex<Option<tokio::task::JoinHandle<QueueTicket>>>,
    finished_before_the_write: Mutex<Option<bool>>,
}

impl AdmissionRules for JoinMeanwhile {
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue {
        let queue = self.queue.clone();
        *self.joining.lock().expect("lock") =
            Some(tokio::spawn(async move { join(&queue, user(), NOW).await }));
        end_overdue(active, NOW, &policy(1))
    }

    fn waiting_candidates(&self, free: u32) -> u32 {
        free
    }

    fn admit_oldest(&self, waiting: &[QueueTicket], free: u32) -> Admission {
        // Long enough for the join to reach the store.
        std::thread::sleep(StdDuration::from_millis(100));
        let finished = self
            .joining
            .lock()
            .expect("lock")
            .as_ref()
            .map(tokio::task::JoinHandle::is_finished);
        *self.finished_before_the_write.lock().expect("lock") = finished;
        admit_oldest(waiting, free, NOW, &policy(1))
    }

    fn is_paced(&self) -> bool {
        false
    }

    fn paced(&self, free: u32, _last_minute: u32, pace: Pace) -> (u32, Pace) {
        (free, pace)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_joins_while_a_step_holds_the_line() {
    let (store, queue) = fresh();
    let first = join(&queue, user(), NOW).await.ticket();
    let rules = JoinMeanwhile {
        queue: queue.clone(),
        joining: Mutex::new(None),
        finished_before_the_write: Mutex::new(None),
    };
    let report = match queue
        .admit(LineNo::DEFAULT, NOW, &rules)
        .await
        .expect("admit")
    {
        Written::Done(report) => report,
        Written::Stale => panic!("nothing changed under the step"),
    };
    assert_eq!(
        *rules.finished_before_the_write.lock().expect("lock"),
        Some(false),
        "a join went through while the step held the line"
    );
    let joining = rules.joining.lock().expect("lock").take().expect("a join");
    let later = joining.await.expect("the join");
    assert_eq!((report.admitted, report.serving.get()), (1, first.get()));
    assert_eq!(later.ticket().get(), first.get() + 1);
    assert_eq!(ticket_status(&store, later.ticket()).await, "WAITING");
    // The step counted the tickets issued before it; the join's is counted as fresh.
    assert_eq!(
        counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
        (first.get(), 1, 1, 1)
    );
}

// ---- The snapshot's counts, a read model. ----

/// Every ticket of the default line as stored, through the port.
async fn all_tickets(store: &SqliteStore, queue: &SqliteQueueRepository) -> Vec<QueueTicket> {
    let drawn = count(
        store,
        "SELECT coalesce(max(ticket), 0) AS count FROM queue_tickets",
    )
    .await;
    let mut tickets = Vec::new();
    for number in 1..=drawn {
        if let Some(ticket) = queue
            .find(TicketNo::new(number).expect("a ticket number"))
            .await
            .expect("find")
        {
            tickets.push(ticket);
        }
    }
    tickets
}

/// Over random histories of joins (first and returning users), admission steps under the
/// domain's rules, payments ending active tickets, users leaving and activity, the snapshot's
/// counts equal those of the stored tickets read through the domain.
#[tokio::test(flavor = "multi_thread")]
async fn the_snapshots_counts_agree_with_the_stored_tickets_on_random_histories() {
    let (store, queue) = fresh();
    let users: Vec<UserId> = (0..12).map(|_| user()).collect();
    let mut random = Random(0x5eed_2026_1201);
    let mut now = NOW;
    for step in 0..240 {
        let policy = policy(u32::try_from(random.below(4)).unwrap_or(0) + 1);
        let tickets = all_tickets(&store, &queue).await;
        let active: Vec<&QueueTicket> = tickets
            .iter()
            .filter(|t| t.stored_status() == TicketStatus::Active)
            .collect();
        match random.below(11) {
            0..=3 => {
                let who = *random.pick(&users).expect("users");
                let live = queue
                    .load_live(who, LineNo::DEFAULT)
                    .await
                    .expect("load_live");
                if let Join::Draw { ends } = join_line(live.ticket.as_ref(), now, &policy) {
                    if let Some(overdue) = ends {
                        let end = TicketEnd {
                            ticket: overdue.ticket(),
                            read_as: TicketStatus::Active,
                            reason: EndReason::Left,
                        };
                        queue.end(&end, now).await.expect("end");
                    }
                    let write = JoinWrite {
                        line: LineNo::DEFAULT,
                        user: who,
                        version: live.version,
                        now,
                    };
                    assert!(matches!(
                        queue.save_join(&write).await.expect("join"),
                        Written::Done(_)
                    ));
                }
            }
            4..=5 => {
                admit_with(&queue, policy, now).await;
            }
            6 => {
                // A payment ends the payer's active ticket.
                if let Some(paid) = random.pick(&active) {
                    let end = TicketEnd {
                        ticket: paid.ticket(),
                        read_as: TicketStatus::Active,
                        reason: EndReason::Paid,
                    };
                    queue.end(&end, now).await.expect("end");
                }
            }
            8 => {
                // A user leaves, waiting or active.
                let live: Vec<&QueueTicket> = tickets
                    .iter()
                    .filter(|t| t.stored_status() != TicketStatus::Expired)
                    .collect();
                if let Some(leaver) = random.pick(&live) {
                    let end = TicketEnd {
                        ticket: leaver.ticket(),
                        read_as: leaver.stored_status(),
                        reason: EndReason::Left,
                    };
                    queue.end(&end, now).await.expect("end");
                }
            }
            7 => {
                if let Some(used) = random.pick(&active) {
                    let write = ActivityWrite {
                        ticket: used.ticket(),
                        read_last_seen: used.last_seen(),
                        last_seen: now,
                    };
                    queue.record_activity(&write).await.expect("activity");
                }
            }
            _ => now += Duration::seconds(i64::try_from(random.below(90)).unwrap_or(0)),
        }

        let snapshot = queue.snapshot(LineNo::DEFAULT).await.expect("snapshot");
        let tickets = all_tickets(&store, &queue).await;
        let stored = |status| {
            u64::try_from(
                tickets
                    .iter()
                    .filter(|t| t.stored_status() == status)
                    .count(),
            )
            .expect("a count")
        };
        let admitted: Vec<&QueueTicket> = tickets
            .iter()
            .filter(|t| t.active_until().is_some())
            .collect();
        let expected = (
            admitted.iter().map(|t| t.ticket().get()).max().unwrap_or(0),
            u64::try_from(admitted.len()).expect("a count"),
            stored(TicketStatus::Waiting),
            stored(TicketStatus::Active),
        );
        assert_eq!(
            counts(snapshot),
            expected,
            "step {step}: (serving, admitted, waiting, active)"
        );
        assert_eq!(
            snapshot.issued,
            u64::try_from(tickets.len()).expect("a count"),
            "step {step}: issued"
        );
        let ended_waiting: Vec<(i64, Option<EndReason>)> = queue
            .ended_waiting(snapshot.serving)
            .await
            .expect("ended waiting")
            .into_iter()
            .map(|ended| (ended.ticket.get(), ended.reason))
            .collect();
        let expected: Vec<(i64, Option<EndReason>)> = tickets
            .iter()
            .filter(|t| t.stored_status() == TicketStatus::Expired && t.active_until().is_none())
            .filter(|t| t.ticket().get() > snapshot.serving.get())
            .map(|t| (t.ticket().get(), t.end_reason()))
            .collect();
        assert_eq!(ended_waiting, expected, "step {step}: ended while waiting");
    }
}

/// A paced room over steps every 250 ms for two minutes and more, with the line full of waiting
/// tickets and places to spare: the admissions never number more than `admitPerMinute` within
/// any 60 seconds, and they come evenly.
#[tokio::test(flavor = "multi_thread")]
async fn a_paced_room_never_admits_more_than_its_rate_in_any_minute() {
    const PER_MINUTE: i64 = 120;
    let (_store, queue) = fresh();
    for _ in 0..300 {
        join(&queue, user(), NOW).await;
    }
    let room = Room::new(RoomId::default_room(), 1000, RoomState::Open)
        .expect("a room")
        .changed(
            &RoomChange {
                admit_per_minute: Some(Some(PER_MINUTE)),
                ..RoomChange::default()
            },
            NOW,
        )
        .expect("paced");
    let mut admitted_at = Vec::new();
    for step in 0..520 {
        let now = NOW + Duration::milliseconds(250 * step);
        let report = admit_in_room(
            &queue,
            LineNo::DEFAULT,
            policy(1000),
            Some(room.clone()),
            now,
        )
        .await;
        admitted_at.extend(std::iter::repeat_n(
            step * 250,
            usize::try_from(report.admitted).unwrap_or(0),
        ));
        assert!(
            report.admitted <= 3,
            "step {step}: a burst of {}",
            report.admitted
        );
    }
    for (i, start) in admitted_at.iter().enumerate() {
        let in_minute = admitted_at[i..]
            .iter()
            .take_while(|at| **at < start + 60_000)
            .count();
        assert!(
            i64::try_from(in_minute).unwrap_or(i64::MAX) <= PER_MINUTE,
            "{in_minute} from {start} ms"
        );
    }
    let total = i64::try_from(admitted_at.len()).unwrap_or(0);
    assert!(total >= PER_MINUTE * 2, "only {total} in 130 s");
}

// ---- Waiting polls and idle waiters. ----

/// The line's policy for `max_active` places, passing over waiting users away for a minute (a
/// rule on since long before `NOW`).
fn passing_over(max_active: u32) -> QueuePolicy {
    QueuePolicy {
        waiting_idle: Some(WaitingIdle {
            after: Duration::minutes(1),
            since: NOW - Duration::hours(1),
        }),
        ..policy(max_active)
    }
}

fn poll(ticket: TicketNo, at: OffsetDateTime) -> WaitingPoll {
    WaitingPoll { ticket, at }
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_polls_are_written_only_forward_and_only_on_waiting_tickets() {
    let (_store, queue) = fresh();
    let admitted = join(&queue, user(), NOW).await.ticket();
    let waiting = join(&queue, user(), NOW).await.ticket();
    admit_with(&queue, policy(1), NOW).await;
    let later = NOW + Duration::seconds(30);

    let written = queue
        .record_waiting_polls(&[poll(admitted, later), poll(waiting, later)])
        .await
        .expect("polls");
    assert_eq!(written, 1, "only the waiting ticket");
    assert_eq!(stored(&queue, admitted).await.last_seen(), Some(NOW));
    assert_eq!(stored(&queue, waiting).await.last_seen(), Some(later));

    let earlier = NOW + Duration::seconds(10);
    let written = queue
        .record_waiting_polls(&[poll(waiting, earlier)])
        .await
        .expect("polls");
    assert_eq!(written, 0, "a later poll from elsewhere stays");
    assert_eq!(stored(&queue, waiting).await.last_seen(), Some(later));
    assert_eq!(queue.record_waiting_polls(&[]).await.expect("none"), 0);

    // One ticket polled twice in a batch is written once, with its latest poll.
    let latest = NOW + Duration::seconds(50);
    let written = queue
        .record_waiting_polls(&[
            poll(waiting, latest),
            poll(waiting, NOW + Duration::seconds(40)),
        ])
        .await
        .expect("polls");
    assert_eq!(written, 1);
    assert_eq!(stored(&queue, waiting).await.last_seen(), Some(latest));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_passes_over_idle_waiters_counts_them_out_of_the_line_and_admits_the_next() {
    let (store, queue) = fresh();
    let away = join(&queue, user(), NOW).await.ticket();
    let watching = join(&queue, user(), NOW).await.ticket();
    let behind = join(&queue, user(), NOW).await.ticket();
    let at = NOW + Duration::seconds(70);
    queue
        .record_waiting_polls(&[poll(watching, NOW + Duration::seconds(50))])
        .await
        .expect("polls");

    let report = admit_with(&queue, passing_over(1), at).await;

    assert_eq!((report.admitted, report.passed_over), (1, 1));
    assert_eq!(report.serving.get(), watching.get());
    let passed = stored(&queue, away).await;
    assert_eq!(
        (passed.stored_status(), passed.end_reason()),
        (TicketStatus::Expired, Some(EndReason::Idle))
    );
    assert_eq!(ticket_status(&store, watching).await, "ACTIVE");
    assert_eq!(ticket_status(&store, behind).await, "WAITING");
    let snapshot = queue.snapshot(LineNo::DEFAULT).await.expect("snapshot");
    assert_eq!(
        counts(snapshot),
        (watching.get(), 1, 1, 1),
        "(serving, admitted, waiting, active): the passed over no longer waits"
    );
}

// ---- Lines of several rooms. ----

/// The place `n` of `line` (1 is the first).
fn place(line: LineNo, n: i64) -> TicketNo {
    TicketNo::new(line.start().get() + n).expect("a ticket number")
}

/// A snapshot as (serving, admitted, waiting, active, issued, pre-queued).
async fn counts_of(queue: &SqliteQueueRepository, line: LineNo) -> (i64, u64, u64, u64, u64, u64) {
    let snapshot = queue.snapshot(line).await.expect("snapshot");
    (
        snapshot.serving.get(),
        snapshot.admitted_total,
        snapshot.waiting,
        snapshot.active,
        snapshot.issued,
        snapshot.pre_queued,
    )
}

async fn ended_since(queue: &SqliteQueueRepository, line: LineNo) -> Vec<TicketNo> {
    let mut ended: Vec<TicketNo> = queue
        .ended_since(line, NOW)
        .await
        .expect("ended_since")
        .into_iter()
        .map(|ended| ended.ticket)
        .collect();
    ended.sort_unstable();
    ended
}

/// The line of the `gala` room the tests insert.
fn gala() -> LineNo {
    LineNo::new(1).expect("line 1")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_line_admits_ends_and_counts_only_its_own_tickets_and_a_user_may_wait_in_two_rooms() {
    let (store, queue) = fresh();
    insert_room(&store, "default", 0, 500, None).await;
    insert_room(&store, "gala", 1, 50, None).await;
    let (line, default) = (gala(), LineNo::DEFAULT);
    let (both, elsewhere, second, third) = (user(), user(), user(), user());

    let d1 = join_in(&queue, both, default, NOW).await.ticket();
    let d2 = join_in(&queue, elsewhere, default, NOW).await.ticket();
    let g1 = join_in(&queue, both, line, NOW).await.ticket();
    let g2 = join_in(&queue, second, line, NOW).await.ticket();
    let g3 = join_in(&queue, third, line, NOW).await.ticket();
    assert_eq!((d1.get(), d2.get()), (1, 2));
    assert_eq!(
        (g1, g2, g3),
        (place(line, 1), place(line, 2), place(line, 3))
    );
    assert_eq!(g1.get(), (1 << 40) + 1);

    // One live place per user per room: `both` waits in the two rooms at once.
    let in_default = queue.load_live(both, default).await.expect("load");
    let in_gala = queue.load_live(both, line).await.expect("load");
    assert_eq!(
        (in_default.ticket.map(|t| t.ticket()), in_default.version),
        (Some(d1), Version::new(1))
    );
    assert_eq!(
        (in_gala.ticket.map(|t| t.ticket()), in_gala.version),
        (Some(g1), Version::new(1))
    );
    // A second join into the room over the place read before the first draws nothing.
    let again = JoinWrite {
        user: both,
        line,
        version: Version::ABSENT,
        now: NOW,
    };
    assert_eq!(
        queue.save_join(&again).await.expect("save_join"),
        Written::Stale
    );
    assert_eq!(
        queue.load_live(elsewhere, line).await.expect("load").ticket,
        None,
        "a place in one room is none in another"
    );

    // A step of the room admits its own oldest; the default line's tickets stay waiting.
    let report = step(&queue, line, policy(1), NOW).await;
    assert_eq!(
        (report.admitted, report.expired, report.serving.get()),
        (1, 0, g1.get())
    );
    assert_eq!(ticket_status(&store, g1).await, "ACTIVE");
    assert_eq!(ticket_status(&store, d1).await, "WAITING");
    assert_eq!(counts_of(&queue, line).await, (g1.get(), 1, 2, 1, 3, 0));
    assert_eq!(counts_of(&queue, default).await, (0, 0, 2, 0, 2, 0));

    // The default line's step admits its own first, though its user is active in the room.
    let report = step(&queue, default, policy(1), NOW).await;
    assert_eq!((report.admitted, report.serving.get()), (1, 1));
    assert_eq!(ticket_status(&store, d1).await, "ACTIVE");
    assert_eq!(counts_of(&queue, line).await, (g1.get(), 1, 2, 1, 3, 0));

    // Both active tickets are overdue later; each line's step ends only its own.
    let later = NOW + Duration::minutes(11);
    let report = step(&queue, default, policy(1), later).await;
    assert_eq!(
        (report.expired, report.admitted, report.serving.get()),
        (1, 1, 2)
    );
    assert_eq!(
        ticket_status(&store, g1).await,
        "ACTIVE",
        "another line's ticket"
    );
    assert_eq!(ended_since(&queue, default).await, vec![d1]);
    assert_eq!(ended_since(&queue, line).await, Vec::<TicketNo>::new());
    assert_eq!(counts_of(&queue, default).await, (2, 2, 0, 1, 2, 0));
    assert_eq!(counts_of(&queue, line).await, (g1.get(), 1, 2, 1, 3, 0));

    let report = step(&queue, line, policy(1), later).await;
    assert_eq!(
        (report.expired, report.admitted, report.serving.get()),
        (1, 1, g2.get())
    );
    assert_eq!(ended_since(&queue, line).await, vec![g1]);
    assert_eq!(ended_since(&queue, default).await, vec![d1]);
    assert_eq!(ticket_status(&store, g2).await, "ACTIVE");
    assert_eq!(ticket_status(&store, d2).await, "ACTIVE");
    assert_eq!(counts_of(&queue, line).await, (g2.get(), 2, 1, 1, 3, 0));
    assert_eq!(counts_of(&queue, default).await, (2, 2, 0, 1, 2, 0));

    // A user leaving the room's line while waiting is listed above its serving counter only.
    let end = TicketEnd {
        ticket: g3,
        read_as: TicketStatus::Waiting,
        reason: EndReason::Left,
    };
    assert_eq!(
        queue.end(&end, later).await.expect("end"),
        Written::Done(())
    );
    let left = queue
        .ended_waiting(ServingCounter::new(g2.get()))
        .await
        .expect("ended waiting");
    assert_eq!(
        left.iter()
            .map(|e| (e.ticket, e.reason))
            .collect::<Vec<_>>(),
        vec![(g3, Some(EndReason::Left))]
    );
    assert!(
        queue
            .ended_waiting(ServingCounter::new(2))
            .await
            .expect("ended waiting")
            .is_empty(),
        "another line's"
    );
    assert_eq!(counts_of(&queue, line).await, (g2.get(), 2, 0, 1, 3, 0));
}

// ---- Pre-queues and openings. ----

/// The instant a scheduled room opens.
const OPENING: OffsetDateTime = NOW.saturating_add(Duration::hours(1));

/// The `gala` room on line 1, gathering a pre-queue until [`OPENING`].
async fn gathering_room(store: &SqliteStore) -> LineNo {
    insert_room(store, "default", 0, 500, None).await;
    insert_room(store, "gala", 1, 50, Some(OPENING)).await;
    gala()
}

async fn pre_join(
    queue: &SqliteQueueRepository,
    who: UserId,
    line: LineNo,
    now: OffsetDateTime,
) -> PreQueueJoined {
    queue
        .save_pre_queue_join(&PreQueueJoin {
            user: who,
            line,
            now,
        })
        .await
        .expect("save_pre_queue_join")
}

/// A pre-queue join that must add an entry.
async fn entry_for(
    queue: &SqliteQueueRepository,
    who: UserId,
    line: LineNo,
    now: OffsetDateTime,
) -> PreQueueEntry {
    match pre_join(queue, who, line, now).await {
        PreQueueJoined::Done(entry) => entry,
        other => panic!("expected a new entry, got {other:?}"),
    }
}

/// Opening rules that give the places in the reverse of arrival order, and keep what they were
/// shown.
#[derive(Default)]
struct Reversed {
    shown: Mutex<Vec<TicketNo>>,
}

impl Reversed {
    fn shown(&self) -> Vec<TicketNo> {
        self.shown.lock().expect("shown").clone()
    }
}

impl OpeningRules for Reversed {
    fn order(&self, mut arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        *self.shown.lock().expect("shown") = arrivals.iter().map(|e| e.entry).collect();
        arrivals.reverse();
        arrivals
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pre_queue_gets_the_first_places_in_the_order_the_opening_rules_return_once_then_joins_go_to_the_line()
 {
    let (store, queue) = fresh();
    let line = gathering_room(&store).await;
    let (a, b, c, d, e) = (user(), user(), user(), user(), user());

    let mut entries = Vec::new();
    for (i, who) in [a, b, c, d].into_iter().enumerate() {
        let at = NOW + Duration::seconds(i64::try_from(i).expect("small"));
        let entry = entry_for(&queue, who, line, at).await;
        assert_eq!((entry.user, entry.issued_at), (who, at));
        // The number names the line and is never a place in it.
        assert_eq!(entry.entry.line(), line);
        assert!(entry.entry.is_pre_queue_entry());
        entries.push(entry);
    }
    assert!(
        entries.windows(2).all(|w| w[0].entry < w[1].entry),
        "in arrival order"
    );
    assert_eq!(entries[0].entry.get(), line.pre_queue_start() + 1);
    let [ea, eb, ec, ed] = [entries[0], entries[1], entries[2], entries[3]];

    // The same user again: no second entry; the one they hold loads back.
    let before = queue_rows(&store).await;
    assert_eq!(pre_join(&queue, a, line, NOW).await, PreQueueJoined::Stale);
    assert_eq!(queue_rows(&store).await, before, "nothing written");
    assert_eq!(queue.load_pre_queue(a, line).await.expect("load"), Some(ea));
    assert_eq!(
        queue
            .load_pre_queue(a, LineNo::DEFAULT)
            .await
            .expect("load"),
        None
    );
    assert_eq!(
        queue.load_live(a, line).await.expect("load").ticket,
        None,
        "no place yet"
    );
    assert_eq!(
        counts_of(&queue, line).await,
        (line.start().get(), 0, 0, 0, 0, 4)
    );

    // b leaves before the opening; an entry is ended only by its own user.
    let left_at = NOW + Duration::minutes(1);
    assert_eq!(
        queue
            .end_pre_queue(eb.entry, b, EndReason::Left, left_at)
            .await
            .expect("end"),
        PreQueueEnd::Ended
    );
    assert_eq!(
        queue
            .end_pre_queue(eb.entry, b, EndReason::Left, left_at)
            .await
            .expect("end"),
        PreQueueEnd::AlreadyEnded(Some(EndReason::Left))
    );
    assert_eq!(
        queue
            .end_pre_queue(ec.entry, a, EndReason::Left, left_at)
            .await
            .expect("end"),
        PreQueueEnd::Missing
    );
    assert_eq!(queue.load_pre_queue(c, line).await.expect("load"), Some(ec));
    assert_eq!(queue.load_pre_queue(b, line).await.expect("load"), None);
    assert_eq!(counts_of(&queue, line).await.5, 3);
    assert_eq!(
        queue.pre_queue_outcomes(line).await.expect("outcomes"),
        vec![PreQueueOutcome {
            entry: eb.entry,
            place: None,
            ended: Some(EndReason::Left)
        }]
    );

    // The opening: the live entries, in arrival order, get places in the order returned.
    let rules = Reversed::default();
    assert_eq!(
        queue.open_line(line, OPENING, &rules).await.expect("open"),
        Written::Done(3)
    );
    assert_eq!(rules.shown(), vec![ea.entry, ec.entry, ed.entry]);
    for (n, entry) in [(1, ed), (2, ec), (3, ea)] {
        assert_eq!(
            queue.find(place(line, n)).await.expect("find"),
            Some(QueueTicket::restore(
                place(line, n),
                entry.user,
                TicketStatus::Waiting,
                entry.issued_at,
                None,
                Some(OPENING),
            )),
            "place {n}"
        );
    }
    let live = queue.load_live(d, line).await.expect("load");
    assert_eq!(
        (live.ticket.map(|t| t.ticket()), live.version),
        (Some(place(line, 1)), Version::new(1))
    );
    let mut outcomes = queue.pre_queue_outcomes(line).await.expect("outcomes");
    outcomes.sort_by_key(|outcome| outcome.entry);
    assert_eq!(
        outcomes,
        vec![
            PreQueueOutcome {
                entry: ea.entry,
                place: Some(place(line, 3)),
                ended: None
            },
            PreQueueOutcome {
                entry: eb.entry,
                place: None,
                ended: Some(EndReason::Left)
            },
            PreQueueOutcome {
                entry: ec.entry,
                place: Some(place(line, 2)),
                ended: None
            },
            PreQueueOutcome {
                entry: ed.entry,
                place: Some(place(line, 1)),
                ended: None
            },
        ]
    );
    assert!(
        queue
            .pre_queue_outcomes(LineNo::DEFAULT)
            .await
            .expect("outcomes")
            .is_empty()
    );
    assert_eq!(
        queue
            .end_pre_queue(ea.entry, a, EndReason::Left, OPENING)
            .await
            .expect("end"),
        PreQueueEnd::Placed(place(line, 3))
    );
    assert_eq!(
        queue
            .end_pre_queue(eb.entry, b, EndReason::Left, OPENING)
            .await
            .expect("end"),
        PreQueueEnd::AlreadyEnded(Some(EndReason::Left))
    );
    assert_eq!(
        queue
            .end_pre_queue(ed.entry, c, EndReason::Left, OPENING)
            .await
            .expect("end"),
        PreQueueEnd::Missing
    );
    assert_eq!(queue.load_pre_queue(a, line).await.expect("load"), None);
    assert_eq!(
        counts_of(&queue, line).await,
        (line.start().get(), 0, 3, 0, 3, 0)
    );
    // The room is marked opened, once, with its version moved.
    assert_eq!(
        count(
            &store,
            "SELECT opened * 10 + version AS count FROM rooms WHERE room_id = 'gala'"
        )
        .await,
        12
    );

    // Once: a second opening is stale, asks the rules nothing and writes nothing.
    let before = queue_rows(&store).await;
    let again = Reversed::default();
    assert_eq!(
        queue.open_line(line, OPENING, &again).await.expect("open"),
        Written::Stale
    );
    assert_eq!(again.shown(), Vec::<TicketNo>::new());
    assert_eq!(queue_rows(&store).await, before, "nothing written");

    // Later joins go to the line, after every placed one, and the placed come first.
    for who in [e, b, a] {
        assert_eq!(
            pre_join(&queue, who, line, OPENING).await,
            PreQueueJoined::Opened
        );
    }
    assert_eq!(
        count(&store, "SELECT count(*) AS count FROM pre_queue").await,
        4,
        "no entry after the opening"
    );
    assert_eq!(
        join_in(&queue, e, line, OPENING).await.ticket(),
        place(line, 4)
    );
    let report = step(&queue, line, policy(1), OPENING).await;
    assert_eq!(
        (report.admitted, report.serving.get()),
        (1, place(line, 1).get())
    );
    assert_eq!(ticket_status(&store, place(line, 1)).await, "ACTIVE");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pre_queue_join_on_a_line_with_no_room_is_sent_to_the_line_and_writes_nothing() {
    let (store, queue) = fresh();
    let before = queue_rows(&store).await;
    assert_eq!(
        pre_join(&queue, user(), gala(), NOW).await,
        PreQueueJoined::Opened
    );
    assert_eq!(queue_rows(&store).await, before, "nothing written");
    assert_eq!(
        queue
            .open_line(gala(), NOW, &Reversed::default())
            .await
            .expect("open"),
        Written::Stale,
        "no room to open"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_opening_with_an_empty_pre_queue_places_nobody_and_the_line_numbers_from_its_start() {
    let (store, queue) = fresh();
    let line = gathering_room(&store).await;

    assert_eq!(
        queue
            .open_line(line, OPENING, &Reversed::default())
            .await
            .expect("open"),
        Written::Done(0)
    );
    assert_eq!(
        pre_join(&queue, user(), line, OPENING).await,
        PreQueueJoined::Opened
    );
    assert_eq!(
        join_in(&queue, user(), line, OPENING).await.ticket(),
        place(line, 1)
    );
    assert_eq!(
        queue
            .open_line(line, OPENING, &Reversed::default())
            .await
            .expect("open"),
        Written::Stale
    );
    assert_eq!(
        join_in(&queue, user(), line, OPENING).await.ticket(),
        place(line, 2)
    );
}

/// Opening rules that place an entry that is no longer live (its user left before; a decision
/// on entries not as stored): the opening is stale and writes nothing, the room included.
struct WithAnEndedEntry(PreQueueEntry);

impl OpeningRules for WithAnEndedEntry {
    fn order(&self, mut arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        arrivals.push(self.0);
        arrivals
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_opening_placing_an_entry_not_live_is_stale_and_writes_nothing() {
    let (store, queue) = fresh();
    let line = gathering_room(&store).await;
    let stays = entry_for(&queue, user(), line, NOW).await;
    let leaver = user();
    let gone = entry_for(&queue, leaver, line, NOW).await;
    assert_eq!(
        queue
            .end_pre_queue(gone.entry, leaver, EndReason::Left, NOW)
            .await
            .expect("end"),
        PreQueueEnd::Ended
    );
    let before = queue_rows(&store).await;
    assert_eq!(
        queue
            .open_line(line, OPENING, &WithAnEndedEntry(gone))
            .await
            .expect("open"),
        Written::Stale
    );
    assert_eq!(queue_rows(&store).await, before, "nothing written");

    // The next opening decides again.
    assert_eq!(
        queue
            .open_line(line, OPENING, &Reversed::default())
            .await
            .expect("open"),
        Written::Done(1)
    );
    assert_eq!(
        queue
            .load_live(stays.user, line)
            .await
            .expect("load")
            .ticket
            .map(|t| t.ticket()),
        Some(place(line, 1))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn of_ten_openings_of_one_room_at_once_exactly_one_places_the_pre_queue() {
    const OPENINGS: usize = 10;
    const WAITING: i64 = 20;
    let (store, queue) = fresh();
    let line = gathering_room(&store).await;
    for _ in 0..WAITING {
        entry_for(&queue, user(), line, NOW).await;
    }

    let results = race(OPENINGS, |_| {
        let queue = queue.clone();
        async move {
            queue
                .open_line(line, OPENING, &Reversed::default())
                .await
                .expect("open")
        }
    })
    .await;

    assert_eq!(
        results
            .iter()
            .filter(|r| **r == Written::Done(u64::try_from(WAITING).expect("small")))
            .count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|r| **r == Written::Stale).count(),
        OPENINGS - 1
    );
    // One set of places: the line's first, each once.
    let start = line.start().get();
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT count(DISTINCT ticket) AS count FROM queue_tickets \
                 WHERE ticket > {start} AND ticket <= {start} + {WAITING}"
            )
        )
        .await,
        WAITING
    );
    assert_eq!(
        count(&store, "SELECT count(*) AS count FROM queue_tickets").await,
        WAITING
    );
    assert_eq!(counts_of(&queue, line).await, (start, 0, 20, 0, 20, 0));
    assert_eq!(
        join_in(&queue, user(), line, OPENING).await.ticket(),
        place(line, WAITING + 1)
    );
}

/// Opening rules that, while the opening holds the line, start ending one entry (its user
/// leaving); the leave is kept to be awaited after the opening.
struct LeavingMeanwhile {
    queue: SqliteQueueRepository,
    entry: PreQueueEntry,
    leave: Mutex<Option<tokio::task::JoinHandle<PreQueueEnd>>>,
}

impl OpeningRules for LeavingMeanwhile {
    fn order(&self, arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        let (queue, entry) = (self.queue.clone(), self.entry);
        let leave = tokio::spawn(async move {
            queue
                .end_pre_queue(entry.entry, entry.user, EndReason::Left, OPENING)
                .await
                .expect("end")
        });
        *self.leave.lock().expect("lock") = Some(leave);
        // Long enough for the leave to reach the store.
        std::thread::sleep(StdDuration::from_millis(100));
        arrivals
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_ending_while_the_opening_orders_the_pre_queue_waits_and_finds_its_place() {
    let (store, queue) = fresh();
    let line = gathering_room(&store).await;
    let (stays, leaves) = (user(), user());
    let kept = entry_for(&queue, stays, line, NOW).await;
    let gone = entry_for(&queue, leaves, line, NOW).await;

    let rules = LeavingMeanwhile {
        queue: queue.clone(),
        entry: gone,
        leave: Mutex::new(None),
    };
    // The opening is not held up nor undone by the leave: both entries are placed.
    assert_eq!(
        queue.open_line(line, OPENING, &rules).await.expect("open"),
        Written::Done(2)
    );
    let leave = rules.leave.lock().expect("lock").take().expect("a leave");
    // The leave waited for the opening: it ended nothing and learns the place to end instead.
    assert_eq!(
        leave.await.expect("the leave"),
        PreQueueEnd::Placed(place(line, 2)),
        "places in entry order (the rules kept arrival order)"
    );
    assert_eq!(
        queue
            .end_pre_queue(kept.entry, stays, EndReason::Left, OPENING)
            .await
            .expect("end"),
        PreQueueEnd::Placed(place(line, 1))
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) AS count FROM queue_tickets WHERE status = 'WAITING'"
        )
        .await,
        2
    );
}

/// How far the opening of the race below got.
const STARTED: u8 = 1;
/// The opening holds the line: it marked the room opened and read the entries.
const ORDERING: u8 = 2;

/// Opening rules that order the entries by user id (not their arrival order) and keep the order
/// returned; they announce that the opening holds the line, then hold it a moment, so that joins
/// arrive while it does.
struct ByUser {
    hold: StdDuration,
    stage: Arc<watch::Sender<u8>>,
    returned: Mutex<Vec<TicketNo>>,
}

impl OpeningRules for ByUser {
    fn order(&self, mut arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        self.stage.send_replace(ORDERING);
        tokio::task::block_in_place(|| std::thread::sleep(self.hold));
        arrivals.sort_by_key(|entry| entry.user.get());
        *self.returned.lock().expect("returned") = arrivals.iter().map(|e| e.entry).collect();
        arrivals
    }
}

/// What one task of the race below ended with.
#[derive(Debug)]
enum Outcome {
    /// A pre-queue entry.
    Entry(PreQueueEntry),
    /// Turned away by the opening, then a place drawn in the line.
    Drawn(QueueTicket),
    /// The opening, with how many it placed.
    Opening(u64),
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_queue_joins_racing_the_opening_each_get_a_place_or_a_number_after_every_placed_one() {
    const USERS: usize = 200;
    let (store, queue) = fresh();
    let line = gathering_room(&store).await;
    let (stage, stage_rx) = watch::channel(0u8);
    let stage = Arc::new(stage);
    let rules = Arc::new(ByUser {
        hold: StdDuration::from_millis(20),
        stage: Arc::clone(&stage),
        returned: Mutex::new(Vec::new()),
    });
    let users: Vec<UserId> = (0..USERS).map(|_| user()).collect();
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Half the users join before the opening starts; a quarter are released as it starts (they
    // race its marking of the room); the last quarter while it holds the line (they must be
    // turned away: the opening has read the entries it places).
    let outcomes = race(USERS + 1, |i| {
        let finished = Arc::clone(&finished);
        let stage = Arc::clone(&stage);
        let mut stage_rx = stage_rx.clone();
        let rules = Arc::clone(&rules);
        let queue = queue.clone();
        let who = users.get(i).copied();
        async move {
            let Some(who) = who else {
                while finished.load(std::sync::atomic::Ordering::SeqCst) < USERS / 2 {
                    tokio::time::sleep(StdDuration::from_millis(1)).await;
                }
                stage.send_replace(STARTED);
                return match queue.open_line(line, OPENING, &*rules).await.expect("open") {
                    Written::Done(placed) => Outcome::Opening(placed),
                    Written::Stale => panic!("the only opening was stale"),
                };
            };
            let released_at = match i {
                i if i < USERS / 2 => 0,
                i if i < USERS * 3 / 4 => STARTED,
                _ => ORDERING,
            };
            stage_rx
                .wait_for(|stage| *stage >= released_at)
                .await
                .expect("the opener keeps the stage");
            let outcome = match pre_join(&queue, who, line, NOW).await {
                PreQueueJoined::Done(entry) => Outcome::Entry(entry),
                PreQueueJoined::Opened => Outcome::Drawn(join_in(&queue, who, line, OPENING).await),
                PreQueueJoined::Stale => panic!("each user joins once"),
            };
            finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            outcome
        }
    })
    .await;

    let mut placed = None;
    let mut entries = Vec::new();
    let mut drawn = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Opening(n) => placed = Some(n),
            Outcome::Entry(entry) => entries.push(entry),
            Outcome::Drawn(ticket) => drawn.push(ticket),
        }
    }
    let placed = placed.expect("the opening ran");
    let entry_count = i64::try_from(entries.len()).expect("small");
    let (all, all_u64) = (
        i64::try_from(USERS).expect("small"),
        u64::try_from(USERS).expect("small"),
    );
    assert_eq!(entries.len() + drawn.len(), USERS);
    assert!(entries.len() >= USERS / 2, "the first half joined before");
    // Every entry a join was given is placed: none was added behind the opening's back.
    assert_eq!(placed, u64::try_from(entries.len()).expect("small"));
    assert_eq!(
        count(
            &store,
            "SELECT count(*) AS count FROM pre_queue WHERE ticket IS NULL AND ended_at IS NULL"
        )
        .await,
        0,
        "no entry left without a place"
    );
    assert!(
        drawn.len() >= USERS / 4,
        "the last quarter came while it held the line"
    );
    assert_eq!(
        count(&store, "SELECT count(*) AS count FROM pre_queue").await,
        entry_count
    );

    // The places are the line's first, in exactly the order the rules returned.
    let returned = rules.returned.lock().expect("returned").clone();
    let mut given: Vec<TicketNo> = entries.iter().map(|e| e.entry).collect();
    given.sort_unstable();
    let mut shown = returned.clone();
    shown.sort_unstable();
    assert_eq!(shown, given, "the rules were shown every entry given");
    let places: HashMap<TicketNo, Option<TicketNo>> = queue
        .pre_queue_outcomes(line)
        .await
        .expect("outcomes")
        .into_iter()
        .map(|outcome| (outcome.entry, outcome.place))
        .collect();
    assert_eq!(places.len(), entries.len());
    for (n, entry) in returned.iter().enumerate() {
        let n = i64::try_from(n).expect("small") + 1;
        assert_eq!(
            places.get(entry),
            Some(&Some(place(line, n))),
            "entry {entry}"
        );
    }
    for entry in &entries {
        let live = queue.load_live(entry.user, line).await.expect("load");
        assert_eq!(
            live.ticket.map(|t| (t.ticket(), t.user())),
            Some((places[&entry.entry].expect("placed"), entry.user))
        );
    }

    // The users turned away drew the numbers right after the placed ones, without a gap.
    let mut numbers: Vec<i64> = drawn.iter().map(|t| t.ticket().get()).collect();
    numbers.sort_unstable();
    let start = line.start().get();
    assert_eq!(
        numbers,
        ((start + entry_count + 1)..=(start + all)).collect::<Vec<_>>()
    );
    let holders: HashSet<UserId> = entries
        .iter()
        .map(|e| e.user)
        .chain(drawn.iter().map(QueueTicket::user))
        .collect();
    assert_eq!(holders.len(), USERS, "one place per user");
    assert_eq!(
        count(&store, "SELECT count(*) AS count FROM queue_tickets").await,
        all
    );
    assert_eq!(
        counts_of(&queue, line).await,
        (start, 0, all_u64, 0, all_u64, 0)
    );
}
