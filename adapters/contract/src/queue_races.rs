//! Races of the waiting line: many tasks released together by a barrier, each doing what the use
//! cases do (load, let the domain decide, write over the version read, and on `Stale` load
//! again), and every assertion an exact count: one ticket per user however many requests, gap-free
//! numbers, steps that keep the limit and the order while users join, and a request or a poll
//! racing the step that would end its ticket never both taking effect.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use concert_application::ports::{ActivityWrite, TicketEnd, WaitingPoll, Written};
use concert_domain::{EndReason, LineNo, QueuePolicy, TicketStatus, UserId, WaitingIdle};
use time::{Duration, OffsetDateTime};

use crate::fixtures::{NOW, finish, race, shared, user};
use crate::line::{count_in, place, policy, request, status, step, try_step};
use crate::{LineFigures, Store};

/// 20 requests of one user at once: exactly one draws a number, every answer is that ticket.
/// Returns its number.
async fn twenty_requests_of<S: Store>(store: &Arc<S>, someone: UserId, now: OffsetDateTime) -> i64 {
    let answers = race(20, |_| {
        let queue = store.queue();
        async move { request(&*queue, someone, now, &policy(1_000)).await }
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

async fn version_of<S: Store>(store: &S, who: UserId) -> i64 {
    store
        .queue()
        .load_live(who, LineNo::DEFAULT)
        .await
        .expect("load_live")
        .version
        .get()
}

pub async fn concurrent_token_requests_of_one_user_make_one_ticket_and_no_gap<S: Store>() {
    let store = shared::<S>().await;

    // Several users in turn, each with 20 requests at once: their numbers follow each other.
    let mut drawn = Vec::new();
    let mut users = Vec::new();
    for _ in 0..5 {
        let someone = user();
        users.push(someone);
        drawn.push(twenty_requests_of(&store, someone, NOW).await);
    }
    assert_eq!(drawn, (1..=5).collect::<Vec<_>>(), "no gap between them");

    // All are admitted; one runs out (active deadline passed); 20 requests at once past it:
    // the old ticket ends once and one new number is drawn.
    let report = step(&*store, LineNo::DEFAULT, policy(1_000), NOW).await;
    assert_eq!(report.admitted, 5);
    let renewed = twenty_requests_of(&store, users[2], NOW + Duration::minutes(11)).await;
    assert_eq!(renewed, 6);
    assert_eq!(
        status(&*store, place(LineNo::DEFAULT, 3)).await,
        TicketStatus::Expired
    );

    // The losers drew no number: the next new user's ticket is exactly the next one.
    let newcomer = user();
    let (next, created) = request(&*store.queue(), newcomer, NOW, &policy(1_000)).await;
    assert!(created);
    assert_eq!(
        next.ticket().get(),
        7,
        "the losers consumed no ticket number"
    );
    assert_eq!(store.ticket_numbers().await.len(), 7);
    assert_eq!(
        version_of(&*store, users[2]).await,
        2,
        "the place moved once per ticket"
    );
    for (i, who) in users.iter().enumerate().filter(|(i, _)| *i != 2) {
        assert_eq!(version_of(&*store, *who).await, 1, "user {i}");
    }
    assert_eq!(version_of(&*store, newcomer).await, 1);
    finish(store).await;
}

pub async fn two_hundred_users_joining_at_once_get_the_numbers_one_to_two_hundred<S: Store>() {
    let store = shared::<S>().await;

    let answers = race(200, |_| {
        let queue = store.queue();
        async move { request(&*queue, user(), NOW, &policy(1_000)).await }
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
    assert_eq!(count_in(&*store, TicketStatus::Waiting).await, 200);
    for (ticket, _) in &answers {
        assert_eq!(version_of(&*store, ticket.user()).await, 1);
    }
    let snapshot = store
        .queue()
        .snapshot(LineNo::DEFAULT)
        .await
        .expect("snapshot");
    assert_eq!(
        (
            snapshot.waiting,
            snapshot.active,
            snapshot.admitted_total,
            snapshot.issued
        ),
        (200, 0, 0, 200)
    );
    // No number was drawn and lost: the next is 201.
    let (next, _) = request(&*store.queue(), user(), NOW, &policy(1_000)).await;
    assert_eq!(next.ticket().get(), 201);
    finish(store).await;
}

/// The line's invariants in one consistent state: at most `max_active` active, no waiting ticket
/// passed by an admitted one, the stored tallies equal to the stored tickets'.
fn check(line: &LineFigures, max_active: u32) {
    assert!(
        line.active <= i64::from(max_active),
        "more than {max_active} active: {line:?}"
    );
    assert_eq!(
        line.passed, 0,
        "a later ticket was admitted first: {line:?}"
    );
    assert_eq!(
        line.admitted_total, line.admitted,
        "admitted_total: {line:?}"
    );
    assert_eq!(line.serving, line.highest_admitted, "serving: {line:?}");
    assert_eq!(
        line.counted_waiting, line.waiting,
        "waiting count: {line:?}"
    );
}

/// A wall clock, `skew` away from the system's.
fn clock(skew: Duration) -> OffsetDateTime {
    OffsetDateTime::now_utc() + skew
}

pub async fn admission_steps_running_at_once_while_users_join_keep_the_limit_and_the_order<
    S: Store,
>() {
    const USERS: usize = 40;
    const STEPPERS: usize = 8;
    let store = shared::<S>().await;
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
        let store = Arc::clone(&store);
        let (admitted, expired) = (Arc::clone(&admitted), Arc::clone(&expired));
        let skew = if i % 2 == 0 {
            Duration::ZERO
        } else {
            Duration::milliseconds(-50)
        };
        async move {
            let queue = store.queue();
            if i < USERS {
                // Users arrive over about 0.8 s.
                tokio::time::sleep(StdDuration::from_millis(20 * (i as u64 / 2))).await;
                let (_, created) = request(&*queue, user(), clock(skew), &short).await;
                assert!(created);
                return (0, 0);
            }
            let (mut steps, mut stale) = (0, 0);
            let deadline = Instant::now() + StdDuration::from_secs(30);
            while admitted.load(Ordering::SeqCst) < USERS as u64 {
                assert!(Instant::now() < deadline, "the line stopped moving");
                match try_step(&*queue, LineNo::DEFAULT, short, None, clock(skew)).await {
                    Written::Done(report) => {
                        admitted.fetch_add(report.admitted, Ordering::SeqCst);
                        expired.fetch_add(report.expired, Ordering::SeqCst);
                        steps += 1;
                    }
                    Written::Stale => stale += 1,
                }
                check(&store.line_figures().await, short.max_active);
                tokio::time::sleep(StdDuration::from_millis(5)).await;
            }
            (steps, stale)
        }
    })
    .await;

    let steps: u64 = results.iter().map(|r| r.0).sum();
    let stale: u64 = results.iter().map(|r| r.1).sum();
    assert!(steps > 0);
    if S::ONE_WRITER {
        assert_eq!(stale, 0, "nothing changes under a step that holds the line");
    }
    let end = store.line_figures().await;
    check(&end, short.max_active);
    let all = USERS as i64;
    assert_eq!(
        (end.admitted, end.waiting, end.highest_admitted),
        (all, 0, all),
        "every ticket admitted, once: {end:?}"
    );
    assert_eq!(admitted.load(Ordering::SeqCst), USERS as u64);
    assert_eq!(store.ticket_numbers().await.len(), USERS);
    assert_eq!(
        u64::try_from(count_in(&*store, TicketStatus::Expired).await).expect("count"),
        expired.load(Ordering::SeqCst),
        "each end reported once"
    );
    let snapshot = store
        .queue()
        .snapshot(LineNo::DEFAULT)
        .await
        .expect("snapshot");
    assert_eq!(
        (
            snapshot.serving.get(),
            snapshot.admitted_total,
            snapshot.waiting,
            snapshot.active
        ),
        (
            all,
            USERS as u64,
            0,
            u64::try_from(end.active).expect("count")
        )
    );
    finish(store).await;
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

pub async fn a_request_at_the_idle_deadline_and_the_step_ending_the_ticket_never_both_take_effect<
    S: Store,
>() {
    let store = shared::<S>().await;
    let deadline = NOW + policy(1).idle_deadline_after_activity();
    let just_before = deadline - Duration::milliseconds(1);
    let (mut kept, mut ended, mut stale_steps) = (0, 0, 0);

    for round in 0..30_u64 {
        let (ticket, _) = request(&*store.queue(), user(), NOW, &policy(1)).await;
        let ticket = ticket.ticket();
        let report = step(&*store, LineNo::DEFAULT, policy(1), NOW).await;
        assert_eq!(report.admitted, 1);

        // The user's request just before the idle deadline records activity over the activity
        // it read; the step runs at the deadline.
        let (request_delay, step_delay) = delays(round);
        let (recorded, stepped) = tokio::join!(
            tokio::spawn({
                let queue = store.queue();
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
                let queue = store.queue();
                async move {
                    tokio::time::sleep(step_delay).await;
                    try_step(&*queue, LineNo::DEFAULT, policy(1), None, deadline).await
                }
            }),
        );
        let (recorded, stepped) = (recorded.expect("request"), stepped.expect("step"));
        if S::ONE_WRITER {
            assert!(matches!(stepped, Written::Done(_)), "round {round}: stale");
        }
        let stored = crate::line::stored(&*store, ticket).await;
        match stored.stored_status() {
            TicketStatus::Active => {
                // The activity won: the step, after it, saw the ticket alive and ended nothing
                // (or, started before it, wrote nothing at all).
                kept += 1;
                assert_eq!(recorded, Written::Done(()));
                assert_eq!(stored.last_seen(), Some(just_before));
                match stepped {
                    Written::Done(report) => assert_eq!(report.expired, 0),
                    Written::Stale => stale_steps += 1,
                }
                let end = TicketEnd {
                    ticket,
                    read_as: TicketStatus::Active,
                    reason: EndReason::Left,
                };
                assert_eq!(
                    store.queue().end(&end, deadline).await.expect("end"),
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
                assert!(
                    matches!(stepped, Written::Done(report) if report.expired == 1),
                    "{stepped:?}"
                );
            }
            TicketStatus::Waiting => panic!("ticket {} waiting again", ticket.get()),
        }
    }
    assert_eq!(kept + ended, 30);
    eprintln!(
        "activity kept {kept} tickets alive ({stale_steps} steps stale), the step ended {ended}"
    );
    finish(store).await;
}

pub async fn polls_racing_a_step_that_passes_over_never_keep_a_passed_over_ticket_waiting<
    S: Store,
>() {
    let store = shared::<S>().await;
    let passing_over = QueuePolicy {
        waiting_idle: Some(WaitingIdle {
            after: Duration::minutes(1),
            since: NOW - Duration::hours(1),
        }),
        ..policy(1)
    };
    let at = NOW + Duration::seconds(70);
    let (mut kept, mut passed, mut stale_steps) = (0, 0, 0);
    for round in 0..20_u64 {
        let (away, _) = request(&*store.queue(), user(), NOW, &passing_over).await;
        let away = away.ticket();
        // A poll at the last moment races the step that finds the ticket idle.
        let (poll_delay, step_delay) = delays(round);
        let (written, stepped) = tokio::join!(
            tokio::spawn({
                let queue = store.queue();
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
                let queue = store.queue();
                async move {
                    tokio::time::sleep(step_delay).await;
                    try_step(&*queue, LineNo::DEFAULT, passing_over, None, at).await
                }
            }),
        );
        let (written, stepped) = (written.expect("poll"), stepped.expect("step"));
        // A step made stale by the poll (it read the ticket before it) wrote nothing; the next
        // step decides on the poll.
        let report = match stepped {
            Written::Done(report) => report,
            Written::Stale => {
                assert!(!S::ONE_WRITER, "round {round}: stale");
                assert_eq!(written, 1, "only a poll makes the step stale");
                stale_steps += 1;
                step(&*store, LineNo::DEFAULT, passing_over, at).await
            }
        };
        let stored = crate::line::stored(&*store, away).await;
        match stored.stored_status() {
            TicketStatus::Active => {
                // The poll came first: the step admitted the user.
                kept += 1;
                assert_eq!((written, report.admitted, report.passed_over), (1, 1, 0));
                // Free the place for the next round.
                let end = TicketEnd {
                    ticket: away,
                    read_as: TicketStatus::Active,
                    reason: EndReason::Left,
                };
                assert_eq!(
                    store.queue().end(&end, at).await.expect("end"),
                    Written::Done(())
                );
            }
            TicketStatus::Expired => {
                // The step came first: the poll found the ticket no longer waiting.
                passed += 1;
                assert_eq!((written, report.admitted, report.passed_over), (0, 0, 1));
                assert_eq!(stored.end_reason(), Some(EndReason::Idle));
            }
            TicketStatus::Waiting => panic!("ticket {} still waiting", away.get()),
        }
    }
    assert_eq!(kept + passed, 20);
    eprintln!(
        "the poll kept {kept} places ({stale_steps} steps stale), the step passed over {passed}"
    );
    assert_eq!(
        count_in(&*store, TicketStatus::Expired).await,
        store.ticket_numbers().await.len(),
        "every ticket ended"
    );
    finish(store).await;
}
