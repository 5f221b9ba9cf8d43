//! `RetentionRepository`: only records past their retention go, at most `limit` per call, and
//! what they answered for (balances, ledgers, live tickets) stays.

use concert_application::ports::TicketEnd;
use concert_domain::{EndReason, IdempotencyScope, QueuePolicy, RetentionPolicy, TicketStatus};
use time::Duration;

use crate::Store;
use crate::fixtures::{NOW, admit, charge, key, ticket, user};

pub async fn keys_past_retention_go_in_batches_and_their_effects_stay<S: Store>() {
    let store = S::fresh().await;
    let who = user();
    let (old, young) = (NOW - Duration::days(8), NOW - Duration::days(6));
    for n in 0..3 {
        charge(&store, who, 10, old, Some(key(&format!("old-{n}")))).await;
    }
    for n in 0..2 {
        charge(&store, who, 10, young, Some(key(&format!("young-{n}")))).await;
    }
    let cutoff = RetentionPolicy::default().cutoffs(NOW).idempotency_keys;
    let retention = store.retention();
    let purged = [
        retention
            .purge_idempotency_keys(cutoff, 2)
            .await
            .expect("purge"),
        retention
            .purge_idempotency_keys(cutoff, 2)
            .await
            .expect("purge"),
        retention
            .purge_idempotency_keys(cutoff, 2)
            .await
            .expect("purge"),
    ];
    assert_eq!(
        purged,
        [2, 1, 0],
        "at most the limit per call, only past the cutoff"
    );

    let keys = store.idempotency();
    for n in 0..3 {
        let gone = keys
            .find(who, IdempotencyScope::Charge, &key(&format!("old-{n}")).key)
            .await;
        assert_eq!(gone.expect("find"), None);
    }
    for n in 0..2 {
        let kept = keys
            .find(
                who,
                IdempotencyScope::Charge,
                &key(&format!("young-{n}")).key,
            )
            .await;
        assert!(
            kept.expect("find").is_some(),
            "a key within its retention stays"
        );
    }
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
    let end = |ticket, read_as, reason| TicketEnd {
        ticket,
        read_as,
        reason,
    };
    let long_ago = NOW - Duration::hours(30);
    for (ticket, read_as, at) in [
        (long_ended, TicketStatus::Active, long_ago),
        (lately_ended, TicketStatus::Active, NOW - Duration::hours(2)),
        (left_waiting, TicketStatus::Waiting, long_ago),
    ] {
        queue
            .end(&end(ticket, read_as, EndReason::Left), at)
            .await
            .expect("end");
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
    for kept in [lately_ended, never_ended, left_waiting] {
        assert!(
            queue.find(kept).await.expect("find").is_some(),
            "{kept:?} stays"
        );
    }
    store.finish().await;
}
