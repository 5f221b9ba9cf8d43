//! The line draws its numbers block after block, from blocks leased in a durable store.

use std::sync::Arc;

use concert_application::ports::{JoinWrite, QueueRepository, TicketBlockLeases, Version, Written};
use concert_contract::fixtures::{NOW, user};
use concert_domain::{LineNo, QueueTicket};
use concert_redis::testing::MemoryTicketBlocks;
use futures::future::join_all;
use redis::AsyncCommands;

use crate::support::FreshLine;

async fn join(queue: &dyn QueueRepository) -> QueueTicket {
    let write = JoinWrite {
        user: user(),
        line: LineNo::DEFAULT,
        version: Version::ABSENT,
        now: NOW,
    };
    match queue.save_join(&write).await.expect("a join") {
        Written::Done(ticket) => ticket,
        Written::Stale => panic!("a first join of a new user is never stale"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn joins_that_use_up_a_block_go_on_in_the_next_without_a_gap() {
    let blocks: Arc<dyn TicketBlockLeases> = MemoryTicketBlocks::shared();
    let fresh = FreshLine::new(Arc::clone(&blocks)).await;
    let queue = fresh.line.queue();
    assert_eq!(
        join(&queue).await.ticket().get(),
        1,
        "block 0 holds the first place"
    );
    // Skip to the last few places of block 0, as if 65,530 more had joined.
    let (_, last) = LineNo::DEFAULT.ticket_block(0).expect("block 0");
    let mut raw = fresh.raw().await;
    let _: () = raw
        .set(format!("{}next", fresh.base(0)), last.get() - 4)
        .await
        .expect("SET next");
    // Many joins at once across the end of the block: every number once, none skipped.
    let queue = Arc::new(queue);
    let drawn = join_all((0..12).map(|_| {
        let queue = Arc::clone(&queue);
        tokio::spawn(async move { join(queue.as_ref()).await.ticket().get() })
    }))
    .await;
    let mut numbers: Vec<i64> = drawn
        .into_iter()
        .map(|task| task.expect("a join"))
        .collect();
    numbers.sort_unstable();
    let expected: Vec<i64> = (last.get() - 3..=last.get() + 8).collect();
    assert_eq!(numbers, expected);
    // Racing joins that ran out together went on in one block: block 1, leased once.
    let next = blocks.lease(LineNo::DEFAULT, None).await.expect("a lease");
    assert_eq!(next.index, 2, "blocks 0 and 1 were leased, nothing more");
    fresh.keys.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_block_waits_for_the_step_that_holds_the_line() {
    let fresh = FreshLine::new(MemoryTicketBlocks::shared()).await;
    let queue = fresh.line.queue();
    let mut raw = fresh.raw().await;
    let hold = format!("{}hold", fresh.base(0));
    let block = format!("{}block", fresh.base(0));
    // A step read the line (no block, serving 0) and will write its serving counter.
    let _: () = raw.set(&hold, "step:elsewhere").await.expect("SET hold");

    let snapshot = tokio::spawn(async move { queue.snapshot(LineNo::DEFAULT).await });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let installed: bool = raw.exists(&block).await.expect("EXISTS block");
    assert!(!installed, "no block is installed under the step's hold");
    let _: () = raw.del(&hold).await.expect("DEL hold");

    let snapshot = snapshot
        .await
        .expect("the snapshot's task")
        .expect("a snapshot once the step let go");
    assert_eq!((snapshot.serving.get(), snapshot.issued), (0, 0));
    let index: Option<String> = raw.hget(&block, "index").await.expect("HGET index");
    assert_eq!(index.as_deref(), Some("0"), "then block 0 is installed");
    fresh.keys.delete().await;
}
