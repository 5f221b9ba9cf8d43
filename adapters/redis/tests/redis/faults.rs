//! What only a line on Redis meets: the server killed, frozen or restarted empty, a script the
//! server forgot, a step whose holder went away. Each test runs its own `redis-server`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concert_application::ports::{
    AdmissionRules, JoinWrite, QueueRepository, ReadinessProbe, RepositoryError, Version, Written,
};
use concert_contract::fixtures::{NOW, user};
use concert_domain::{Admission, LineNo, Overdue, Pace, QueueTicket, TicketNo, UserId};
use concert_redis::RedisLine;
use concert_redis::testing::{MemoryTicketBlocks, RedisServer, TestKeys, connect};

/// A join of a new user into the `default` line through the port.
async fn join(line: &RedisLine) -> Result<QueueTicket, RepositoryError> {
    join_as(line, user()).await
}

/// A first join of `who` into the `default` line through the port.
async fn join_as(line: &RedisLine, who: UserId) -> Result<QueueTicket, RepositoryError> {
    let write = JoinWrite {
        user: who,
        line: LineNo::DEFAULT,
        version: Version::ABSENT,
        now: NOW,
    };
    match line.queue().save_join(&write).await? {
        Written::Done(ticket) => Ok(ticket),
        Written::Stale => panic!("a first join of a new user is never stale"),
    }
}

/// A line under `keys` on `server`, drawing from blocks of its own, with `timeout`.
async fn line_on(server: &RedisServer, keys: &TestKeys, timeout: Duration) -> RedisLine {
    server
        .line(keys.prefix(), timeout, MemoryTicketBlocks::shared())
        .await
}

/// Runs `call` and checks it failed as unavailable within `within`.
async fn unavailable_within<T: std::fmt::Debug>(
    within: Duration,
    call: impl Future<Output = Result<T, RepositoryError>>,
) {
    let started = Instant::now();
    let result = tokio::time::timeout(within * 3, call)
        .await
        .expect("the call never hangs");
    assert!(
        matches!(result, Err(RepositoryError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() <= within,
        "took {:?}, more than {within:?}",
        started.elapsed()
    );
}

/// Retries `call` until it succeeds, for at most `within`.
async fn eventually<T, F, Fut>(within: Duration, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RepositoryError>>,
{
    let deadline = Instant::now() + within;
    loop {
        match call().await {
            Ok(done) => return done,
            Err(error) => {
                assert!(Instant::now() < deadline, "still failing: {error:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_redis_makes_every_call_unavailable_at_once_and_a_restart_brings_it_back() {
    let timeout = Duration::from_millis(500);
    let mut server = RedisServer::start();
    let keys = TestKeys::new(server.url());
    let blocks = MemoryTicketBlocks::shared();
    let line = server
        .line(keys.prefix(), timeout, Arc::clone(&blocks))
        .await;
    let queue = line.queue();
    let first = join(&line).await.expect("a join");
    let epoch = line.epoch().await.expect("the epoch");

    server.kill();
    for _ in 0..3 {
        unavailable_within(timeout + Duration::from_millis(300), join(&line)).await;
        unavailable_within(
            timeout + Duration::from_millis(300),
            queue.snapshot(LineNo::DEFAULT),
        )
        .await;
        unavailable_within(
            timeout + Duration::from_millis(300),
            line.readiness().check(),
        )
        .await;
    }

    // Back, empty: the epoch tells it, and the line starts in a block after every block it
    // leased (the leases outlive Redis), so no number an older token carries comes back. The
    // new server knows none of the scripts: each first call meets NOSCRIPT, loads it and runs
    // again.
    server.restart();
    let again = eventually(Duration::from_secs(5), || line.epoch()).await;
    assert_ne!(again, epoch, "an emptied Redis has a new epoch");
    assert_eq!(
        line.epoch().await.expect("the epoch"),
        again,
        "and keeps it"
    );
    let next = eventually(Duration::from_secs(5), || join(&line)).await;
    let (second_block, _) = LineNo::DEFAULT.ticket_block(1).expect("block 1");
    assert_eq!(first.ticket().get(), 1);
    assert_eq!(
        next.ticket(),
        second_block,
        "the line goes on after its old numbers"
    );
    let snapshot = queue.snapshot(LineNo::DEFAULT).await.expect("a snapshot");
    assert_eq!(
        (snapshot.serving.get(), snapshot.issued, snapshot.waiting),
        (second_block.get() - 1, 1, 1),
        "the new ticket is first in line"
    );
    line.readiness().check().await.expect("ready");
    keys.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_redis_lost_its_data_the_first_snapshot_moves_the_line_past_its_old_numbers() {
    let mut server = RedisServer::start();
    let keys = TestKeys::new(server.url());
    let line = line_on(&server, &keys, Duration::from_millis(500)).await;
    let queue = line.queue();
    let before = queue.snapshot(LineNo::DEFAULT).await.expect("a snapshot");
    assert_eq!(
        (before.serving.get(), before.issued),
        (0, 0),
        "a new line starts in block 0"
    );
    assert_eq!(join(&line).await.expect("a join").ticket().get(), 1);

    server.restart();
    // Nobody joins: a view's refresh alone must learn that every older place is gone.
    let after = eventually(Duration::from_secs(5), || queue.snapshot(LineNo::DEFAULT)).await;
    let (second_block, _) = LineNo::DEFAULT.ticket_block(1).expect("block 1");
    assert_eq!(
        (after.serving.get(), after.issued, after.waiting),
        (second_block.get() - 1, 0, 0),
        "served up to just before block 1: ticket 1 is behind the serving counter"
    );
    assert_eq!(
        join(&line).await.expect("a join").ticket(),
        second_block,
        "and the next join takes block 1's first place"
    );
    keys.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_redis_makes_calls_unavailable_within_the_timeout_and_they_work_once_it_goes_on() {
    let timeout = Duration::from_millis(300);
    let server = RedisServer::start();
    let keys = TestKeys::new(server.url());
    let line = line_on(&server, &keys, timeout).await;
    let queue = line.queue();
    join(&line).await.expect("a join");

    server.pause();
    let frozen: Vec<UserId> = (0..3).map(|_| user()).collect();
    for who in &frozen {
        unavailable_within(timeout + Duration::from_millis(300), join_as(&line, *who)).await;
        unavailable_within(
            timeout + Duration::from_millis(300),
            queue.find(TicketNo::new(1).expect("a ticket")),
        )
        .await;
    }
    server.resume();

    // A call that timed out was sent: Redis may run it once it goes on (as PostgreSQL commits
    // a join whose client went away). Nothing is lost nor drawn twice: the users who were told
    // "unavailable" find their place when they ask again, and the numbers have no gap.
    let next = eventually(Duration::from_secs(5), || join(&line)).await;
    let mut numbers = vec![1, next.ticket().get()];
    for who in &frozen {
        let live = queue.load_live(*who, LineNo::DEFAULT).await.expect("load");
        if let Some(ticket) = live.ticket {
            assert_eq!(live.version, Version::new(1));
            numbers.push(ticket.ticket().get());
        }
    }
    numbers.sort_unstable();
    let expected: Vec<i64> = (1..=next.ticket().get()).collect();
    assert_eq!(numbers, expected, "gap-free, each number once");
    keys.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_the_server_forgot_is_loaded_again() {
    let server = RedisServer::start();
    let keys = TestKeys::new(server.url());
    let line = line_on(&server, &keys, Duration::from_secs(1)).await;
    join(&line).await.expect("a join");

    let mut conn = connect(&server.url()).await.expect("a connection");
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .expect("SCRIPT FLUSH");

    // NOSCRIPT, then SCRIPT LOAD and the call again: the caller sees a plain answer.
    let second = join(&line).await.expect("a join after the flush");
    assert_eq!(second.ticket().get(), 2);
    let snapshot = line
        .queue()
        .snapshot(LineNo::DEFAULT)
        .await
        .expect("a snapshot");
    assert_eq!((snapshot.issued, snapshot.waiting), (2, 2));
    keys.delete().await;
}

/// Rules that fail in the middle of a step (a bug, a panic): the step never writes.
struct Failing;

impl AdmissionRules for Failing {
    fn end_overdue(&self, _active: &[QueueTicket]) -> Overdue {
        panic!("the rules failed");
    }
    fn waiting_candidates(&self, free: u32) -> u32 {
        free
    }
    fn admit_oldest(&self, _waiting: &[QueueTicket], _free: u32) -> Admission {
        Admission::default()
    }
    fn is_paced(&self) -> bool {
        false
    }
    fn paced(&self, free: u32, _last_minute: u32, pace: Pace) -> (u32, Pace) {
        (free, pace)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_that_fails_after_taking_the_line_lets_it_go_and_joins_go_on() {
    // A long timeout, so the hold's lease (twice that) would stall joins for 10 s.
    let server = RedisServer::start();
    let keys = TestKeys::new(server.url());
    let line = line_on(&server, &keys, Duration::from_secs(5)).await;
    join(&line).await.expect("a join");

    let queue: Arc<dyn QueueRepository> = Arc::new(line.queue());
    let failed =
        tokio::spawn(async move { queue.admit(LineNo::DEFAULT, NOW, &Failing).await }).await;
    assert!(failed.is_err(), "the step panicked");

    let started = Instant::now();
    let next = join(&line).await.expect("a join");
    assert_eq!(next.ticket().get(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the hold was released, not left to its lease: {:?}",
        started.elapsed()
    );
    keys.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hold_whose_holder_died_ends_with_its_lease_and_joins_wait_for_it() {
    let server = RedisServer::start();
    let keys = TestKeys::new(server.url());
    let line = line_on(&server, &keys, Duration::from_millis(500)).await;
    join(&line).await.expect("a join");

    // A step's hold left by a process that died after its read.
    let mut conn = connect(&server.url()).await.expect("a connection");
    redis::cmd("SET")
        .arg(format!("{}{{line:0}}:hold", keys.prefix()))
        .arg("step:gone")
        .arg("PX")
        .arg(400)
        .query_async::<()>(&mut conn)
        .await
        .expect("SET");

    let started = Instant::now();
    let next = join(&line).await.expect("the join waits, then draws");
    assert_eq!(next.ticket().get(), 2);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "waited {waited:?}"
    );
    keys.delete().await;
}

/// Rules that, while the step decides, let its hold go to another step (its lease ran out and
/// another instance took the line), then admit the oldest.
struct OutlivedItsLease {
    url: String,
    hold: String,
}

impl AdmissionRules for OutlivedItsLease {
    fn end_overdue(&self, _active: &[QueueTicket]) -> Overdue {
        let client = redis::Client::open(self.url.as_str()).expect("a URL");
        let mut conn = client.get_connection().expect("a connection");
        redis::cmd("SET")
            .arg(&self.hold)
            .arg("step:another")
            .exec(&mut conn)
            .expect("SET");
        Overdue {
            ended: Vec::new(),
            free: 1,
        }
    }
    fn waiting_candidates(&self, free: u32) -> u32 {
        free
    }
    fn admit_oldest(&self, waiting: &[QueueTicket], free: u32) -> Admission {
        concert_domain::queue::admit_oldest(
            waiting,
            free,
            NOW,
            &concert_domain::QueuePolicy::default(),
        )
    }
    fn is_paced(&self) -> bool {
        false
    }
    fn paced(&self, free: u32, _last_minute: u32, pace: Pace) -> (u32, Pace) {
        (free, pace)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_whose_line_another_step_took_writes_nothing() {
    let server = RedisServer::start();
    let keys = TestKeys::new(server.url());
    let line = line_on(&server, &keys, Duration::from_secs(1)).await;
    let first = join(&line).await.expect("a join");
    let hold = format!("{}{{line:0}}:hold", keys.prefix());
    let rules = OutlivedItsLease {
        url: server.url(),
        hold: hold.clone(),
    };

    let step = line
        .queue()
        .admit(LineNo::DEFAULT, NOW, &rules)
        .await
        .expect("admit");

    assert_eq!(step, Written::Stale);
    let stored = line
        .queue()
        .find(first.ticket())
        .await
        .expect("find")
        .expect("the ticket");
    assert_eq!(stored, first, "not admitted");
    let mut conn = connect(&server.url()).await.expect("a connection");
    let still: Option<String> = redis::cmd("GET")
        .arg(&hold)
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(
        still.as_deref(),
        Some("step:another"),
        "the other's hold stays"
    );
    keys.delete().await;
}
