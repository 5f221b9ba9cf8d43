//! What only PostgreSQL shows of `PgQueueRepository` (the port's contract is the `queue`,
//! `queue_races` and `pre_queue` modules of `concert-contract`, run in `contract.rs`): a write
//! on another connection between an admission step's reads and its writes (activity, an end, a
//! waiting poll) goes through and makes the step `Stale`, writing nothing (on the embedded store
//! such a write waits for the step instead); and a step waits for a number drawn on another
//! session to commit (row locks and advisory locks seen in `pg_stat_activity`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use concert_application::ports::{
    ActivityWrite, AdmissionReport, AdmissionRules, JoinWrite, QueueRepository, TicketEnd, Version,
    WaitingPoll, Written,
};
use concert_domain::queue::{admit_oldest, end_overdue};
use concert_domain::{
    Admission, EndReason, LineNo, Overdue, Pace, QueuePolicy, QueueTicket, Room, TicketNo,
    TicketStatus, UserId, WaitingIdle,
};
use concert_postgres::{PgPool, PgQueueRepository};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use time::{Duration, OffsetDateTime};

use crate::support::{Ctx, NOW, NOW_SQL, count_on, ticket_status, user};

pub(crate) fn policy(max_active: u32) -> QueuePolicy {
    QueuePolicy {
        max_active,
        active_ttl: Duration::minutes(10),
        idle_timeout: Duration::minutes(2),
        waiting_idle: None,
    }
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

/// Test rules: end every active ticket or none, leave `free` places, admit exactly `admit`.
struct Scripted {
    end_all: bool,
    free: u32,
    admit: Vec<QueueTicket>,
}

impl AdmissionRules for Scripted {
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue {
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

    fn admit_oldest(&self, _waiting: &[QueueTicket], _free: u32) -> Admission {
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

// ---- Writes between a step's reads and its writes. ----

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

// ---- Waiting polls. ----

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
