//! `PgTicketBlockLeases`: blocks of a line's numbers, leased for good.

use std::collections::BTreeSet;
use std::sync::Arc;

use concert_application::ports::TicketBlockLeases;
use concert_domain::LineNo;
use concert_postgres::PgTicketBlockLeases;
use tokio::sync::Barrier;

use crate::support::Ctx;

const RACERS: usize = 8;

/// Awaits every task, in order.
async fn futures_join_all<T>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut done = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        done.push(task.await);
    }
    done
}

fn line(n: i64) -> LineNo {
    LineNo::new(n).expect("a line")
}

#[tokio::test]
async fn a_new_line_starts_in_block_zero_and_goes_on_block_after_block() {
    let ctx = Ctx::new().await;
    let leases = PgTicketBlockLeases::new(ctx.pool.clone());
    let gala = line(2);
    let first = leases.lease(gala, None).await.expect("a lease");
    assert_eq!(first.index, 0);
    assert_eq!(first.first.get(), gala.start().get() + 1);
    let next = leases.lease(gala, Some(0)).await.expect("a lease");
    assert_eq!(next.index, 1);
    assert_eq!(next.first.get(), first.last.get() + 1);
    // Asking again for the block after 0 names the same block: nothing new is leased.
    assert_eq!(leases.lease(gala, Some(0)).await.expect("a lease"), next);
    // A line that lost its data starts after every block leased so far.
    assert_eq!(leases.lease(gala, None).await.expect("a lease").index, 2);
    // Each line has its own blocks.
    assert_eq!(leases.lease(line(0), None).await.expect("a lease").index, 0);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM ticket_blocks")
            .await,
        4
    );
    ctx.finish().await;
}

/// `RACERS` leases of `after` at once; the indexes they got.
async fn race(leases: &Arc<PgTicketBlockLeases>, line: LineNo, after: Option<u32>) -> Vec<u32> {
    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks = (0..RACERS).map(|_| {
        let (leases, barrier) = (Arc::clone(leases), Arc::clone(&barrier));
        tokio::spawn(async move {
            barrier.wait().await;
            leases.lease(line, after).await.expect("a lease").index
        })
    });
    futures_join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("a racer"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_leases_of_the_next_block_agree_and_new_blocks_never_repeat() {
    let ctx = Ctx::with_connections(u32::try_from(RACERS).expect("a few")).await;
    let leases = Arc::new(PgTicketBlockLeases::new(ctx.pool.clone()));
    let gala = line(5);
    leases.lease(gala, None).await.expect("block 0");
    let next: BTreeSet<u32> = race(&leases, gala, Some(0)).await.into_iter().collect();
    assert_eq!(next, BTreeSet::from([1]));
    let fresh = race(&leases, gala, None).await;
    let distinct: BTreeSet<u32> = fresh.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        RACERS,
        "every new block is its caller's own: {fresh:?}"
    );
    assert!(distinct.iter().all(|index| *index >= 2), "{fresh:?}");
    ctx.finish().await;
}
