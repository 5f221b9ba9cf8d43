//! The rooms' waiting lines in Redis (or Valkey): a second store for the line behind
//! [`QueueRepository`](concert_application::ports::QueueRepository), for sale-open crowds.
//! Bookings, money and the rooms' settings stay in the main database.
//!
//! - [`RedisLine`] holds one [`redis::aio::ConnectionManager`] (a multiplexed connection that
//!   reconnects by itself); clones share it.
//! - Every call is bounded by [`RedisLineConfig::command_timeout`]: a stopped or unreachable
//!   Redis fails fast with [`RepositoryError::Unavailable`], as do the transient server errors
//!   (`LOADING`, `BUSY`, `TRYAGAIN`, `MASTERDOWN`, `READONLY`); any other error is
//!   [`RepositoryError::Unexpected`].
//! - Each step that must be atomic is one Lua script (module `scripts`); the key layout is in
//!   module `keys` and in docs/REDIS.md. A script missing after a restart (`NOSCRIPT`) is loaded again by
//!   [`redis::Script`] and run once more.
//! - Redis restarted empty is detected with [`RedisLine::epoch`].

mod admission;
mod keys;
mod pre_queue;
mod queue;
mod retention;
mod rooms;
mod scripts;
#[cfg(feature = "test-support")]
pub mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use concert_application::ports::{ReadinessProbe, RepositoryError, TicketBlockLeases};
use concert_domain::LineNo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script, ScriptInvocation, ServerErrorKind, Value};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

pub use queue::RedisQueueRepository;
pub use retention::RedisLineRetention;
pub use rooms::RedisLineRooms;

use crate::keys::{Keys, number, texts};

/// Where the line lives and how long a call may take.
#[derive(Debug, Clone)]
pub struct RedisLineConfig {
    /// `redis://[user:password@]host:port/db` (a secret: it may carry a password).
    pub url: SecretString,
    /// Put in front of every key, so that several deployments can share a Redis.
    pub key_prefix: String,
    /// The longest one call to Redis may take before it fails as unavailable.
    pub command_timeout: Duration,
}

impl RedisLineConfig {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &str = "concert:";
    /// The default command timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A configuration for `url` with the default prefix and timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            key_prefix: Self::DEFAULT_PREFIX.to_owned(),
            command_timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// The block an opening's write installs (when it is not the line's already) and takes its
/// places from: places `first..` up to `last`, over the block index read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpeningBlock {
    /// The line's block as read (`None`: the line had none).
    pub read: Option<u32>,
    pub index: Option<u32>,
    /// The first place the opening gives.
    pub first: i64,
    pub last: i64,
}

/// What a purge removes.
#[derive(Debug, Clone, Copy)]
enum Purged {
    Tickets,
    PreQueueEntries,
}

/// Why the line could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartupError {
    /// The URL is not a Redis URL (its text is not repeated: it may hold a password).
    #[error("QUEUE_URL is not a valid Redis URL")]
    InvalidUrl(#[source] RedisError),
    /// Redis did not answer a connection and a `PING` within the command timeout.
    #[error("Redis is unreachable")]
    Unreachable(#[source] RepositoryError),
}

/// The id of the dataset the line lives in. It changes when Redis lost its data (restarted
/// without persistence, flushed, failed over to an empty replica): compare the epoch read at
/// start-up (or last) with [`RedisLine::epoch`] now; a different one means every ticket, place
/// and pre-queue entry is gone (each line then starts in a block after every block it leased).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LineEpoch(String);

impl LineEpoch {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LineEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The waiting lines of one deployment in one Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisLine {
    conn: ConnectionManager,
    keys: Keys,
    timeout: Duration,
    /// Where the lines lease the blocks they draw their numbers from (a durable store).
    blocks: Arc<dyn TicketBlockLeases>,
    /// One lease at a time in this process: joins that run out together wait for the one
    /// lease, instead of each leasing a block.
    extending: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for RedisLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLine")
            .field("keys", &self.keys)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLine {
    /// Connects and pings; fails when the URL is wrong or Redis does not answer in time. The
    /// lines draw their ticket numbers from blocks leased in `blocks` (the main database), so
    /// that a Redis that lost its data never hands out a number again.
    pub async fn connect(
        config: RedisLineConfig,
        blocks: Arc<dyn TicketBlockLeases>,
    ) -> Result<Self, RedisStartupError> {
        let client = redis::Client::open(config.url.expose_secret())
            .map_err(RedisStartupError::InvalidUrl)?;
        let timeout = config.command_timeout;
        // Reconnection is retried quickly and briefly: a call waiting on it is bounded by the
        // command timeout anyway, and the next call starts another attempt.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(200));
        let conn = bounded(
            timeout,
            ConnectionManager::new_with_config(client, manager_config),
        )
        .await
        .map_err(RedisStartupError::Unreachable)?;
        let line = Self {
            conn,
            keys: Keys::new(&config.key_prefix),
            timeout,
            blocks,
            extending: Arc::default(),
        };
        line.ping().await.map_err(RedisStartupError::Unreachable)?;
        tracing::info!(prefix = %config.key_prefix, "the waiting line is on Redis");
        Ok(line)
    }

    /// The queue port over this Redis.
    pub fn queue(&self) -> RedisQueueRepository {
        RedisQueueRepository::new(self.clone())
    }

    /// `rooms` as they are stored, with each room whose Redis line opened reported opened.
    pub fn rooms_over(
        &self,
        rooms: std::sync::Arc<dyn concert_application::ports::RoomRepository>,
    ) -> RedisLineRooms {
        RedisLineRooms::new(self.clone(), rooms)
    }

    /// `main`'s retention for what the main database keeps (idempotency keys), this line's for
    /// its tickets and pre-queue entries.
    pub fn retention_over(
        &self,
        main: Arc<dyn concert_application::ports::RetentionRepository>,
    ) -> RedisLineRetention {
        RedisLineRetention::new(self.clone(), main)
    }

    /// Readiness: Redis answers `PING`.
    pub fn readiness(&self) -> RedisReadiness {
        RedisReadiness { line: self.clone() }
    }

    /// Removes tickets ended before `before`, at most `limit`, line by line, oldest end first.
    /// A ticket that ended while waiting stays until its line's serving counter reaches it
    /// (positions behind it still leave it out). Returns how many went.
    pub async fn purge_ended_tickets(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.purge_line_by_line(Purged::Tickets, before, limit)
            .await
    }

    /// Removes the pre-queue entries of opened lines whose story is over (ended before
    /// `before`, or placed on a ticket that was itself purged), at most `limit`. Returns how
    /// many went.
    pub async fn purge_pre_queue_entries(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        self.purge_line_by_line(Purged::PreQueueEntries, before, limit)
            .await
    }

    /// Purges `what` on each line in use, with what is left of `limit`, until the limit is
    /// reached; returns how many went in all.
    async fn purge_line_by_line(
        &self,
        what: Purged,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, RepositoryError> {
        let mut purged = 0_u64;
        for line in self.lines_in_use().await? {
            if purged >= u64::from(limit) {
                break;
            }
            let left = u32::try_from(u64::from(limit) - purged).unwrap_or(u32::MAX);
            purged += match what {
                Purged::Tickets => queue::purge_tickets(self, line, before, left).await?,
                Purged::PreQueueEntries => {
                    pre_queue::purge_entries(self, line, before, left).await?
                }
            };
        }
        Ok(purged)
    }

    /// The id of the dataset, set on first use (`SET` if absent, in one script). An instance
    /// keeps the epoch it read; a different one later (or a new one after the key vanished)
    /// means Redis lost its data since.
    pub async fn epoch(&self) -> Result<LineEpoch, RepositoryError> {
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        let mut invocation = scripts::EPOCH.prepare_invoke();
        invocation.key(self.keys.epoch()).arg(fresh);
        let value = self.run(&invocation).await?;
        keys::text(value)?
            .map(LineEpoch)
            .ok_or_else(|| keys::corrupt("no epoch"))
    }

    async fn ping(&self) -> Result<(), RepositoryError> {
        let mut conn = self.conn.clone();
        let pong: String = bounded(self.timeout, redis::cmd("PING").query_async(&mut conn)).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(keys::corrupt(format!("PING answered {pong:?}")))
        }
    }

    /// Runs a script (loading it first when Redis does not know it), bounded by the timeout.
    pub(crate) async fn run(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<Value, RepositoryError> {
        let mut conn = self.conn.clone();
        bounded(self.timeout, invocation.invoke_async(&mut conn)).await
    }

    /// Runs `script` over `line`'s keys with `args`.
    pub(crate) async fn run_on(
        &self,
        script: &Script,
        line: LineNo,
        args: &[String],
    ) -> Result<Value, RepositoryError> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.keys.line(line));
        for arg in args {
            invocation.arg(arg);
        }
        self.run(&invocation).await
    }

    /// Runs one plain command, bounded by the timeout.
    pub(crate) async fn command<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, RepositoryError> {
        let mut conn = self.conn.clone();
        bounded(self.timeout, cmd.query_async(&mut conn)).await
    }

    /// The block `line` draws from: its index (`None` without one), its last place, and the
    /// last place drawn.
    async fn block_of(&self, line: LineNo) -> Result<(Option<u32>, i64, i64), RepositoryError> {
        let answer = self.texts_on(&scripts::BLOCK, line, &[]).await?;
        let field = |at: usize| answer.get(at).cloned().flatten().unwrap_or_default();
        let index = match field(0).as_str() {
            "" => None,
            index => Some(u32::try_from(number(index)?).map_err(keys::corrupt)?),
        };
        let last = if index.is_some() {
            number(&field(1))?
        } else {
            0
        };
        Ok((index, last, number(&field(2))?))
    }

    /// Leases the block after `after` of `line` (`None`: a block after every block leased, for
    /// a line without one) and installs it, unless the line moved on meanwhile (another task or
    /// instance installed one first: the caller simply asks again). A first block waits for a
    /// step or an opening holding the line. A line that had numbers before starting over in a
    /// later block means Redis lost its data: said in the log.
    pub(crate) async fn extend_block(
        &self,
        line: LineNo,
        after: Option<u32>,
    ) -> Result<(), RepositoryError> {
        let _one_lease = self.extending.lock().await;
        if self.block_of(line).await?.0 != after {
            return Ok(());
        }
        let block = self.blocks.lease(line, after).await?;
        let start = line.start().get();
        let args = [
            after.map(|index| index.to_string()).unwrap_or_default(),
            block.index.to_string(),
            (block.first.get() - start).to_string(),
            (block.last.get() - start).to_string(),
        ];
        let answer = crate::queue::while_held(self, || async {
            let answer = keys::text(self.run_on(&scripts::BLOCK_INSTALL, line, &args).await?)?;
            Ok((answer.as_deref() != Some("held")).then_some(answer))
        })
        .await?;
        if after.is_none() && block.index > 0 && answer.as_deref() == Some("done") {
            tracing::warn!(
                line = line.get(),
                block = block.index,
                first = block.first.get(),
                "the line had no numbers in Redis: it starts after every number handed out \
                 before (did Redis lose its data?)"
            );
        }
        Ok(())
    }

    /// The block an opening placing `count` entries writes with its places: the line's block
    /// when it holds them, else the blocks leased to hold them (in the durable store only: the
    /// opening's write installs them, so a stale opening writes nothing in Redis). Only while
    /// nothing else draws from the line (the opening holds it).
    pub(crate) async fn places_for(
        &self,
        line: LineNo,
        count: u64,
    ) -> Result<OpeningBlock, RepositoryError> {
        let (held, mut last, drawn) = self.block_of(line).await?;
        let start = line.start().get();
        let mut plan = OpeningBlock {
            read: held,
            index: held,
            first: drawn + 1,
            last,
        };
        let mut index = match held {
            Some(index) => index,
            None => {
                let block = self.blocks.lease(line, None).await?;
                plan.first = block.first.get() - start;
                last = block.last.get() - start;
                block.index
            }
        };
        while u64::try_from(last - plan.first + 1).unwrap_or(0) < count {
            let block = self.blocks.lease(line, Some(index)).await?;
            index = block.index;
            last = block.last.get() - start;
        }
        plan.index = Some(index);
        plan.last = last;
        Ok(plan)
    }

    /// Records that `line` is in use (for the purges, which go line by line).
    pub(crate) async fn note_line(&self, line: LineNo) -> Result<(), RepositoryError> {
        self.command::<()>(redis::cmd("SADD").arg(self.keys.lines()).arg(line.get()))
            .await
    }

    async fn lines_in_use(&self) -> Result<Vec<LineNo>, RepositoryError> {
        let raw: Vec<String> = self
            .command(redis::cmd("SMEMBERS").arg(self.keys.lines()))
            .await?;
        let mut lines = raw
            .iter()
            .map(|raw| LineNo::new(number(raw)?).map_err(keys::corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        lines.sort_unstable();
        Ok(lines)
    }

    /// How long a step or an opening may hold a line: well above the few milliseconds one
    /// takes, so that only a holder that died (or stalled that long) loses it, and short enough
    /// that joins stall no longer than that after such a death.
    pub(crate) fn hold_lease(&self) -> Duration {
        self.timeout * 2
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The line's script answers as strings.
    pub(crate) async fn texts_on(
        &self,
        script: &Script,
        line: LineNo,
        args: &[String],
    ) -> Result<Vec<Option<String>>, RepositoryError> {
        texts(self.run_on(script, line, args).await?)
    }
}

/// Runs `call` for at most `timeout`; a timeout or a transient error is `Unavailable`.
async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, RepositoryError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(from_redis),
        Err(_) => Err(RepositoryError::Unavailable(
            format!("Redis did not answer within {timeout:?}").into(),
        )),
    }
}

/// Server errors that pass: the server is loading its data, busy with a script, failing over,
/// a read-only replica, or a cluster resharding.
const TRANSIENT_CODES: [&str; 6] = [
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "MASTERDOWN",
    "READONLY",
    "CLUSTERDOWN",
];

/// `Unavailable` for what passes (the connection, a timeout, a transient server state), else
/// `Unexpected`.
pub(crate) fn from_redis(error: RedisError) -> RepositoryError {
    let transient = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::ClusterDown
            )
        )
        || error
            .code()
            .is_some_and(|code| TRANSIENT_CODES.contains(&code));
    if transient {
        RepositoryError::Unavailable(Box::new(error))
    } else {
        RepositoryError::Unexpected(Box::new(error))
    }
}

/// `ReadinessProbe` over Redis: `PING`, bounded by the command timeout.
#[derive(Debug, Clone)]
pub struct RedisReadiness {
    line: RedisLine,
}

#[async_trait]
impl ReadinessProbe for RedisReadiness {
    async fn check(&self) -> Result<(), RepositoryError> {
        self.line.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_server_errors_are_unavailable_and_others_unexpected() {
        for code in TRANSIENT_CODES {
            let error = redis::make_extension_error(code.to_owned(), Some("now".to_owned()));
            assert!(
                matches!(from_redis(error), RepositoryError::Unavailable(_)),
                "{code}"
            );
        }
        let wrong = redis::make_extension_error("WRONGTYPE".to_owned(), None);
        assert!(matches!(from_redis(wrong), RepositoryError::Unexpected(_)));
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(from_redis(io), RepositoryError::Unavailable(_)));
    }

    #[test]
    fn the_config_keeps_its_url_out_of_debug() {
        let config = RedisLineConfig::new("redis://user:hunter2@localhost:6379/0");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.key_prefix, "concert:");
        assert_eq!(config.command_timeout, Duration::from_secs(1));
    }
}
