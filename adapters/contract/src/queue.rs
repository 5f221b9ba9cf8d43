//! `QueueRepository`: numbers are drawn first come, first served, without gaps and one live
//! ticket per user and line; an admission step (the application's own, with the domain's rules)
//! admits the oldest waiting tickets and never more than the active limit; ends and activity are
//! written only over the state read.

use std::collections::BTreeSet;
use std::sync::Arc;

use concert_application::ports::{
    ActivityWrite, JoinWrite, LiveTicket, TicketEnd, Version, Written,
};
use concert_domain::{EndReason, LineNo, QueuePolicy, TicketNo, TicketStatus};
use time::Duration;

use crate::fixtures::{NOW, admit, finish, join_line, policy, race, shared, ticket, user};
use crate::{RACERS, Store};

/// Place `n` (1 is the first) of the `default` line.
fn place(n: i64) -> TicketNo {
    TicketNo::new(LineNo::DEFAULT.start().get() + n).expect("a ticket number")
}

async fn status<S: Store>(store: &S, ticket: TicketNo) -> TicketStatus {
    store
        .queue()
        .find(ticket)
        .await
        .expect("find")
        .expect("the ticket")
        .stored_status()
}

pub async fn tickets_are_fifo_without_gaps<S: Store>() {
    let store = S::fresh().await;
    let mut drawn = Vec::new();
    for n in 0..5 {
        let who = user();
        let t = ticket(&store, who, NOW + Duration::seconds(n)).await;
        assert_eq!(t.user(), who);
        assert_eq!(t.stored_status(), TicketStatus::Waiting);
        assert_eq!(t.issued_at(), NOW + Duration::seconds(n));
        assert_eq!(
            store.queue().find(t.ticket()).await.expect("find"),
            Some(t.clone())
        );
        drawn.push(t.ticket());
    }
    assert_eq!(drawn, (1..=5).map(place).collect::<Vec<_>>());
    let line = store
        .queue()
        .snapshot(LineNo::DEFAULT)
        .await
        .expect("snapshot");
    assert_eq!((line.issued, line.waiting, line.active), (5, 5, 0));
    assert_eq!(line.serving, LineNo::DEFAULT.start());
    store.finish().await;
}

pub async fn racing_joins_of_one_user_draw_one_ticket<S: Store>() {
    let store = shared::<S>().await;
    let who = user();
    let joins = race(RACERS, |_| {
        let store = Arc::clone(&store);
        async move { join_line(&*store, who, LineNo::DEFAULT, NOW).await }
    })
    .await;
    assert_eq!(
        joins.iter().filter(|(_, created)| *created).count(),
        1,
        "one number drawn"
    );
    assert!(
        joins.iter().all(|(t, _)| t.ticket() == place(1)),
        "{joins:?}"
    );
    let line = store
        .queue()
        .snapshot(LineNo::DEFAULT)
        .await
        .expect("snapshot");
    assert_eq!((line.issued, line.waiting), (1, 1));
    assert_eq!(
        ticket(&*store, user(), NOW).await.ticket(),
        place(2),
        "no gap behind it"
    );
    finish(store).await;
}

pub async fn racing_joins_of_many_users_get_distinct_gap_free_places<S: Store>() {
    let store = shared::<S>().await;
    let drawn = race(RACERS, |_| {
        let store = Arc::clone(&store);
        async move { ticket(&*store, user(), NOW).await.ticket() }
    })
    .await;
    let places: BTreeSet<TicketNo> = drawn.into_iter().collect();
    assert_eq!(places, (1..=RACERS as i64).map(place).collect());
    let line = store
        .queue()
        .snapshot(LineNo::DEFAULT)
        .await
        .expect("snapshot");
    assert_eq!((line.issued, line.waiting), (RACERS as u64, RACERS as u64));
    finish(store).await;
}

pub async fn a_stale_join_draws_no_number<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let who = user();
    let first = JoinWrite {
        user: who,
        line: LineNo::DEFAULT,
        version: LiveTicket::FIRST_JOIN.version,
        now: NOW,
    };
    let Written::Done(drawn) = queue.save_join(&first).await.expect("save_join") else {
        panic!("a first join over the absent place");
    };
    assert_eq!(drawn.ticket(), place(1));
    assert_eq!(
        queue.save_join(&first).await.expect("save_join"),
        Written::Stale,
        "twin"
    );
    let live = queue
        .load_live(who, LineNo::DEFAULT)
        .await
        .expect("load_live");
    assert_eq!(live.ticket, Some(drawn));
    assert_ne!(live.version, Version::ABSENT);
    assert_eq!(
        ticket(&store, user(), NOW).await.ticket(),
        place(2),
        "no number was used up"
    );
    assert_eq!(
        queue
            .snapshot(LineNo::DEFAULT)
            .await
            .expect("snapshot")
            .issued,
        2
    );
    store.finish().await;
}

pub async fn admission_admits_the_oldest_up_to_the_limit<S: Store>() {
    let store = S::fresh().await;
    for n in 0..5 {
        ticket(&store, user(), NOW + Duration::seconds(n)).await;
    }
    let later = NOW + Duration::seconds(10);
    let report = admit(&store, policy(3), later)
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
    let again = admit(&store, policy(3), later)
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
                    let step = admit(&*store, policy(LIMIT as u32), NOW).await;
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
    admit(&store, policy(1), NOW).await.expect("nothing moved");
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

    let report = admit(&store, policy(1), at).await.expect("nothing moved");
    assert_eq!(
        report.admitted, 1,
        "the freed place goes to the next in line"
    );
    assert_eq!(status(&store, second.ticket()).await, TicketStatus::Active);
    let line = queue.snapshot(LineNo::DEFAULT).await.expect("snapshot");
    assert_eq!((line.active, line.waiting), (1, 0));
    store.finish().await;
}

pub async fn overdue_tickets_end_at_the_next_step<S: Store>() {
    let store = S::fresh().await;
    let (first, second) = (
        ticket(&store, user(), NOW).await,
        ticket(&store, user(), NOW).await,
    );
    admit(&store, policy(1), NOW).await.expect("nothing moved");
    let late = NOW + QueuePolicy::default().active_ttl;
    let report = admit(&store, policy(1), late).await.expect("nothing moved");
    assert_eq!((report.expired, report.admitted), (1, 1));
    let over = store
        .queue()
        .find(first.ticket())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(over.stored_status(), TicketStatus::Expired);
    assert!(matches!(
        over.end_reason(),
        Some(EndReason::Idle | EndReason::ActiveTimeOver)
    ));
    assert_eq!(status(&store, second.ticket()).await, TicketStatus::Active);
    store.finish().await;
}

pub async fn activity_is_written_over_the_last_seen_read<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let (active, waiting) = (
        ticket(&store, user(), NOW).await,
        ticket(&store, user(), NOW).await,
    );
    admit(&store, policy(1), NOW).await.expect("nothing moved");
    let read = queue
        .find(active.ticket())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(read.last_seen(), Some(NOW));
    let write = ActivityWrite {
        ticket: active.ticket(),
        read_last_seen: read.last_seen(),
        last_seen: NOW + Duration::seconds(30),
    };
    assert_eq!(
        queue.record_activity(&write).await.expect("activity"),
        Written::Done(())
    );
    assert_eq!(
        queue.record_activity(&write).await.expect("activity"),
        Written::Stale
    );
    let seen = queue
        .find(active.ticket())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(seen.last_seen(), Some(NOW + Duration::seconds(30)));
    let on_waiting = ActivityWrite {
        ticket: waiting.ticket(),
        read_last_seen: None,
        last_seen: NOW + Duration::seconds(30),
    };
    assert_eq!(
        queue.record_activity(&on_waiting).await.expect("activity"),
        Written::Stale,
        "only an active ticket has activity"
    );
    store.finish().await;
}
