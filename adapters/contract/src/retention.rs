//! `RetentionRepository`: only records past their retention go (strictly before the cutoff), at
//! most `limit` per call, oldest first, and what they answered for (balances, ledgers, live
//! tickets) stays; a ticket that left while waiting stays until the line's serving counter
//! reaches it; a room's pre-queue entries go only once their room opened and their story is over
//! (ended before the cutoff, or placed on a ticket that was itself purged); purges running at
//! once share the rows without failing or taking one twice.

use std::sync::Arc;

use concert_application::ports::{OpeningRules, PreQueueEnd, PreQueueEntry, TicketEnd, Written};
use concert_application::purge_expired_records::PurgeExpiredRecords;
use concert_domain::{
    EndReason, IdempotencyScope, LineNo, QueuePolicy, RetentionPolicy, TicketNo, TicketStatus,
    UserId,
};
use time::{Duration, OffsetDateTime};

use crate::fixtures::{
    FixedClock, NOW, admit, charge, finish, key, policy, race, shared, ticket, user,
};
use crate::line::{self, OPENING, entry_for, room, step};
use crate::{RACERS, Store};

/// `count` charges of `who` at `at`, each with its key `{prefix}-{n}`, stored at `at`.
async fn keyed_charges<S: Store>(
    store: &S,
    who: UserId,
    prefix: &str,
    at: OffsetDateTime,
    count: usize,
) {
    for n in 0..count {
        charge(store, who, 10, at, Some(key(&format!("{prefix}-{n}")))).await;
    }
}

/// Whether each of the keys `{prefix}-0..count` of `who` is still stored.
async fn keys_kept<S: Store>(store: &S, who: UserId, prefix: &str, count: usize) -> Vec<bool> {
    let keys = store.idempotency();
    let mut kept = Vec::with_capacity(count);
    for n in 0..count {
        let found = keys
            .find(
                who,
                IdempotencyScope::Charge,
                &key(&format!("{prefix}-{n}")).key,
            )
            .await
            .expect("find");
        kept.push(found.is_some());
    }
    kept
}

pub async fn keys_past_retention_go_in_batches_and_their_effects_stay<S: Store>() {
    let store = S::fresh().await;
    let who = user();
    let (old, young) = (NOW - Duration::days(8), NOW - Duration::days(6));
    keyed_charges(&store, who, "old", old, 3).await;
    keyed_charges(&store, who, "young", young, 2).await;
    let cutoff = RetentionPolicy::default().cutoffs(NOW).idempotency_keys;
    let retention = store.retention();
    let mut purged = Vec::new();
    for _ in 0..3 {
        purged.push(
            retention
                .purge_idempotency_keys(cutoff, 2)
                .await
                .expect("purge"),
        );
    }
    assert_eq!(
        purged,
        [2, 1, 0],
        "at most the limit per call, only past the cutoff"
    );
    assert_eq!(keys_kept(&store, who, "old", 3).await, [false; 3]);
    assert_eq!(
        keys_kept(&store, who, "young", 2).await,
        [true; 2],
        "a key within its retention stays"
    );
    // A key stored exactly at the cutoff is not before it.
    assert_eq!(
        retention
            .purge_idempotency_keys(young, 10)
            .await
            .expect("purge"),
        0
    );
    assert_eq!(keys_kept(&store, who, "young", 2).await, [true; 2]);
    let wallets = store.wallets();
    assert_eq!(
        wallets.balance(who).await.expect("balance").get(),
        50,
        "the charges stay"
    );
    assert_eq!(
        wallets.history(who, 10, None).await.expect("history").len(),
        5
    );
    store.finish().await;
}

pub async fn keys_go_oldest_first<S: Store>() {
    let store = S::fresh().await;
    // Two users (a wallet's own history only moves forward): the younger keys are stored
    // first, so the order of writing is not the order of age.
    let (younger, older) = (user(), user());
    keyed_charges(&store, younger, "younger", NOW - Duration::days(8), 2).await;
    keyed_charges(&store, older, "older", NOW - Duration::days(9), 2).await;
    assert_eq!(
        store
            .retention()
            .purge_idempotency_keys(NOW, 2)
            .await
            .expect("purge"),
        2
    );
    assert_eq!(
        keys_kept(&store, older, "older", 2).await,
        [false; 2],
        "the two oldest went"
    );
    assert_eq!(keys_kept(&store, younger, "younger", 2).await, [true; 2]);
    store.finish().await;
}

fn end(ticket: TicketNo, read_as: TicketStatus) -> TicketEnd {
    TicketEnd {
        ticket,
        read_as,
        reason: EndReason::Left,
    }
}

pub async fn only_tickets_ended_before_the_cutoff_go<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let joined = NOW - Duration::days(3);
    let (long_ended, lately_ended, never_ended) = (
        ticket(&store, user(), joined).await.ticket(),
        ticket(&store, user(), joined).await.ticket(),
        ticket(&store, user(), joined).await.ticket(),
    );
    admit(&store, QueuePolicy::default(), joined)
        .await
        .expect("nothing moved");
    // Behind the serving counter still: ended while waiting, it keeps its place out of the
    // positions of those behind it until the line passes it.
    let left_waiting = ticket(&store, user(), joined).await.ticket();
    let still_waiting = ticket(&store, user(), joined).await.ticket();
    let long_ago = NOW - Duration::hours(30);
    for (ticket, read_as, at) in [
        (long_ended, TicketStatus::Active, long_ago),
        (lately_ended, TicketStatus::Active, NOW - Duration::hours(2)),
        (left_waiting, TicketStatus::Waiting, long_ago),
    ] {
        queue.end(&end(ticket, read_as), at).await.expect("end");
    }

    let cutoff = RetentionPolicy::default().cutoffs(NOW).ended_tickets;
    let retention = store.retention();
    assert_eq!(
        retention
            .purge_ended_tickets(cutoff, 10)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(
        retention
            .purge_ended_tickets(cutoff, 10)
            .await
            .expect("purge"),
        0
    );
    assert_eq!(queue.find(long_ended).await.expect("find"), None);
    for kept in [lately_ended, never_ended, left_waiting, still_waiting] {
        assert!(
            queue.find(kept).await.expect("find").is_some(),
            "{kept:?} stays"
        );
    }
    store.finish().await;
}

pub async fn a_ticket_that_left_while_waiting_stays_until_the_line_reaches_its_place<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let joined = NOW - Duration::days(3);
    let mut tickets = Vec::new();
    for _ in 0..5 {
        tickets.push(ticket(&store, user(), joined).await.ticket());
    }
    let [first, second, third, fourth, fifth] = tickets[..] else {
        unreachable!("five tickets")
    };
    for left in [first, third, fourth] {
        queue
            .end(&end(left, TicketStatus::Waiting), NOW - Duration::days(2))
            .await
            .expect("end");
    }
    let cutoff = RetentionPolicy::default().cutoffs(NOW).ended_tickets;
    let retention = store.retention();
    let purge = || retention.purge_ended_tickets(cutoff, 100);
    assert_eq!(
        purge().await.expect("purge"),
        0,
        "the line served nobody yet"
    );

    // One place: the step admits the oldest still waiting, and the line passes the first.
    admit(
        &store,
        policy(1),
        NOW - Duration::days(2) + Duration::hours(1),
    )
    .await
    .expect("nothing moved");
    assert_eq!(
        queue
            .find(second)
            .await
            .expect("find")
            .map(|t| t.stored_status()),
        Some(TicketStatus::Active)
    );
    assert_eq!(
        purge().await.expect("purge"),
        1,
        "only the one the line passed"
    );
    // Served up to the third: a ticket exactly at the serving counter was reached.
    store.set_serving(LineNo::DEFAULT, third).await;
    assert_eq!(
        purge().await.expect("purge"),
        1,
        "only the one the line reached"
    );
    for (ticket, kept) in [
        (first, false),
        (second, true),
        (third, false),
        (fourth, true),
        (fifth, true),
    ] {
        assert_eq!(
            queue.find(ticket).await.expect("find").is_some(),
            kept,
            "{ticket:?}"
        );
    }
    store.finish().await;
}

/// Opening rules that give the places in the reverse of arrival order.
struct Reversed;

impl OpeningRules for Reversed {
    fn order(&self, mut arrivals: Vec<PreQueueEntry>) -> Vec<PreQueueEntry> {
        arrivals.reverse();
        arrivals
    }
}

pub async fn pre_queue_entries_go_only_once_their_room_opened_and_their_story_is_over<S: Store>() {
    let store = S::fresh().await;
    let queue = store.queue();
    let retention = store.retention();
    let line = room(&store, "gala", Some(OPENING)).await.line();
    let (left, first, second) = (user(), user(), user());
    let gone = entry_for(&*queue, left, line, NOW).await;
    let placed_first = entry_for(&*queue, first, line, NOW).await;
    let placed_second = entry_for(&*queue, second, line, NOW).await;
    assert_eq!(
        queue
            .end_pre_queue(gone.entry, left, EndReason::Left, NOW)
            .await
            .expect("end"),
        PreQueueEnd::Ended
    );
    let purge = || retention.purge_pre_queue_entries(NOW + Duration::days(30), 100);
    // The entries still stored, each with its place (the pre-queue is all placed or ended once
    // its room opened), in entry order.
    let stored = || async {
        let mut outcomes: Vec<_> = queue
            .pre_queue_outcomes(line)
            .await
            .expect("outcomes")
            .into_iter()
            .map(|outcome| (outcome.entry, outcome.place))
            .collect();
        outcomes.sort_unstable();
        outcomes
    };

    // Before the opening nothing goes, not even the entry that left.
    assert_eq!(purge().await.expect("purge"), 0);
    assert_eq!(
        stored().await,
        [(gone.entry, None)],
        "the ended entry stays"
    );
    assert_eq!(
        queue
            .open_line(line, OPENING, &Reversed)
            .await
            .expect("open"),
        Written::Done(2)
    );
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
    let (second_place, first_place) = (line::place(line, 1), line::place(line, 2));
    assert_eq!(
        stored().await,
        [
            (placed_first.entry, Some(first_place)),
            (placed_second.entry, Some(second_place)),
        ],
        "the placed entries stay, the ended one went"
    );
    assert_eq!(purge().await.expect("purge"), 0, "nothing else is over");

    // A placed entry goes once its ticket was purged: both admitted, the first's ticket ended
    // and purged, the second's kept.
    let admitted = step(&store, line, line::policy(2), OPENING).await;
    assert_eq!(admitted.admitted, 2);
    let ended = OPENING + Duration::minutes(1);
    assert_eq!(
        queue
            .end(&end(first_place, TicketStatus::Active), ended)
            .await
            .expect("end"),
        Written::Done(())
    );
    assert_eq!(
        purge().await.expect("purge"),
        0,
        "an ended ticket not yet purged keeps its entry"
    );
    assert_eq!(
        retention
            .purge_ended_tickets(ended + Duration::seconds(1), 100)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(queue.find(first_place).await.expect("find"), None);
    assert_eq!(purge().await.expect("purge"), 1);
    assert_eq!(
        stored().await,
        [(placed_second.entry, Some(second_place))],
        "only the entry whose ticket was purged went"
    );
    store.finish().await;
}

pub async fn purges_running_at_once_share_the_rows_and_the_use_case_purges_everything_due<
    S: Store,
>() {
    const OLD: usize = 60;
    let store = shared::<S>().await;
    let (old, young) = (user(), user());
    keyed_charges(&*store, old, "old", NOW - Duration::days(9), OLD).await;
    keyed_charges(&*store, young, "young", NOW, 5).await;

    let purged = race(RACERS, |_| {
        let store = Arc::clone(&store);
        async move {
            store
                .retention()
                .purge_idempotency_keys(NOW - Duration::days(7), 5)
                .await
                .expect("purge")
        }
    })
    .await;
    assert!(purged.iter().all(|n| *n <= 5), "{purged:?}");
    let purged: u64 = purged.iter().sum();
    assert!(purged <= 60, "no row taken twice: {purged}");
    let report = PurgeExpiredRecords::new(
        store.retention(),
        Arc::new(FixedClock(NOW)),
        RetentionPolicy::default(),
    )
    .run_once()
    .await
    .expect("purge");
    assert_eq!(purged + report.idempotency_keys, 60);
    assert_eq!(keys_kept(&*store, old, "old", OLD).await, [false; OLD]);
    assert_eq!(keys_kept(&*store, young, "young", 5).await, [true; 5]);
    finish(store).await;
}
