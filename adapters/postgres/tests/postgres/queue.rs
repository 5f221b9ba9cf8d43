//! `PgQueueRepository`'s contract, calling the port directly: loads carry the version of the
//! user's place, a join over the version read draws the next number and one over an older version
//! is `Stale` and draws none, ends and activity write only over the state read, and an admission
//! step writes exactly what its `AdmissionRules` decided, in one transaction, or nothing at all
//! (`Stale`) when a ticket changed between its reads and its writes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use concert_application::ports::{
    ActivityWrite, AdmissionReport, AdmissionRules, JoinWrite, QueueRepository, QueueSnapshot,
    TicketEnd, Version, WaitingPoll, Written,
};
use concert_domain::queue::{Join, ServingCounter, admit_oldest, end_overdue, join as join_line};
use concert_domain::{
    Admission, EndReason, LineNo, Overdue, Pace, QueuePolicy, QueueTicket, Room, RoomChange,
    RoomId, RoomState, TicketNo, TicketStatus, UserId, WaitingIdle,
};
use concert_postgres::{PgPool, PgQueueRepository};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use time::{Duration, OffsetDateTime};

use crate::support::{Ctx, NOW, NOW_SQL, Random, count_on, ticket_status, user};

pub(crate) fn policy(max_active: u32) -> QueuePolicy {
    QueuePolicy {
        max_active,
        active_ttl: Duration::minutes(10),
        idle_timeout: Duration::minutes(2),
        waiting_idle: None,
    }
}

/// The sequence's state (`last_value * 2 + is_called`): reading it draws nothing, and any number
/// drawn changes it.
const SEQUENCE_SQL: &str = "SELECT last_value * 2 + is_called::int AS count FROM queue_line_0_seq";

fn member_version_sql(who: UserId) -> String {
    format!("SELECT coalesce(max(version), 0) AS count FROM queue_members WHERE user_id = '{who}'")
}

/// Every row the line is made of (tickets, members, counters) as text: two equal dumps mean that
/// nothing was written in between.
pub(crate) async fn queue_rows(pool: &PgPool) -> String {
    #[derive(QueryableByName)]
    struct Dump {
        #[diesel(sql_type = Text)]
        dump: String,
    }
    let mut conn = pool.get().await.expect("a pooled connection");
    diesel::sql_query(
        "SELECT (SELECT coalesce(string_agg(t::text, ';' ORDER BY t.ticket), '') \
                 FROM queue_tickets t) \
             || '|' || (SELECT coalesce(string_agg(m::text, ';' ORDER BY m::text), '') \
                 FROM queue_members m) \
             || '|' || (SELECT s::text FROM queue_state s) AS dump",
    )
    .get_result::<Dump>(&mut conn)
    .await
    .expect("dump")
    .dump
}

async fn stored(queue: &PgQueueRepository, ticket: TicketNo) -> QueueTicket {
    queue.find(ticket).await.expect("find").expect("ticket")
}

/// A join through the port: load, then draw over the version read; panics unless it is drawn.
async fn join(queue: &PgQueueRepository, who: UserId, now: OffsetDateTime) -> QueueTicket {
    let live = queue
        .load_live(who, LineNo::DEFAULT)
        .await
        .expect("load_live");
    let write = JoinWrite {
        line: LineNo::DEFAULT,
        user: who,
        version: live.version,
        now,
    };
    match queue.save_join(&write).await.expect("save_join") {
        Written::Done(ticket) => ticket,
        Written::Stale => panic!("the join over the version just read was stale"),
    }
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

/// Test rules: end every active ticket or none, leave `free` places, admit exactly `admit`.
#[derive(Default)]
struct Scripted {
    end_all: bool,
    free: u32,
    admit: Vec<QueueTicket>,
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
            Vec::new()
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
            passed_over: Vec::new(),
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
struct DomainRules {
    policy: QueuePolicy,
    now: OffsetDateTime,
    room: Option<Room>,
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

async fn admit_with(
    queue: &PgQueueRepository,
    policy: QueuePolicy,
    now: OffsetDateTime,
) -> AdmissionReport {
    admit_in_room(queue, policy, None, now).await
}

async fn admit_in_room(
    queue: &PgQueueRepository,
    policy: QueuePolicy,
    room: Option<Room>,
    now: OffsetDateTime,
) -> AdmissionReport {
    match queue
        .admit(LineNo::DEFAULT, now, &DomainRules { policy, now, room })
        .await
        .expect("admit")
    {
        Written::Done(report) => report,
        Written::Stale => panic!("nothing changed under this step"),
    }
}

type Action = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    EndOverdue,
    AdmitOldest,
}

/// Rules that, while the step holds the line (between its reads and its writes), run `action`
/// to completion on another connection, as a request or a payment on another instance may.
struct Meanwhile<R> {
    rules: R,
    during: Phase,
    action: Action,
}

impl<R> Meanwhile<R> {
    fn run(&self, phase: Phase) {
        if phase == self.during {
            let work = (self.action)();
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(work));
        }
    }
}

impl<R: AdmissionRules> AdmissionRules for Meanwhile<R> {
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue {
        self.run(Phase::EndOverdue);
        self.rules.end_overdue(active)
    }

    fn waiting_candidates(&self, free: u32) -> u32 {
        self.rules.waiting_candidates(free)
    }

    fn admit_oldest(&self, waiting: &[QueueTicket], free: u32) -> Admission {
        self.run(Phase::AdmitOldest);
        self.rules.admit_oldest(waiting, free)
    }

    fn is_paced(&self) -> bool {
        self.rules.is_paced()
    }

    fn paced(&self, free: u32, last_minute: u32, pace: Pace) -> (u32, Pace) {
        self.rules.paced(free, last_minute, pace)
    }
}

// ---- Joins. ----

#[tokio::test(flavor = "multi_thread")]
async fn load_live_returns_the_live_ticket_and_the_version_of_the_users_place() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
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
    let mut rules = Scripted {
        free: 1,
        ..Scripted::default()
    };
    rules.admit = vec![admitted(&first, NOW + Duration::minutes(10), NOW)];
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
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_over_the_version_read_draws_the_next_number_and_moves_the_place() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let someone = user();

    let first = join(&queue, someone, NOW).await;
    assert_eq!(first.user(), someone);
    assert_eq!(first.stored_status(), TicketStatus::Waiting);
    assert_eq!(first.issued_at(), NOW);
    assert_eq!((first.active_until(), first.last_seen()), (None, None));
    assert_eq!(stored(&queue, first.ticket()).await, first);
    assert_eq!(ctx.count(&member_version_sql(someone)).await, 1);

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
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_over_an_old_version_is_stale_draws_no_number_and_writes_nothing() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
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
        let before = queue_rows(&ctx.pool).await;
        let sequence = ctx.count(SEQUENCE_SQL).await;
        assert_eq!(
            queue.save_join(write).await.expect("join"),
            Written::Stale,
            "{why}"
        );
        assert_eq!(
            queue_rows(&ctx.pool).await,
            before,
            "{why}: nothing written"
        );
        assert_eq!(
            ctx.count(SEQUENCE_SQL).await,
            sequence,
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
        ctx.count("SELECT count(*) AS count FROM queue_tickets")
            .await,
        3
    );
    assert_eq!(ctx.count(&member_version_sql(someone)).await, 2);
    ctx.finish().await;
}

// ---- Ends and activity. ----

#[tokio::test(flavor = "multi_thread")]
async fn end_only_ends_a_ticket_still_in_the_status_read() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let waiting = join(&queue, user(), NOW).await.ticket();
    let active = join(&queue, user(), NOW).await.ticket();
    let mut rules = Scripted {
        free: 1,
        ..Scripted::default()
    };
    rules.admit = vec![admitted(
        &stored(&queue, active).await,
        NOW + Duration::minutes(10),
        NOW,
    )];
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
        let before = queue_rows(&ctx.pool).await;
        let end = TicketEnd {
            ticket,
            read_as,
            reason: EndReason::Left,
        };
        assert_eq!(queue.end(&end, later).await.expect("end"), Written::Stale);
        assert_eq!(queue_rows(&ctx.pool).await, before, "nothing written");
    }

    for (ticket, read_as) in [
        (waiting, TicketStatus::Waiting),
        (active, TicketStatus::Active),
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
        assert_eq!(ticket_status(&ctx, ticket).await, "EXPIRED");
        assert_eq!(
            ctx.count(&format!(
                "SELECT count(*) AS count FROM queue_tickets \
                 WHERE ticket = {} AND ended_at = '2030-06-01T12:01:00Z'",
                ticket.get()
            ))
            .await,
            1
        );
        // Ended once: ending it again over the status read is stale.
        let before = queue_rows(&ctx.pool).await;
        assert_eq!(queue.end(&end, later).await.expect("end"), Written::Stale);
        assert_eq!(queue_rows(&ctx.pool).await, before);
    }
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn activity_is_written_only_over_the_last_seen_read_and_only_on_an_active_ticket() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let busy = join(&queue, user(), NOW).await;
    let waiting = join(&queue, user(), NOW).await.ticket();
    let mut rules = Scripted {
        free: 1,
        ..Scripted::default()
    };
    rules.admit = vec![admitted(&busy, NOW + Duration::minutes(10), NOW)];
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
        let before = queue_rows(&ctx.pool).await;
        assert_eq!(
            queue.record_activity(&write).await.expect("activity"),
            Written::Stale
        );
        assert_eq!(queue_rows(&ctx.pool).await, before, "nothing written");
    }

    // An ended ticket records nothing, even over the last_seen it still has.
    let end = TicketEnd {
        ticket: busy,
        read_as: TicketStatus::Active,
        reason: EndReason::Left,
    };
    assert_eq!(queue.end(&end, NOW).await.expect("end"), Written::Done(()));
    let before = queue_rows(&ctx.pool).await;
    assert_eq!(
        queue
            .record_activity(&activity(busy, Some(NOW + Duration::minutes(1)), 3))
            .await
            .expect("activity"),
        Written::Stale
    );
    assert_eq!(queue_rows(&ctx.pool).await, before, "nothing written");
    ctx.finish().await;
}

// ---- Admission. ----

#[tokio::test(flavor = "multi_thread")]
async fn an_admission_step_writes_exactly_what_its_rules_decided_and_moves_serving_forward_only() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
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
            ctx.count(&format!(
                "SELECT count(*) AS count FROM queue_tickets \
                 WHERE ticket = {} AND admitted_at = {NOW_SQL} AND ended_at IS NULL",
                ticket.ticket().get()
            ))
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
        assert_eq!(ticket_status(&ctx, no(i)).await, "EXPIRED");
        assert_eq!(
            ctx.count(&format!(
                "SELECT count(*) AS count FROM queue_tickets \
                 WHERE ticket = {} AND ended_at = '2030-06-01T12:01:00Z'",
                no(i).get()
            ))
            .await,
            1
        );
    }
    assert_eq!(ticket_status(&ctx, no(2)).await, "WAITING");
    assert_eq!(ticket_status(&ctx, no(3)).await, "ACTIVE");
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
        ctx.count("SELECT count(*) AS count FROM queue_tickets WHERE status = 'WAITING'")
            .await,
        2
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_domains_rules_end_tickets_at_their_active_or_idle_deadline_and_fill_the_places() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
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
    assert_eq!((report.expired, report.admitted), (1, 1));
    assert_eq!(report.serving.get(), waiting.get());
    assert_eq!(ticket_status(&ctx, idle).await, "EXPIRED");
    assert_eq!(
        stored(&queue, idle).await.end_reason(),
        Some(EndReason::Idle)
    );
    assert_eq!(ticket_status(&ctx, waiting).await, "ACTIVE");

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
    assert_eq!(report.expired, 1);
    assert_eq!(ticket_status(&ctx, busy).await, "EXPIRED");
    assert_eq!(
        stored(&queue, busy).await.end_reason(),
        Some(EndReason::ActiveTimeOver)
    );
    assert_eq!(
        counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
        (waiting.get(), 3, 0, 1)
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admission_over_a_ticket_no_longer_waiting_is_stale_and_writes_nothing() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
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
    let before = queue_rows(&ctx.pool).await;
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
    assert_eq!(queue_rows(&ctx.pool).await, before, "nothing written");
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
    assert_eq!(queue_rows(&ctx.pool).await, before, "nothing written");
    ctx.finish().await;
}

/// Runs an admission step whose `during` phase does `action` on another connection; the step
/// must be `Stale` and leave exactly the rows as `action` left them.
async fn stale_when_meanwhile<R>(
    ctx: &Ctx,
    now: OffsetDateTime,
    rules: R,
    during: Phase,
    action: Action,
) where
    R: AdmissionRules + 'static,
{
    let queue = ctx.queue();
    let after_action = Arc::new(Mutex::new(None::<String>));
    let record = Arc::clone(&after_action);
    let pool = ctx.pool.clone();
    let rules = Meanwhile {
        rules,
        during,
        action: Box::new(move || {
            let work = action();
            let (record, pool) = (Arc::clone(&record), pool.clone());
            Box::pin(async move {
                work.await;
                *record.lock().expect("dump") = Some(queue_rows(&pool).await);
            })
        }),
    };
    // On a worker thread, as a request handler would run it.
    let step = tokio::spawn(async move {
        queue
            .admit(LineNo::DEFAULT, now, &rules)
            .await
            .expect("admit")
    });
    assert_eq!(step.await.expect("step"), Written::Stale);
    let expected = after_action
        .lock()
        .expect("dump")
        .clone()
        .expect("the action ran while the step held the line");
    assert_eq!(
        queue_rows(&ctx.pool).await,
        expected,
        "the stale step wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admission_step_is_stale_when_activity_was_recorded_between_its_read_and_its_write() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let idle = join(&queue, user(), NOW).await.ticket();
    let next = join(&queue, user(), NOW).await.ticket();
    admit_with(&queue, policy(1), NOW).await;
    let later = NOW + policy(1).idle_deadline_after_activity();

    // A request recorded just before the deadline, on another instance, while the step decides
    // on the idle ticket it read.
    let other = ctx.queue();
    let action: Action = Box::new(move || {
        let other = other.clone();
        Box::pin(async move {
            let write = ActivityWrite {
                ticket: idle,
                read_last_seen: Some(NOW),
                last_seen: later - Duration::seconds(1),
            };
            assert_eq!(
                other.record_activity(&write).await.expect("activity"),
                Written::Done(())
            );
        })
    });
    let rules = DomainRules {
        policy: policy(1),
        now: later,
        room: None,
    };
    stale_when_meanwhile(&ctx, later, rules, Phase::EndOverdue, action).await;
    assert_eq!(ticket_status(&ctx, idle).await, "ACTIVE", "kept alive");
    assert_eq!(ticket_status(&ctx, next).await, "WAITING");

    // The next step decides on the new activity: the ticket is not idle.
    let report = admit_with(&queue, policy(1), later).await;
    assert_eq!((report.expired, report.admitted), (0, 0));
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admission_step_is_stale_when_a_ticket_ended_between_its_read_and_its_write() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let paid = join(&queue, user(), NOW).await.ticket();
    let next = join(&queue, user(), NOW).await;
    let after = join(&queue, user(), NOW).await.ticket();
    admit_with(&queue, policy(1), NOW).await;
    let later = NOW + Duration::minutes(11);

    // The active ticket ends with a payment while the step decides to end it as overdue.
    let other = ctx.queue();
    let action: Action = Box::new(move || {
        let other = other.clone();
        Box::pin(async move {
            let end = TicketEnd {
                ticket: paid,
                read_as: TicketStatus::Active,
                reason: EndReason::Left,
            };
            assert_eq!(
                other.end(&end, later).await.expect("end"),
                Written::Done(())
            );
        })
    });
    let rules = DomainRules {
        policy: policy(1),
        now: later,
        room: None,
    };
    stale_when_meanwhile(&ctx, later, rules, Phase::EndOverdue, action).await;
    assert_eq!(ticket_status(&ctx, next.ticket()).await, "WAITING");

    // The next step admits `next`. Then a step that ends it (rules that end everything) and
    // admits `after`, which ends while the step decides: the admission is stale, and the end
    // decided in the same step is undone with it.
    let report = admit_with(&queue, policy(1), NOW).await;
    assert_eq!((report.expired, report.admitted), (0, 1));
    let waiting = stored(&queue, after).await;
    let other = ctx.queue();
    let action: Action = Box::new(move || {
        let other = other.clone();
        Box::pin(async move {
            let end = TicketEnd {
                ticket: after,
                read_as: TicketStatus::Waiting,
                reason: EndReason::Left,
            };
            assert_eq!(
                other.end(&end, later).await.expect("end"),
                Written::Done(())
            );
        })
    });
    let rules = Scripted {
        end_all: true,
        free: 1,
        admit: vec![admitted(&waiting, later + Duration::minutes(10), later)],
        ..Scripted::default()
    };
    stale_when_meanwhile(&ctx, later, rules, Phase::AdmitOldest, action).await;
    assert_eq!(
        ticket_status(&ctx, next.ticket()).await,
        "ACTIVE",
        "its end undone"
    );
    let snapshot = queue.snapshot(LineNo::DEFAULT).await.expect("snapshot");
    assert_eq!(
        (
            snapshot.serving.get(),
            snapshot.admitted_total,
            snapshot.active
        ),
        (next.ticket().get(), 2, 1)
    );
    ctx.finish().await;
}

/// Polls `sql` (a count) until it is at least 1 or `done` holds; `true` when the count was seen.
async fn until_seen(pool: &PgPool, sql: &str, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        if count_on(pool, sql).await >= 1 {
            return true;
        }
        if done() || Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

/// Sessions of this database waiting on a lock of the given kind.
fn waiting_on(kind: &str) -> String {
    format!(
        "SELECT count(*) AS count FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = '{kind}'"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admission_step_waits_for_a_drawn_number_to_commit_and_never_passes_it() {
    let ctx = Ctx::with_connections(6).await;
    let queue = ctx.queue();
    let slow = user();

    // Another transaction holds a live ticket of `slow` (a number far from the sequence's), so
    // `slow`'s join blocks on the one-live-ticket index after drawing its number.
    let mut blocker = ctx.db.connect().await.expect("connect");
    diesel::sql_query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    diesel::sql_query(format!(
        "INSERT INTO queue_tickets (ticket, user_id, status, issued_at) \
         VALUES (1000000, '{slow}', 'WAITING', {NOW_SQL})"
    ))
    .execute(&mut blocker)
    .await
    .expect("blocking row");
    let joining = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let write = JoinWrite {
                line: LineNo::DEFAULT,
                user: slow,
                version: Version::ABSENT,
                now: NOW,
            };
            queue.save_join(&write).await.expect("join")
        })
    };
    assert!(
        until_seen(&ctx.pool, &waiting_on("transactionid"), || joining
            .is_finished())
        .await,
        "the join did not block"
    );

    // A later user's join goes through meanwhile (joins share the lock) with the next number.
    let later = join(&queue, user(), NOW).await;

    // The step must wait for `slow`'s number: admitting `later` now would pass it.
    let step = {
        let queue = queue.clone();
        tokio::spawn(async move { admit_with(&queue, policy(1), NOW).await })
    };
    let waited = until_seen(&ctx.pool, &waiting_on("advisory"), || step.is_finished()).await;
    diesel::sql_query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("rollback");
    let drawn = match joining.await.expect("join task") {
        Written::Done(ticket) => ticket,
        Written::Stale => panic!("the join was stale"),
    };
    let report = step.await.expect("step");
    assert_eq!(later.ticket().get(), drawn.ticket().get() + 1);
    assert_eq!(
        (
            ticket_status(&ctx, drawn.ticket()).await,
            ticket_status(&ctx, later.ticket()).await
        ),
        ("ACTIVE".to_owned(), "WAITING".to_owned()),
        "the step admitted a ticket past one drawn before it"
    );
    assert!(waited, "the step ran while a drawn number was uncommitted");
    assert_eq!(
        (report.admitted, report.serving.get()),
        (1, drawn.ticket().get())
    );
    ctx.finish().await;
}

// ---- The snapshot's counts, a read model. ----

/// Every ticket as stored, through the port.
async fn all_tickets(ctx: &Ctx, queue: &PgQueueRepository) -> Vec<QueueTicket> {
    let drawn = ctx
        .count("SELECT coalesce(max(ticket), 0) AS count FROM queue_tickets")
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

/// The snapshot keeps its counts in `queue_state` and counts only the tickets issued since the
/// last step, so it is a read model: over random histories of joins (first and returning users),
/// admission steps under the domain's rules, payments ending active tickets and activity, its
/// counts equal those of the stored tickets read through the domain.
#[tokio::test(flavor = "multi_thread")]
async fn the_snapshots_counts_agree_with_the_stored_tickets_on_random_histories() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let users: Vec<UserId> = (0..12).map(|_| user()).collect();
    let mut random = Random(0x5eed_2026_1201);
    let mut now = NOW;
    for step in 0..240 {
        let policy = policy(u32::try_from(random.below(4)).unwrap_or(0) + 1);
        let tickets = all_tickets(&ctx, &queue).await;
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
        let tickets = all_tickets(&ctx, &queue).await;
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
    ctx.finish().await;
}

/// A paced room over real steps every 250 ms for two minutes and more, with the line full of
/// waiting tickets and places to spare: the admissions the store records (`admitted_at`) never
/// number more than `admitPerMinute` within any 60 seconds, and they come evenly.
#[tokio::test(flavor = "multi_thread")]
async fn a_paced_room_never_admits_more_than_its_rate_in_any_minute() {
    const PER_MINUTE: i64 = 120;
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
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
        let report = admit_in_room(&queue, policy(1000), Some(room.clone()), now).await;
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
    ctx.finish().await;
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
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
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
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_passes_over_idle_waiters_counts_them_out_of_the_line_and_admits_the_next() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
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
    assert_eq!(ticket_status(&ctx, watching).await, "ACTIVE");
    assert_eq!(ticket_status(&ctx, behind).await, "WAITING");
    let snapshot = queue.snapshot(LineNo::DEFAULT).await.expect("snapshot");
    assert_eq!(
        counts(snapshot),
        (watching.get(), 1, 1, 1),
        "(serving, admitted, waiting, active): the passed over no longer waits"
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_is_stale_when_a_poll_was_recorded_between_its_read_and_its_write() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let away = join(&queue, user(), NOW).await.ticket();
    join(&queue, user(), NOW).await;
    let at = NOW + Duration::seconds(70);

    // The user polls on another instance just as the step decides to pass them over.
    let other = ctx.queue();
    let action: Action = Box::new(move || {
        let other = other.clone();
        Box::pin(async move {
            let written = other
                .record_waiting_polls(&[poll(away, at - Duration::seconds(1))])
                .await
                .expect("polls");
            assert_eq!(written, 1);
        })
    });
    let rules = DomainRules {
        policy: passing_over(1),
        now: at,
        room: None,
    };
    stale_when_meanwhile(&ctx, at, rules, Phase::AdmitOldest, action).await;
    assert_eq!(ticket_status(&ctx, away).await, "WAITING");

    // The next step decides on the poll: the user keeps the place and is admitted.
    let report = admit_with(&queue, passing_over(1), at).await;
    assert_eq!((report.admitted, report.passed_over), (1, 0));
    assert_eq!(ticket_status(&ctx, away).await, "ACTIVE");
    ctx.finish().await;
}
