//! `QueueRepository`'s line: loads carry the version of the user's place, a join over the version
//! read draws the next number and one over an older version is `Stale` and draws none; ends,
//! activity and waiting polls write only over the state read; an admission step writes exactly
//! what its `AdmissionRules` decided, in one atomic step, or nothing at all (`Stale`) when they
//! decided on tickets not as stored, and nothing joins while it holds the line; the snapshot's
//! counts are a read model of the stored tickets; a paced room keeps its rate.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use concert_application::ports::{
    ActivityWrite, AdmissionReport, AdmissionRules, JoinWrite, QueueRepository, TicketEnd, Version,
    WaitingPoll, Written,
};
use concert_domain::queue::{Join, ServingCounter, admit_oldest, end_overdue, join};
use concert_domain::{
    Admission, EndReason, LineNo, Overdue, Pace, QueuePolicy, QueueTicket, Room, RoomChange,
    RoomId, RoomState, TicketNo, TicketStatus, UserId, WaitingIdle,
};
use time::{Duration, OffsetDateTime};

use crate::fixtures::{self, NOW, admit, finish, race, shared, ticket, user};
use crate::line::{
    Random, admitted, all_tickets, count_in, counts, join_default, policy, status, step, stored,
    try_step,
};
use crate::{RACERS, Store};

/// Place `n` (1 is the first) of the `default` line.
fn place(n: i64) -> TicketNo {
    crate::line::place(LineNo::DEFAULT, n)
}

fn numbers(tickets: &[QueueTicket]) -> Vec<i64> {
    tickets.iter().map(|t| t.ticket().get()).collect()
}

/// When `ticket` of the `default` line ended, as `ended_since` reports it.
async fn ended_at<S: Store>(store: &S, ticket: TicketNo) -> Option<OffsetDateTime> {
    store
        .queue()
        .ended_since(LineNo::DEFAULT, NOW - Duration::days(1))
        .await
        .expect("ended_since")
        .into_iter()
        .find(|ended| ended.ticket == ticket)
        .map(|ended| ended.ended_at)
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

async fn scripted<S: Store>(
    store: &S,
    now: OffsetDateTime,
    rules: &Scripted,
) -> Written<AdmissionReport> {
    store
        .queue()
        .admit(LineNo::DEFAULT, now, rules)
        .await
        .expect("admit")
}

// ---- Joins. ----

pub async fn load_live_returns_the_live_ticket_and_the_version_of_the_users_place<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let someone = user();

    let fresh = queue
        .load_live(someone, LineNo::DEFAULT)
        .await
        .expect("load");
    assert_eq!((fresh.ticket, fresh.version), (None, Version::ABSENT));

    let first = join_default(&store, someone, NOW).await;
    join_default(&store, user(), NOW).await; // another user's place is not this one's
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
        scripted(&store, NOW, &rules).await,
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

    let again = join_default(&store, someone, NOW + Duration::minutes(1)).await;
    let rejoined = queue
        .load_live(someone, LineNo::DEFAULT)
        .await
        .expect("load");
    assert_eq!(rejoined.ticket, Some(again));
    assert_eq!(rejoined.version, Version::new(2));
    store.finish().await;
}

pub async fn a_join_over_the_version_read_draws_the_next_number_and_moves_the_place<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let someone = user();

    let first = join_default(&store, someone, NOW).await;
    assert_eq!(first.ticket(), place(1), "the default line's first place");
    assert_eq!(first.user(), someone);
    assert_eq!(first.stored_status(), TicketStatus::Waiting);
    assert_eq!(first.issued_at(), NOW);
    assert_eq!((first.active_until(), first.last_seen()), (None, None));
    assert_eq!(stored(&store, first.ticket()).await, first);
    assert_eq!(
        queue
            .load_live(someone, LineNo::DEFAULT)
            .await
            .expect("load")
            .version,
        Version::new(1)
    );

    let second = join_default(&store, user(), NOW + Duration::seconds(1)).await;
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
    assert_eq!(snapshot.serving, LineNo::DEFAULT.start());
    store.finish().await;
}

pub async fn a_join_over_an_old_version_is_stale_draws_no_number_and_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
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
        let before = store.line_rows().await;
        assert_eq!(
            queue.save_join(write).await.expect("join"),
            Written::Stale,
            "{why}"
        );
        assert_eq!(
            store.line_rows().await,
            before,
            "{why}: nothing written, no number drawn"
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
    let next = join_default(&store, user(), NOW).await;
    assert_eq!(next.ticket().get(), second.ticket().get() + 1, "no gap");
    assert_eq!(
        store.ticket_numbers().await,
        vec![first.ticket(), second.ticket(), next.ticket()]
    );
    assert_eq!(
        queue
            .load_live(someone, LineNo::DEFAULT)
            .await
            .expect("load")
            .version,
        Version::new(2)
    );
    store.finish().await;
}

// ---- Ends and activity. ----

pub async fn end_only_ends_a_ticket_still_in_the_status_read<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let waiting = join_default(&store, user(), NOW).await.ticket();
    let active = join_default(&store, user(), NOW).await.ticket();
    let rules = Scripted {
        free: 1,
        admit: vec![admitted(
            &stored(&store, active).await,
            NOW + Duration::minutes(10),
            NOW,
        )],
        ..Scripted::default()
    };
    assert!(matches!(
        scripted(&store, NOW, &rules).await,
        Written::Done(_)
    ));
    let later = NOW + Duration::minutes(1);

    for (ticket, read_as) in [
        (waiting, TicketStatus::Active),
        (active, TicketStatus::Waiting),
        (active, TicketStatus::Expired),
    ] {
        let before = store.line_rows().await;
        let end = TicketEnd {
            ticket,
            read_as,
            reason: EndReason::Left,
        };
        assert_eq!(queue.end(&end, later).await.expect("end"), Written::Stale);
        assert_eq!(store.line_rows().await, before, "nothing written");
    }

    // (serving, admitted, waiting, active) after each end: only the ticket that ended while
    // waiting leaves the waiting count.
    for (ticket, read_as, after) in [
        (waiting, TicketStatus::Waiting, (active.get(), 1, 0, 1)),
        (active, TicketStatus::Active, (active.get(), 1, 0, 0)),
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
        let ended = stored(&store, ticket).await;
        assert_eq!(
            (ended.stored_status(), ended.end_reason()),
            (TicketStatus::Expired, Some(EndReason::Left))
        );
        assert_eq!(ended_at(&store, ticket).await, Some(later));
        assert_eq!(
            counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
            after
        );
        // Ended once: ending it again over the status read is stale.
        let before = store.line_rows().await;
        assert_eq!(queue.end(&end, later).await.expect("end"), Written::Stale);
        assert_eq!(store.line_rows().await, before);
    }
    let mut ended: Vec<(i64, Option<EndReason>, OffsetDateTime)> = queue
        .ended_since(LineNo::DEFAULT, later)
        .await
        .expect("ended since")
        .into_iter()
        .map(|e| (e.ticket.get(), e.reason, e.ended_at))
        .collect();
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
    store.finish().await;
}

pub async fn activity_is_written_only_over_the_last_seen_read_and_only_on_an_active_ticket<
    S: Store,
>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let busy = join_default(&store, user(), NOW).await;
    let waiting = join_default(&store, user(), NOW).await.ticket();
    let rules = Scripted {
        free: 1,
        admit: vec![admitted(&busy, NOW + Duration::minutes(10), NOW)],
        ..Scripted::default()
    };
    assert!(matches!(
        scripted(&store, NOW, &rules).await,
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
        stored(&store, busy).await.last_seen(),
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
        let before = store.line_rows().await;
        assert_eq!(
            queue.record_activity(&write).await.expect("activity"),
            Written::Stale
        );
        assert_eq!(store.line_rows().await, before, "nothing written");
    }

    // An ended ticket records nothing, even over the last_seen it still has.
    let end = TicketEnd {
        ticket: busy,
        read_as: TicketStatus::Active,
        reason: EndReason::Left,
    };
    assert_eq!(queue.end(&end, NOW).await.expect("end"), Written::Done(()));
    let before = store.line_rows().await;
    assert_eq!(
        queue
            .record_activity(&activity(busy, Some(NOW + Duration::minutes(1)), 3))
            .await
            .expect("activity"),
        Written::Stale
    );
    assert_eq!(store.line_rows().await, before, "nothing written");
    store.finish().await;
}

// ---- Admission. ----

pub async fn an_admission_step_writes_exactly_what_its_rules_decided_and_moves_serving_forward_only<
    S: Store,
>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let mut line = Vec::new();
    for _ in 0..5 {
        line.push(join_default(&store, user(), NOW).await);
    }
    let no = |i: usize| line[i].ticket();
    let snapshot = async || counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot"));
    assert_eq!(snapshot().await, (0, 0, 5, 0));

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
    assert_eq!(
        scripted(&store, NOW, &rules).await,
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
            stored(&store, ticket.ticket()).await,
            admitted(ticket, until, seen)
        );
        assert_eq!(
            store.admitted_at(ticket.ticket()).await,
            Some(NOW),
            "admitted at the step's instant"
        );
        assert_eq!(ended_at(&store, ticket.ticket()).await, None);
    }
    for ticket in &line[2..] {
        assert_eq!(&stored(&store, ticket.ticket()).await, ticket, "untouched");
        assert_eq!(store.admitted_at(ticket.ticket()).await, None);
    }
    assert_eq!(snapshot().await, (no(1).get(), 2, 3, 2));

    // Step 2: the rules end every active ticket and admit ticket 4, passing over ticket 3: the
    // adapter writes what they decided (the order of the line is the domain's rule).
    let later = NOW + Duration::minutes(1);
    let rules = Scripted {
        end_all: true,
        free: 1,
        admit: vec![admitted(&line[3], until, later)],
        ..Scripted::default()
    };
    assert_eq!(
        scripted(&store, later, &rules).await,
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
        let ended = stored(&store, no(i)).await;
        assert_eq!(
            (ended.stored_status(), ended.end_reason()),
            (TicketStatus::Expired, Some(EndReason::Paid))
        );
        assert_eq!(ended_at(&store, no(i)).await, Some(later));
    }
    assert_eq!(status(&store, no(2)).await, TicketStatus::Waiting);
    assert_eq!(status(&store, no(3)).await, TicketStatus::Active);
    assert_eq!(snapshot().await, (no(3).get(), 3, 2, 1));

    // Step 3: ticket 3 admitted after ticket 4: serving never moves back.
    let rules = Scripted {
        free: 1,
        admit: vec![admitted(&line[2], until, later)],
        ..Scripted::default()
    };
    assert_eq!(
        scripted(&store, later, &rules).await,
        Written::Done(AdmissionReport {
            expired: 0,
            idle: 0,
            admitted: 1,
            passed_over: 0,
            serving: ServingCounter::new(no(3).get()),
        })
    );
    assert_eq!(rules.seen().active, vec![no(3).get()]);
    assert_eq!(snapshot().await, (no(3).get(), 4, 1, 2));

    // Step 4: no free place: the waiting tickets are not even read, nothing but the counters'
    // tallies move; a join after it counts as waiting at once.
    let rules = Scripted::default();
    assert_eq!(
        scripted(&store, later, &rules).await,
        Written::Done(AdmissionReport {
            expired: 0,
            idle: 0,
            admitted: 0,
            passed_over: 0,
            serving: ServingCounter::new(no(3).get()),
        })
    );
    assert_eq!(rules.seen().waiting, None);
    join_default(&store, user(), later).await;
    assert_eq!(snapshot().await, (no(3).get(), 4, 2, 2));
    assert_eq!(count_in(&store, TicketStatus::Waiting).await, 2);
    store.finish().await;
}

pub async fn the_domains_rules_end_tickets_at_their_active_or_idle_deadline_and_fill_the_places<
    S: Store,
>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let busy = join_default(&store, user(), NOW).await.ticket();
    let idle = join_default(&store, user(), NOW).await.ticket();
    let waiting = join_default(&store, user(), NOW).await.ticket();
    let report = step(&store, LineNo::DEFAULT, policy(2), NOW).await;
    assert_eq!((report.expired, report.admitted), (0, 2));

    // `busy` is used every minute, `idle` never after admission.
    for minute in 1..=3 {
        let write = ActivityWrite {
            ticket: busy,
            read_last_seen: stored(&store, busy).await.last_seen(),
            last_seen: NOW + Duration::minutes(minute),
        };
        assert_eq!(
            queue.record_activity(&write).await.expect("activity"),
            Written::Done(())
        );
    }
    let report = step(
        &store,
        LineNo::DEFAULT,
        policy(2),
        NOW + policy(2).idle_deadline_after_activity(),
    )
    .await;
    assert_eq!((report.expired, report.idle, report.admitted), (1, 1, 1));
    assert_eq!(report.serving.get(), waiting.get());
    let ended = stored(&store, idle).await;
    assert_eq!(
        (ended.stored_status(), ended.end_reason()),
        (TicketStatus::Expired, Some(EndReason::Idle))
    );
    assert_eq!(status(&store, waiting).await, TicketStatus::Active);

    // The active deadline ends even a busy ticket; `waiting`, used at 9 minutes, stays.
    for ticket in [busy, waiting] {
        let write = ActivityWrite {
            ticket,
            read_last_seen: stored(&store, ticket).await.last_seen(),
            last_seen: NOW + Duration::minutes(9),
        };
        assert_eq!(
            queue.record_activity(&write).await.expect("activity"),
            Written::Done(())
        );
    }
    let report = step(
        &store,
        LineNo::DEFAULT,
        policy(2),
        NOW + Duration::minutes(10),
    )
    .await;
    assert_eq!((report.expired, report.idle), (1, 0));
    let ended = stored(&store, busy).await;
    assert_eq!(
        (ended.stored_status(), ended.end_reason()),
        (TicketStatus::Expired, Some(EndReason::ActiveTimeOver))
    );
    assert_eq!(
        counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
        (waiting.get(), 3, 0, 1)
    );
    store.finish().await;
}

pub async fn an_admission_over_a_ticket_no_longer_waiting_is_stale_and_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let first = join_default(&store, user(), NOW).await;
    let second = join_default(&store, user(), NOW).await;
    let third = join_default(&store, user(), NOW).await;
    step(&store, LineNo::DEFAULT, policy(1), NOW).await;
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
    let before = store.line_rows().await;
    let rules = Scripted {
        end_all: true,
        free: 2,
        admit: vec![
            admitted(&second, until, later),
            admitted(&third, until, later),
        ],
        ..Scripted::default()
    };
    assert_eq!(scripted(&store, later, &rules).await, Written::Stale);
    assert_eq!(store.line_rows().await, before, "nothing written");
    assert_eq!(rules.seen().active, vec![first.ticket().get()]);

    // Admitting an active ticket again is just as stale.
    let rules = Scripted {
        free: 1,
        admit: vec![admitted(&first, until, later)],
        ..Scripted::default()
    };
    assert_eq!(scripted(&store, later, &rules).await, Written::Stale);
    assert_eq!(store.line_rows().await, before, "nothing written");
    store.finish().await;
}

/// Rules that decide on tickets not as stored (what a request or a poll recorded meanwhile on
/// another instance looks like to a step): the step is `Stale` and writes nothing.
pub async fn a_step_ending_a_ticket_over_another_last_seen_or_status_is_stale_and_writes_nothing<
    S: Store,
>() {
    let store = S::fresh().await;
    let active = join_default(&store, user(), NOW).await.ticket();
    let waiting = join_default(&store, user(), NOW).await;
    step(&store, LineNo::DEFAULT, policy(1), NOW).await;
    let active = stored(&store, active).await;
    let later = NOW + Duration::minutes(11);
    let before = store.line_rows().await;

    // The decision was made on activity older than the stored one: the end is not written, nor
    // anything else of the step.
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
    assert_eq!(scripted(&store, later, &rules).await, Written::Stale);
    assert_eq!(store.line_rows().await, before, "nothing written");

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
    assert_eq!(scripted(&store, later, &rules).await, Written::Stale);
    assert_eq!(store.line_rows().await, before, "nothing written");

    // Over the state as stored, the same end is written.
    let mut ended = active.clone();
    ended.end(EndReason::Idle);
    let rules = Scripted {
        ends: vec![ended],
        ..Scripted::default()
    };
    assert!(matches!(
        scripted(&store, later, &rules).await,
        Written::Done(AdmissionReport {
            expired: 1,
            idle: 1,
            ..
        })
    ));
    assert_eq!(status(&store, active.ticket()).await, TicketStatus::Expired);
    store.finish().await;
}

/// Rules that, while the step holds the line (between its reads and its writes), start a join
/// on the same store and check that it has not gone through by the time they decide.
struct JoinMeanwhile {
    queue: Arc<dyn QueueRepository>,
    joining: Mutex<Option<tokio::task::JoinHandle<QueueTicket>>>,
    finished_before_the_write: Mutex<Option<bool>>,
}

impl AdmissionRules for JoinMeanwhile {
    fn end_overdue(&self, active: &[QueueTicket]) -> Overdue {
        let queue = Arc::clone(&self.queue);
        *self.joining.lock().expect("lock") = Some(tokio::spawn(async move {
            crate::line::join_in(&*queue, user(), LineNo::DEFAULT, NOW).await
        }));
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

/// A number is drawn only while no step runs, so a step never passes a ticket drawn before it.
pub async fn nothing_joins_while_a_step_holds_the_line<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let first = join_default(&store, user(), NOW).await.ticket();
    let rules = JoinMeanwhile {
        queue: Arc::clone(&queue),
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
    assert_eq!(status(&store, later.ticket()).await, TicketStatus::Waiting);
    // The step counted the tickets issued before it; the join's is counted as fresh.
    assert_eq!(
        counts(queue.snapshot(LineNo::DEFAULT).await.expect("snapshot")),
        (first.get(), 1, 1, 1)
    );
    store.finish().await;
}

// ---- The snapshot's counts, a read model. ----

/// Over random histories of joins (first and returning users), admission steps under the
/// domain's rules, payments ending active tickets, users leaving and activity, the snapshot's
/// counts equal those of the stored tickets read through the domain.
pub async fn the_snapshots_counts_agree_with_the_stored_tickets_on_random_histories<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let users: Vec<UserId> = (0..12).map(|_| user()).collect();
    let mut random = Random(0x5eed_2026_1201);
    let mut now = NOW;
    for step_no in 0..240 {
        let policy = policy(u32::try_from(random.below(4)).unwrap_or(0) + 1);
        let tickets = all_tickets(&store).await;
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
                if let Join::Draw { ends } = join(live.ticket.as_ref(), now, &policy) {
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
                step(&store, LineNo::DEFAULT, policy, now).await;
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
        let tickets = all_tickets(&store).await;
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
            "step {step_no}: (serving, admitted, waiting, active)"
        );
        assert_eq!(
            snapshot.issued,
            u64::try_from(tickets.len()).expect("a count"),
            "step {step_no}: issued"
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
        assert_eq!(
            ended_waiting, expected,
            "step {step_no}: ended while waiting"
        );
    }
    store.finish().await;
}

/// A paced room over steps every 250 ms for two minutes and more, with the line full of waiting
/// tickets and places to spare: the admissions never number more than `admitPerMinute` within
/// any 60 seconds, and they come evenly.
pub async fn a_paced_room_never_admits_more_than_its_rate_in_any_minute<S: Store>() {
    const PER_MINUTE: i64 = 120;
    let store = S::fresh().await;
    let queue = store.queue();
    for _ in 0..300 {
        join_default(&store, user(), NOW).await;
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
    for step_no in 0..520 {
        let now = NOW + Duration::milliseconds(250 * step_no);
        let report = match try_step(
            &*queue,
            LineNo::DEFAULT,
            policy(1000),
            Some(room.clone()),
            now,
        )
        .await
        {
            Written::Done(report) => report,
            Written::Stale => panic!("nothing changed under this step"),
        };
        admitted_at.extend(std::iter::repeat_n(
            step_no * 250,
            usize::try_from(report.admitted).unwrap_or(0),
        ));
        assert!(
            report.admitted <= 3,
            "step {step_no}: a burst of {}",
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
    store.finish().await;
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

pub async fn waiting_polls_are_written_only_forward_and_only_on_waiting_tickets<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let admitted = join_default(&store, user(), NOW).await.ticket();
    let waiting = join_default(&store, user(), NOW).await.ticket();
    step(&store, LineNo::DEFAULT, policy(1), NOW).await;
    let later = NOW + Duration::seconds(30);

    let written = queue
        .record_waiting_polls(&[poll(admitted, later), poll(waiting, later)])
        .await
        .expect("polls");
    assert_eq!(written, 1, "only the waiting ticket");
    assert_eq!(stored(&store, admitted).await.last_seen(), Some(NOW));
    assert_eq!(stored(&store, waiting).await.last_seen(), Some(later));

    let earlier = NOW + Duration::seconds(10);
    let before = store.line_rows().await;
    let written = queue
        .record_waiting_polls(&[poll(waiting, earlier)])
        .await
        .expect("polls");
    assert_eq!(written, 0, "a later poll from elsewhere stays");
    assert_eq!(store.line_rows().await, before, "nothing written");
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
    assert_eq!(stored(&store, waiting).await.last_seen(), Some(latest));
    store.finish().await;
}

pub async fn a_step_passes_over_idle_waiters_counts_them_out_of_the_line_and_admits_the_next<
    S: Store,
>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let away = join_default(&store, user(), NOW).await.ticket();
    let watching = join_default(&store, user(), NOW).await.ticket();
    let behind = join_default(&store, user(), NOW).await.ticket();
    let at = NOW + Duration::seconds(70);
    queue
        .record_waiting_polls(&[poll(watching, NOW + Duration::seconds(50))])
        .await
        .expect("polls");

    let report = step(&store, LineNo::DEFAULT, passing_over(1), at).await;

    assert_eq!((report.admitted, report.passed_over), (1, 1));
    assert_eq!(report.serving.get(), watching.get());
    let passed = stored(&store, away).await;
    assert_eq!(
        (passed.stored_status(), passed.end_reason()),
        (TicketStatus::Expired, Some(EndReason::Idle))
    );
    assert_eq!(status(&store, watching).await, TicketStatus::Active);
    assert_eq!(status(&store, behind).await, TicketStatus::Waiting);
    let snapshot = queue.snapshot(LineNo::DEFAULT).await.expect("snapshot");
    assert_eq!(
        counts(snapshot),
        (watching.get(), 1, 1, 1),
        "(serving, admitted, waiting, active): the passed over no longer waits"
    );
    store.finish().await;
}

// ---- Through the admission use case (`AdmitNextInLine`). ----

pub async fn admission_admits_the_oldest_up_to_the_limit<S: Store>() {
    let store = S::fresh().await;
    for n in 0..5 {
        ticket(&store, user(), NOW + Duration::seconds(n)).await;
    }
    let later = NOW + Duration::seconds(10);
    let report = admit(&store, fixtures::policy(3), later)
        .await
        .expect("nothing moved");
    assert_eq!((report.admitted, report.expired), (3, 0));
    assert_eq!(report.serving.get(), place(3).get());
    for n in 1..=3 {
        let t = store
            .queue()
            .find(place(n))
            .await
            .expect("find")
            .expect("kept");
        assert_eq!(t.stored_status(), TicketStatus::Active);
        assert_eq!(
            t.active_until(),
            Some(later + QueuePolicy::default().active_ttl)
        );
    }
    for n in 4..=5 {
        assert_eq!(status(&store, place(n)).await, TicketStatus::Waiting);
    }
    let line = store
        .queue()
        .snapshot(LineNo::DEFAULT)
        .await
        .expect("snapshot");
    assert_eq!((line.active, line.waiting, line.admitted_total), (3, 2, 3));
    let again = admit(&store, fixtures::policy(3), later)
        .await
        .expect("nothing moved");
    assert_eq!(again.admitted, 0, "the line is full");
    store.finish().await;
}

pub async fn racing_admissions_never_exceed_the_limit<S: Store>() {
    const LIMIT: usize = 3;
    const ROUNDS: usize = 4;
    let store = shared::<S>().await;
    let mut line = Vec::new();
    for _ in 0..LIMIT * ROUNDS {
        line.push(ticket(&*store, user(), NOW).await.ticket());
    }
    // Each round, most tasks step the line at once while the others join it; then the
    // admitted pay, freeing every place for the next round.
    for round in 0..ROUNDS {
        let outcomes = race(RACERS, |i| {
            let store = Arc::clone(&store);
            async move {
                if i % 4 == 3 {
                    ticket(&*store, user(), NOW).await;
                    0
                } else {
                    let step = admit(&*store, fixtures::policy(LIMIT as u32), NOW).await;
                    step.map_or(0, |r| r.admitted)
                }
            }
        })
        .await;
        assert_eq!(
            outcomes.iter().sum::<u64>(),
            LIMIT as u64,
            "round {round}: {outcomes:?}"
        );
        let mut active = Vec::new();
        for number in &line {
            if status(&*store, *number).await == TicketStatus::Active {
                active.push(*number);
            }
        }
        let oldest = &line[round * LIMIT..(round + 1) * LIMIT];
        assert_eq!(
            active, oldest,
            "round {round}: the oldest, never more than the limit"
        );
        let snapshot = store
            .queue()
            .snapshot(LineNo::DEFAULT)
            .await
            .expect("snapshot");
        assert_eq!(snapshot.active, LIMIT as u64, "round {round}");
        for number in active {
            let paid = TicketEnd {
                ticket: number,
                read_as: TicketStatus::Active,
                reason: EndReason::Paid,
            };
            assert_eq!(
                store.queue().end(&paid, NOW).await.expect("end"),
                Written::Done(())
            );
        }
    }
    finish(store).await;
}

pub async fn an_ended_ticket_frees_its_place_once<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let (first, second, third) = (
        ticket(&store, user(), NOW).await,
        ticket(&store, user(), NOW).await,
        ticket(&store, user(), NOW).await,
    );
    admit(&store, fixtures::policy(1), NOW)
        .await
        .expect("nothing moved");
    assert_eq!(status(&store, first.ticket()).await, TicketStatus::Active);

    let as_waiting = TicketEnd {
        ticket: first.ticket(),
        read_as: TicketStatus::Waiting,
        reason: EndReason::Left,
    };
    assert_eq!(
        queue.end(&as_waiting, NOW).await.expect("end"),
        Written::Stale,
        "not as read"
    );
    let paid = TicketEnd {
        ticket: first.ticket(),
        read_as: TicketStatus::Active,
        reason: EndReason::Paid,
    };
    let at = NOW + Duration::seconds(5);
    assert_eq!(queue.end(&paid, at).await.expect("end"), Written::Done(()));
    assert_eq!(
        queue.end(&paid, at).await.expect("end"),
        Written::Stale,
        "ended once"
    );
    let ended = queue
        .find(first.ticket())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(
        (ended.stored_status(), ended.end_reason()),
        (TicketStatus::Expired, Some(EndReason::Paid))
    );

    // The third leaves while waiting: it no longer counts in the line.
    let left = TicketEnd {
        ticket: third.ticket(),
        read_as: TicketStatus::Waiting,
        reason: EndReason::Left,
    };
    assert_eq!(queue.end(&left, at).await.expect("end"), Written::Done(()));
    let serving = queue
        .snapshot(LineNo::DEFAULT)
        .await
        .expect("snapshot")
        .serving;
    let waiting_ends = queue.ended_waiting(serving).await.expect("ended_waiting");
    assert_eq!(
        waiting_ends
            .iter()
            .map(|e| (e.ticket, e.reason))
            .collect::<Vec<_>>(),
        vec![(third.ticket(), Some(EndReason::Left))]
    );
    let since = queue
        .ended_since(LineNo::DEFAULT, at)
        .await
        .expect("ended_since");
    let mut ended_now: Vec<_> = since
        .iter()
        .map(|e| (e.ticket, e.reason, e.ended_at))
        .collect();
    ended_now.sort_by_key(|e| e.0);
    assert_eq!(
        ended_now,
        vec![
            (first.ticket(), Some(EndReason::Paid), at),
            (third.ticket(), Some(EndReason::Left), at)
        ]
    );
    assert_eq!(
        queue
            .ended_since(LineNo::DEFAULT, at + Duration::seconds(1))
            .await
            .expect("ended_since"),
        vec![]
    );

    let report = admit(&store, fixtures::policy(1), at)
        .await
        .expect("nothing moved");
    assert_eq!(
        report.admitted, 1,
        "the freed place goes to the next in line"
    );
    assert_eq!(status(&store, second.ticket()).await, TicketStatus::Active);
    let line = queue.snapshot(LineNo::DEFAULT).await.expect("snapshot");
    assert_eq!((line.active, line.waiting), (1, 0));
    store.finish().await;
}
