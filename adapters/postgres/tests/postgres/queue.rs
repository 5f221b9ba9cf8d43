//! `PgQueueRepository`: joins, admission, deadlines, activity and the snapshot. The port is driven
//! the way the use cases drive it (load, let the domain decide, write over what was read), by the
//! small driver below, so each test reads like the old one while exercising the new port.

use concert_application::ports::{
    ActivityWrite, AdmissionReport, AdmissionRules, JoinWrite, QueueRepository, TicketEnd, Version,
    Written,
};
use concert_domain::queue::{Join, admit_oldest, end_overdue, join};
use concert_domain::{Overdue, QueuePolicy, QueueTicket, TicketNo, TicketStatus, UserId};
use concert_postgres::PgQueueRepository;
use time::{Duration, OffsetDateTime};

use crate::support::{Ctx, NOW, user};

pub(crate) fn policy(max_active: u32) -> QueuePolicy {
    QueuePolicy {
        max_active,
        active_ttl: Duration::minutes(10),
        idle_timeout: Duration::minutes(2),
    }
}

/// A join as `IssueQueueToken` makes it: the live ticket handed back, or a new number drawn over
/// the version of the user's place (again from the load when that write is stale).
pub(crate) struct Issued {
    pub ticket: QueueTicket,
    pub created: bool,
}

pub(crate) async fn issue(
    queue: &PgQueueRepository,
    who: UserId,
    now: OffsetDateTime,
    policy: &QueuePolicy,
) -> Issued {
    loop {
        let live = queue.load_live(who).await.expect("load live ticket");
        match join(live.ticket.as_ref(), now, policy) {
            Join::Keep(ticket) => {
                return Issued {
                    ticket,
                    created: false,
                };
            }
            Join::Draw { ends } => {
                if let Some(overdue) = ends {
                    let end = TicketEnd {
                        ticket: overdue.ticket(),
                        read_as: TicketStatus::Active,
                    };
                    queue.end(&end, now).await.expect("end");
                }
                let write = JoinWrite {
                    user: who,
                    version: live.version,
                    now,
                };
                if let Written::Done(ticket) = queue.save_join(&write).await.expect("join") {
                    return Issued {
                        ticket,
                        created: true,
                    };
                }
            }
        }
    }
}

/// The domain's admission rules at one instant, as `AdmitNextInLine` passes them.
pub(crate) struct Rules {
    pub policy: QueuePolicy,
    pub now: OffsetDateTime,
}

impl AdmissionRules for Rules {
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue {
        end_overdue(active, self.now, &self.policy)
    }

    fn admit_oldest(&self, waiting: &[QueueTicket], free: u32) -> Vec<QueueTicket> {
        admit_oldest(waiting, free, self.now, &self.policy)
    }
}

/// One admission step; `None` when it was stale (nothing written).
pub(crate) async fn try_admit(
    queue: &PgQueueRepository,
    policy: &QueuePolicy,
    now: OffsetDateTime,
) -> Option<AdmissionReport> {
    let rules = Rules {
        policy: *policy,
        now,
    };
    match queue.admit(now, &rules).await.expect("admit") {
        Written::Done(report) => Some(report),
        Written::Stale => None,
    }
}

pub(crate) async fn admit(
    queue: &PgQueueRepository,
    policy: &QueuePolicy,
    now: OffsetDateTime,
) -> AdmissionReport {
    try_admit(queue, policy, now)
        .await
        .expect("nothing changed under this step")
}

/// Activity as `QueueAccess::record_activity` writes it: over the `last_seen` read.
async fn record_activity(queue: &PgQueueRepository, ticket: TicketNo, now: OffsetDateTime) {
    let stored = queue.find(ticket).await.expect("find").expect("ticket");
    let mut touched = stored.clone();
    touched.touch(now);
    if let Some(last_seen) = touched.last_seen() {
        let write = ActivityWrite {
            ticket,
            read_last_seen: stored.last_seen(),
            last_seen,
        };
        queue.record_activity(&write).await.expect("activity");
    }
}

async fn stored(queue: &PgQueueRepository, ticket: TicketNo) -> QueueTicket {
    queue.find(ticket).await.expect("find").expect("ticket")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_gets_one_live_ticket_and_asking_again_returns_it() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let first_user = user();
    let first = issue(&queue, first_user, NOW, &QueuePolicy::default()).await;
    assert!(first.created);
    assert_eq!(first.ticket.stored_status(), TicketStatus::Waiting);
    assert_eq!(first.ticket.user(), first_user);
    assert_eq!(first.ticket.issued_at(), NOW);
    assert_eq!(first.ticket.active_until(), None);

    let again = issue(
        &queue,
        first_user,
        NOW + Duration::seconds(5),
        &QueuePolicy::default(),
    )
    .await;
    assert!(!again.created);
    assert_eq!(again.ticket, first.ticket);

    let second = issue(&queue, user(), NOW, &QueuePolicy::default()).await;
    assert_eq!(
        second.ticket.ticket().get(),
        first.ticket.ticket().get() + 1,
        "no gap"
    );
    assert_eq!(
        queue.find(first.ticket.ticket()).await.expect("find"),
        Some(first.ticket.clone())
    );
    let missing = TicketNo::new(first.ticket.ticket().get() + 100).expect("ticket");
    assert_eq!(queue.find(missing).await.expect("find"), None);
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_fills_free_slots_in_ticket_order_and_moves_the_counters() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let mut tickets = Vec::new();
    for _ in 0..5 {
        tickets.push(
            issue(&queue, user(), NOW, &QueuePolicy::default())
                .await
                .ticket
                .ticket(),
        );
    }
    let before = queue.snapshot().await.expect("snapshot");
    assert_eq!(
        (
            before.serving.get(),
            before.admitted_total,
            before.waiting,
            before.active
        ),
        (0, 0, 5, 0)
    );

    let report = admit(&queue, &policy(2), NOW).await;
    assert_eq!(
        (report.expired, report.admitted, report.serving.get()),
        (0, 2, tickets[1].get())
    );
    for (i, ticket) in tickets.iter().enumerate() {
        let stored = stored(&queue, *ticket).await;
        let expected = if i < 2 {
            TicketStatus::Active
        } else {
            TicketStatus::Waiting
        };
        assert_eq!(stored.stored_status(), expected, "ticket {i}");
        if i < 2 {
            assert_eq!(stored.active_until(), Some(NOW + Duration::minutes(10)));
            assert_eq!(stored.last_seen(), Some(NOW));
        }
    }
    issue(&queue, user(), NOW, &QueuePolicy::default()).await;
    let after = queue.snapshot().await.expect("snapshot");
    assert_eq!(
        (
            after.serving.get(),
            after.admitted_total,
            after.waiting,
            after.active
        ),
        (tickets[1].get(), 2, 4, 2)
    );
    // No free slot: nothing moves.
    let report = admit(&queue, &policy(2), NOW).await;
    assert_eq!(
        (report.admitted, report.serving.get()),
        (0, tickets[1].get())
    );
    let still = queue.snapshot().await.expect("snapshot");
    assert_eq!(
        (still.waiting, still.active, still.admitted_total),
        (4, 2, 2)
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn active_tickets_end_at_their_active_or_idle_deadline_and_make_room() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let busy = issue(&queue, user(), NOW, &QueuePolicy::default())
        .await
        .ticket
        .ticket();
    let idle = issue(&queue, user(), NOW, &QueuePolicy::default())
        .await
        .ticket
        .ticket();
    let waiting = issue(&queue, user(), NOW, &QueuePolicy::default())
        .await
        .ticket
        .ticket();
    admit(&queue, &policy(2), NOW).await;

    // `busy` is used every minute; `idle` never after admission. A waiting ticket's activity is
    // not recorded.
    for minute in 1..=3 {
        record_activity(&queue, busy, NOW + Duration::minutes(minute)).await;
    }
    record_activity(&queue, waiting, NOW + Duration::minutes(1)).await;
    assert_eq!(stored(&queue, waiting).await.last_seen(), None);
    // An older activity never moves last_seen back.
    record_activity(&queue, busy, NOW).await;
    assert_eq!(
        stored(&queue, busy).await.last_seen(),
        Some(NOW + Duration::minutes(3))
    );

    let report = admit(
        &queue,
        &policy(2),
        NOW + policy(2).idle_deadline_after_activity(),
    )
    .await;
    assert_eq!(
        (report.expired, report.admitted),
        (1, 1),
        "the idle ticket ended, the next came in"
    );
    assert_eq!(
        stored(&queue, idle).await.stored_status(),
        TicketStatus::Expired
    );
    assert_eq!(
        stored(&queue, waiting).await.stored_status(),
        TicketStatus::Active
    );
    assert_eq!(report.serving.get(), waiting.get());

    // The active deadline ends even a busy ticket.
    record_activity(&queue, busy, NOW + Duration::minutes(9)).await;
    record_activity(&queue, waiting, NOW + Duration::minutes(9)).await;
    let report = admit(&queue, &policy(2), NOW + Duration::minutes(10)).await;
    assert_eq!(report.expired, 1);
    assert_eq!(
        stored(&queue, busy).await.stored_status(),
        TicketStatus::Expired
    );
    let snapshot = queue.snapshot().await.expect("snapshot");
    assert_eq!(
        (snapshot.active, snapshot.waiting, snapshot.admitted_total),
        (1, 0, 3)
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_whose_active_ticket_ran_out_gets_a_new_one() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let someone = user();
    let first = issue(&queue, someone, NOW, &policy(10))
        .await
        .ticket
        .ticket();
    admit(&queue, &policy(10), NOW).await;

    // Still active within the idle timeout: the same ticket.
    let same = issue(&queue, someone, NOW + Duration::seconds(60), &policy(10)).await;
    assert!(!same.created);
    assert_eq!(same.ticket.ticket(), first);
    assert_eq!(same.ticket.stored_status(), TicketStatus::Active);

    // Idle past the timeout, before any admission step noticed: a new waiting ticket.
    let renewed = issue(
        &queue,
        someone,
        NOW + policy(10).idle_deadline_after_activity(),
        &policy(10),
    )
    .await;
    assert!(renewed.created);
    assert!(renewed.ticket.ticket() > first);
    assert_eq!(renewed.ticket.stored_status(), TicketStatus::Waiting);
    assert_eq!(
        stored(&queue, first).await.stored_status(),
        TicketStatus::Expired
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_over_an_old_version_draws_no_number_and_writes_nothing() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let someone = user();
    let fresh = queue.load_live(someone).await.expect("load");
    assert_eq!(
        (fresh.ticket.clone(), fresh.version),
        (None, Version::ABSENT)
    );
    let first = issue(&queue, someone, NOW, &policy(10)).await.ticket;
    let read = queue.load_live(someone).await.expect("load");
    assert_eq!(read.ticket, Some(first.clone()));
    assert!(
        read.version > Version::ABSENT,
        "the join moved the user's place"
    );

    // A duplicate decided on the state before the first join: stale, and no number is used.
    let stale = JoinWrite {
        user: someone,
        version: fresh.version,
        now: NOW,
    };
    assert_eq!(queue.save_join(&stale).await.expect("join"), Written::Stale);
    let next = issue(&queue, user(), NOW, &policy(10)).await.ticket;
    assert_eq!(next.ticket().get(), first.ticket().get() + 1, "no gap");
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_tickets")
            .await,
        2
    );

    // `end` writes only over the status read.
    let end = TicketEnd {
        ticket: first.ticket(),
        read_as: TicketStatus::Active,
    };
    assert_eq!(queue.end(&end, NOW).await.expect("end"), Written::Stale);
    assert_eq!(
        stored(&queue, first.ticket()).await.stored_status(),
        TicketStatus::Waiting
    );
    ctx.finish().await;
}

/// Rules that record activity on one ticket (through another connection) while the step holds
/// the line, as a request on another instance may: the step must not end that ticket.
struct ActivityMeanwhile {
    rules: Rules,
    queue: PgQueueRepository,
    ticket: TicketNo,
}

impl AdmissionRules for ActivityMeanwhile {
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue {
        let (queue, ticket, at) = (self.queue.clone(), self.ticket, self.rules.now);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                tokio::runtime::Runtime::new()
                    .expect("runtime")
                    .block_on(async {
                        let read = queue.find(ticket).await.expect("find").expect("ticket");
                        let write = ActivityWrite {
                            ticket,
                            read_last_seen: read.last_seen(),
                            last_seen: at,
                        };
                        assert_eq!(
                            queue.record_activity(&write).await.expect("activity"),
                            Written::Done(())
                        );
                    });
            });
        });
        self.rules.end_overdue(active)
    }

    fn admit_oldest(&self, waiting: &[QueueTicket], free: u32) -> Vec<QueueTicket> {
        self.rules.admit_oldest(waiting, free)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admission_step_whose_ticket_changed_meanwhile_is_stale_and_writes_nothing() {
    let ctx = Ctx::with_connections(4).await;
    let queue = ctx.queue();
    let idle = issue(&queue, user(), NOW, &policy(1)).await.ticket.ticket();
    let next = issue(&queue, user(), NOW, &policy(1)).await.ticket.ticket();
    admit(&queue, &policy(1), NOW).await;
    let later = NOW + policy(1).idle_deadline_after_activity();
    let rules = ActivityMeanwhile {
        rules: Rules {
            policy: policy(1),
            now: later,
        },
        queue: queue.clone(),
        ticket: idle,
    };
    ctx.warm_up(4).await;
    assert_eq!(
        queue.admit(later, &rules).await.expect("admit"),
        Written::Stale
    );
    // Only the activity written meanwhile changed: the idle ticket is active, the next waits.
    assert_eq!(
        stored(&queue, idle).await.stored_status(),
        TicketStatus::Active
    );
    assert_eq!(stored(&queue, idle).await.last_seen(), Some(later));
    assert_eq!(
        stored(&queue, next).await.stored_status(),
        TicketStatus::Waiting
    );
    ctx.finish().await;
}
