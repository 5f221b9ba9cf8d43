//! Races of the waiting line over `SqliteQueueRepository` (the port-level counterparts of
//! `adapters/postgres/tests/postgres/queue_races.rs`): many tasks released together by a
//! barrier, each doing what the use cases do (load, let the domain decide, write over the version
//! read, and on `Stale` load again), and every assertion an exact count.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use concert_application::ports::{
    ActivityWrite, JoinWrite, QueueRepository, TicketEnd, WaitingPoll, Written,
};
use concert_domain::queue::{Join, join as join_line};
use concert_domain::{EndReason, LineNo, QueuePolicy, QueueTicket, TicketStatus, UserId};
use concert_sqlite::testing::count;
use concert_sqlite::{SqliteQueueRepository, SqliteStore};
use time::{Duration, OffsetDateTime};

use crate::queue::{DomainRules, NOW, fresh, policy, race, step, user};

/// A token request as `IssueQueueToken` makes it: load the user's place, let the domain decide
/// (keep the live ticket, or end an overdue one and draw), write over the version read, and
/// start over on `Stale`. The ticket, and whether this request drew it.
async fn request(
    queue: &SqliteQueueRepository,
    who: UserId,
    now: OffsetDateTime,
    policy: &QueuePolicy,
) -> (QueueTicket, bool) {
    loop {
        let live = queue
            .load_live(who, LineNo::DEFAULT)
            .await
            .expect("load_live");
        match join_line(live.ticket.as_ref(), now, policy) {
            Join::Keep(ticket) => return (ticket, false),
            Join::Draw { ends } => {
                if let Some(overdue) = ends {
                    let end = TicketEnd {
                        ticket: overdue.ticket(),
                        read_as: TicketStatus::Active,
                        reason: overdue.end_reason().unwrap_or(EndReason::ActiveTimeOver),
                    };
                    // Another request may have ended it first: then it is stale, and fine.
                    queue.end(&end, now).await.expect("end");
                }
                let write = JoinWrite {
                    line: LineNo::DEFAULT,
                    user: who,
                    version: live.version,
                    now,
                };
                if let Written::Done(ticket) = queue.save_join(&write).await.expect("join") {
                    return (ticket, true);
                }
            }
        }
    }
}

/// 20 requests of one user at once: exactly one draws a number, every answer is that ticket.
/// Returns its number.
async fn twenty_requests_of(
    queue: &SqliteQueueRepository,
    someone: UserId,
    now: OffsetDateTime,
) -> i64 {
    let answers = race(20, |_| {
        let queue = queue.clone();
        async move { request(&queue, someone, now, &policy(1_000)).await }
    })
    .await;
    assert_eq!(
        answers.iter().filter(|(_, created)| *created).count(),
        1,
        "one request drew the number"
    );
    let tickets: HashSet<i64> = answers.iter().map(|(t, _)| t.ticket().get()).collect();
    assert_eq!(
        tickets.len(),
        1,
        "every answer is the same ticket: {tickets:?}"
    );
    assert!(
        answers
            .iter()
            .all(|(t, _)| t.stored_status() == TicketStatus::Waiting)
    );
    answers[0].0.ticket().get()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_token_requests_of_one_user_make_one_ticket_and_no_gap() {
    let (store, queue) = fresh();

    // Several users in turn, each with 20 requests at once: their numbers follow each other.
    let mut drawn = Vec::new();
    let mut users = Vec::new();
    for _ in 0..5 {
        let someone = user();
        users.push(someone);
        drawn.push(twenty_requests_of(&queue, someone, NOW).await);
    }
    assert_eq!(drawn, (1..=5).collect::<Vec<_>>(), "no gap between them");

    // All are admitted; one runs out (active deadline passed); 20 requests at once past it:
    // the old ticket ends once and one new number is drawn.
    let report = step(&queue, LineNo::DEFAULT, policy(1_000), NOW).await;
    assert_eq!(report.admitted, 5);
    let renewed = twenty_requests_of(&queue, users[2], NOW + Duration::minutes(11)).await;
    assert_eq!(renewed, 6);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) AS count FROM queue_tickets WHERE ticket = 3 AND status = 'EXPIRED'"
        )
        .await,
        1
    );

    // The losers drew no number: the next new user's ticket is exactly the next one.
    let (next, created) = request(&queue, user(), NOW, &policy(1_000)).await;
    assert!(created);
    assert_eq!(
        next.ticket().get(),
        7,
        "the losers consumed no ticket number"
    );
    assert_eq!(
        count(&store, "SELECT count(*) AS count FROM queue_tickets").await,
        7
    );
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT version AS count FROM queue_members WHERE user_id = '{}'",
                users[2]
            )
        )
        .await,
        2,
        "the place moved once per ticket"
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) AS count FROM queue_members WHERE version = 1"
        )
        .await,
        5
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_users_joining_at_once_get_the_numbers_one_to_two_hundred() {
    let (store, queue) = fresh();

    let answers = race(200, |_| {
        let queue = queue.clone();
        async move { request(&queue, user(), NOW, &policy(1_000)).await }
    })
    .await;

    assert!(answers.iter().all(|(_, created)| *created));
    let mut numbers: Vec<i64> = answers.iter().map(|(t, _)| t.ticket().get()).collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=200).collect::<Vec<_>>(),
        "unique and gap-free"
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) AS count FROM queue_tickets WHERE status = 'WAITING'"
        )
        .await,
        200
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) AS count FROM queue_members WHERE version = 1"
        )
        .await,
        200
    );
    assert_eq!(
        count(
            &store,
            "SELECT value AS count FROM counters WHERE name = 'queue_line_0'"
        )
        .await,
        200
    );
    let snapshot = queue.snapshot(LineNo::DEFAULT).await.expect("snapshot");
    assert_eq!(
        (
            snapshot.waiting,
            snapshot.active,
            snapshot.admitted_total,
            snapshot.issued
        ),
        (200, 0, 0, 200)
    );
}

/// The line's invariants, each read in one statement (one consistent state): at most
/// `max_active` active, no waiting ticket passed by an admitted one, the tallies of
/// `queue_state` equal to the stored tickets'.
async fn check(store: &SqliteStore, max_active: u32) {
    let active = count(
        store,
        "SELECT count(*) AS count FROM queue_tickets WHERE status = 'ACTIVE'",
    )
    .await;
    assert!(active <= i64::from(max_active), "{active} active");
    for (sql, what) in [
        (
            "SELECT count(*) AS count FROM queue_tickets w JOIN queue_tickets a \
               ON w.status = 'WAITING' AND a.admitted_at IS NOT NULL AND w.ticket < a.ticket",
            "a later ticket was admitted first",
        ),
        (
            "SELECT s.admitted_total - (SELECT count(*) FROM queue_tickets \
               WHERE admitted_at IS NOT NULL) AS count FROM queue_state s WHERE s.line = 0",
            "admitted_total",
        ),
        (
            "SELECT s.serving - (SELECT coalesce(max(ticket), 0) FROM queue_tickets \
               WHERE admitted_at IS NOT NULL) AS count FROM queue_state s WHERE s.line = 0",
            "serving",
        ),
        (
            "SELECT s.issued_total - s.admitted_total - s.ended_waiting_total \
               + (SELECT count(*) FROM queue_tickets t WHERE t.ticket > s.issued_hwm) \
               - (SELECT count(*) FROM queue_tickets WHERE status = 'WAITING') AS count \
             FROM queue_state s WHERE s.line = 0",
            "the waiting count",
        ),
    ] {
        assert_eq!(count(store, sql).await, 0, "{what}");
    }
}

/// A wall clock, `skew` away from the system's.
fn clock(skew: Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc() + skew
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_steps_running_at_once_while_users_join_keep_the_limit_and_the_order() {
    const USERS: usize = 40;
    const STEPPERS: usize = 8;
    let (store, queue) = fresh();
    // Real clocks (half the steppers 50 ms behind) and short deadlines, so that admitted tickets
    // idle out within 200 ms and the line keeps moving while users join.
    let short = QueuePolicy {
        max_active: 5,
        active_ttl: Duration::milliseconds(300),
        idle_timeout: Duration::milliseconds(100),
        waiting_idle: None,
    };
    let admitted = Arc::new(AtomicU64::new(0));
    let expired = Arc::new(AtomicU64::new(0));

    let results = race(USERS + STEPPERS, |i| {
        let (queue, store) = (queue.clone(), store.clone());
        let (admitted, expired) = (Arc::clone(&admitted), Arc::clone(&expired));
        let skew = if i % 2 == 0 {
            Duration::ZERO
        } else {
            Duration::milliseconds(-50)
        };
        async move {
            if i < USERS {
                // Users arrive over about 0.8 s.
                tokio::time::sleep(StdDuration::from_millis(20 * (i as u64 / 2))).await;
                let (_, created) = request(&queue, user(), clock(skew), &short).await;
                assert!(created);
                return (0, 0);
            }
            let (mut steps, mut stale) = (0, 0);
            let deadline = Instant::now() + StdDuration::from_secs(30);
            while admitted.load(Ordering::SeqCst) < USERS as u64 {
                assert!(Instant::now() < deadline, "the line stopped moving");
                let now = clock(skew);
                let rules = DomainRules {
                    policy: short,
                    now,
                    room: None,
                };
                match queue
                    .admit(LineNo::DEFAULT, now, &rules)
                    .await
                    .expect("admit")
                {
                    Written::Done(report) => {
                        admitted.fetch_add(report.admitted, Ordering::SeqCst);
                        expired.fetch_add(report.expired, Ordering::SeqCst);
                        steps += 1;
                    }
                    Written::Stale => stale += 1,
                }
                check(&store, short.max_active).await;
                tokio::time::sleep(StdDuration::from_millis(5)).await;
            }
            (steps, stale)
        }
    })
    .await;

    let steps: u64 = results.iter().map(|r| r.0).sum();
    let stale: u64 = results.iter().map(|r| r.1).sum();
    assert!(steps > 0);
    assert_eq!(stale, 0, "nothing changes under a step that holds the line");
    check(&store, short.max_active).await;
    let all = USERS as i64;
    assert_eq!(
        count(
            &store,
            "SELECT count(*) AS count FROM queue_tickets WHERE admitted_at IS NOT NULL"
        )
        .await,
        all,
        "every ticket admitted, once"
    );
    assert_eq!(admitted.load(Ordering::SeqCst), USERS as u64);
    assert_eq!(
        count(&store, "SELECT count(*) AS count FROM queue_tickets").await,
        all
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) AS count FROM queue_tickets WHERE status = 'EXPIRED'"
        )
        .await,
        i64::try_from(expired.load(Ordering::SeqCst)).expect("count"),
        "each end reported once"
    );
    let active = count(
        &store,
        "SELECT count(*) AS count FROM queue_tickets WHERE status = 'ACTIVE'",
    )
    .await;
    let snapshot = queue.snapshot(LineNo::DEFAULT).await.expect("snapshot");
    assert_eq!(
        (
            snapshot.serving.get(),
            snapshot.admitted_total,
            snapshot.waiting,
            snapshot.active
        ),
        (all, USERS as u64, 0, u64::try_from(active).expect("count"))
    );
}

/// How long the request and the step of a round wait before they start: the request leaves up
/// to 2 ms after the step, or the step after the request, so that every order occurs.
fn delays(round: u64) -> (StdDuration, StdDuration) {
    let lag = StdDuration::from_micros(500 * (round % 5));
    if round.is_multiple_of(2) {
        (lag, StdDuration::ZERO)
    } else {
        (StdDuration::ZERO, lag)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_at_the_idle_deadline_and_the_step_ending_the_ticket_never_both_take_effect() {
    let (_store, queue) = fresh();
    let deadline = NOW + policy(1).idle_deadline_after_activity();
    let just_before = deadline - Duration::milliseconds(1);
    let (mut kept, mut ended) = (0, 0);

    for round in 0..30_u64 {
        let (ticket, _) = request(&queue, user(), NOW, &policy(1)).await;
        let ticket = ticket.ticket();
        let report = step(&queue, LineNo::DEFAULT, policy(1), NOW).await;
        assert_eq!(report.admitted, 1);

        // The user's request just before the idle deadline records activity over the activity
        // it read; the step runs at the deadline.
        let (request_delay, step_delay) = delays(round);
        let (recorded, stepped) = tokio::join!(
            tokio::spawn({
                let queue = queue.clone();
                async move {
                    tokio::time::sleep(request_delay).await;
                    let write = ActivityWrite {
                        ticket,
                        read_last_seen: Some(NOW),
                        last_seen: just_before,
                    };
                    queue.record_activity(&write).await.expect("activity")
                }
            }),
            tokio::spawn({
                let queue = queue.clone();
                async move {
                    tokio::time::sleep(step_delay).await;
                    step(&queue, LineNo::DEFAULT, policy(1), deadline).await
                }
            }),
        );
        let (recorded, stepped) = (recorded.expect("request"), stepped.expect("step"));
        let stored = queue.find(ticket).await.expect("find").expect("ticket");
        match stored.stored_status() {
            TicketStatus::Active => {
                // The activity won: the step, after it, saw the ticket alive and ended nothing.
                kept += 1;
                assert_eq!(recorded, Written::Done(()));
                assert_eq!(stored.last_seen(), Some(just_before));
                assert_eq!(stepped.expired, 0);
                let end = TicketEnd {
                    ticket,
                    read_as: TicketStatus::Active,
                    reason: EndReason::Left,
                };
                assert_eq!(
                    queue.end(&end, deadline).await.expect("end"),
                    Written::Done(())
                );
            }
            TicketStatus::Expired => {
                // The step's end won: the activity was not written over it.
                ended += 1;
                assert_eq!(recorded, Written::Stale);
                assert_eq!(
                    stored.last_seen(),
                    Some(NOW),
                    "an ended ticket took the activity of a request that kept it alive"
                );
                assert_eq!(stored.end_reason(), Some(EndReason::Idle));
                assert_eq!(stepped.expired, 1);
            }
            TicketStatus::Waiting => panic!("ticket {} waiting again", ticket.get()),
        }
    }
    assert_eq!(kept + ended, 30);
    eprintln!("activity kept {kept} tickets alive, the step ended {ended}");
}

#[tokio::test(flavor = "multi_thread")]
async fn polls_racing_a_step_that_passes_over_never_keep_a_passed_over_ticket_waiting() {
    let (store, queue) = fresh();
    let passing_over = QueuePolicy {
        waiting_idle: Some(concert_domain::WaitingIdle {
            after: Duration::minutes(1),
            since: NOW - Duration::hours(1),
        }),
        ..policy(1)
    };
    let at = NOW + Duration::seconds(70);
    let (mut kept, mut passed) = (0, 0);
    for round in 0..20_u64 {
        let (away, _) = request(&queue, user(), NOW, &passing_over).await;
        let away = away.ticket();
        // A poll at the last moment races the step that finds the ticket idle.
        let (poll_delay, step_delay) = delays(round);
        let (written, report) = tokio::join!(
            tokio::spawn({
                let queue = queue.clone();
                async move {
                    tokio::time::sleep(poll_delay).await;
                    queue
                        .record_waiting_polls(&[WaitingPoll {
                            ticket: away,
                            at: at - Duration::seconds(1),
                        }])
                        .await
                        .expect("polls")
                }
            }),
            tokio::spawn({
                let queue = queue.clone();
                async move {
                    tokio::time::sleep(step_delay).await;
                    step(&queue, LineNo::DEFAULT, passing_over, at).await
                }
            }),
        );
        let (written, report) = (written.expect("poll"), report.expect("step"));
        let stored = queue.find(away).await.expect("find").expect("ticket");
        match stored.stored_status() {
            TicketStatus::Active => {
                // The poll came first: the step admitted the user.
                kept += 1;
                assert_eq!((written, report.admitted, report.passed_over), (1, 1, 0));
            }
            TicketStatus::Expired => {
                // The step came first: the poll found the ticket no longer waiting.
                passed += 1;
                assert_eq!((written, report.admitted, report.passed_over), (0, 0, 1));
                assert_eq!(stored.end_reason(), Some(EndReason::Idle));
            }
            TicketStatus::Waiting => panic!("ticket {} still waiting", away.get()),
        }
        // Free the place for the next round.
        if stored.stored_status() == TicketStatus::Active {
            let end = TicketEnd {
                ticket: away,
                read_as: TicketStatus::Active,
                reason: EndReason::Left,
            };
            assert_eq!(queue.end(&end, at).await.expect("end"), Written::Done(()));
        }
    }
    assert_eq!(kept + passed, 20);
    eprintln!("the poll kept {kept} places, the step passed over {passed}");
    assert_eq!(
        count(
            &store,
            "SELECT count(*) AS count FROM queue_tickets WHERE status <> 'EXPIRED'"
        )
        .await,
        0
    );
}
