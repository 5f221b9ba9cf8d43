//! Test support (feature `test-support`): a `redis-server` of the test's own, and a fresh key
//! prefix per test.
//!
//! [`RedisServer::start`] runs `redis-server --port <free> --save "" --appendonly no` (nothing on
//! disk: a restart comes back empty) under a small shell that kills it when the test process
//! goes away, however it goes (the shell waits for the end of a pipe only this process holds),
//! so no server outlives its tests, not even the one shared by a whole test binary
//! ([`RedisServer::shared`]). Tests never use the machine's 6379.
//!
//! [`TestKeys`] gives a test a prefix nobody else uses, and deletes its keys at the end.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use concert_application::ports::{RepositoryError, TicketBlock, TicketBlockLeases};
use concert_domain::LineNo;

use crate::{RedisLine, RedisLineConfig};

/// How long a server may take to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child on a port of its own.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    /// The shell that kills the server when its standard input closes.
    watchdog: Child,
    /// Held open: dropping it (or this process ending) makes the watchdog kill the server.
    _lifeline: ChildStdin,
    pid: u32,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            port,
            running: None,
        };
        server.launch();
        server
    }

    /// One server for the whole test process (started on first use).
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|running| running.pid)
    }

    /// Kills the server at once (SIGKILL): it keeps nothing.
    pub fn kill(&mut self) {
        if let Some(Running {
            mut watchdog,
            _lifeline,
            pid,
        }) = self.running.take()
        {
            signal("KILL", pid);
            // The watchdog ends once its input closes.
            drop(_lifeline);
            let _ = watchdog.wait();
            let deadline = Instant::now() + START_TIMEOUT;
            while ping(self.port) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Kills the server if it runs and starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            signal("STOP", pid);
        }
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            signal("CONT", pid);
        }
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        // The shell prints the server's pid, then waits for the end of its standard input (this
        // process closing the pipe, or ending) and kills the server.
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                "redis-server --port \"$1\" --bind 127.0.0.1 --save '' --appendonly no \
                 --loglevel warning >/dev/null 2>&1 & \
                 echo $!; cat >/dev/null; kill -9 $! 2>/dev/null",
            )
            .arg("redis-watchdog")
            .arg(&port)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let mut pid = String::new();
        let mut stdout = watchdog.stdout.take().expect("the watchdog's output");
        let mut byte = [0_u8; 1];
        while stdout.read(&mut byte).expect("the server's pid") == 1 && byte[0] != b'\n' {
            pid.push(char::from(byte[0]));
        }
        let pid: u32 = pid.trim().parse().expect("the server's pid");
        let lifeline = watchdog.stdin.take().expect("the watchdog's input");
        self.running = Some(Running {
            watchdog,
            _lifeline: lifeline,
            pid,
        });
        let deadline = Instant::now() + START_TIMEOUT;
        while !ping(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A line on this server under `prefix`, with a short timeout for tests, drawing its
    /// numbers from `blocks`.
    pub async fn line(
        &self,
        prefix: &str,
        timeout: Duration,
        blocks: Arc<dyn TicketBlockLeases>,
    ) -> RedisLine {
        RedisLine::connect(
            RedisLineConfig {
                key_prefix: prefix.to_owned(),
                command_timeout: timeout,
                ..RedisLineConfig::new(self.url())
            },
            blocks,
        )
        .await
        .expect("a line on the test server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether a server answers `PING` on `port` within a short time.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0_u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// A key prefix of one test on a server; [`TestKeys::delete`] (or `Drop`) deletes its keys.
#[derive(Debug)]
pub struct TestKeys {
    url: String,
    prefix: String,
    deleted: bool,
}

impl TestKeys {
    /// A prefix nobody else uses, on the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: format!("test:{}:", uuid::Uuid::new_v4().simple()),
            deleted: false,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Deletes every key under the prefix (`SCAN MATCH` + `UNLINK`).
    pub async fn delete(mut self) {
        self.deleted = true;
        if let Err(error) = delete_keys(&self.url, &self.prefix).await {
            tracing::warn!(error = %error, "cannot delete a test's keys");
        }
    }
}

impl Drop for TestKeys {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        // Drop cannot await; a helper thread with a runtime of its own can.
        let helper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                let _ = runtime.block_on(delete_keys(&url, &prefix));
            }
        });
        let _ = helper.join();
    }
}

/// A plain connection to the server at `url`, for tests' raw reads and writes.
pub async fn connect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

/// Every key under `prefix` on the server at `url`, sorted.
pub async fn keys_under(url: &str, prefix: &str) -> redis::RedisResult<Vec<String>> {
    let mut conn = connect(url).await?;
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", glob_escape(prefix)))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys)
}

async fn delete_keys(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let keys = keys_under(url, prefix).await?;
    let mut conn = connect(url).await?;
    for chunk in keys.chunks(500) {
        redis::cmd("UNLINK")
            .arg(chunk)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}

/// `raw` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Ticket blocks leased in this process's memory, with the leases' rules (the block after one
/// is the same for every caller; a new block comes after every block leased): for tests of the
/// line alone. A deployment leases them in PostgreSQL (`PgTicketBlockLeases`).
#[derive(Debug, Default)]
pub struct MemoryTicketBlocks {
    /// The highest block leased, per line.
    highest: Mutex<BTreeMap<LineNo, u32>>,
}

impl MemoryTicketBlocks {
    pub fn shared() -> Arc<dyn TicketBlockLeases> {
        Arc::new(Self::default())
    }
}

#[async_trait]
impl TicketBlockLeases for MemoryTicketBlocks {
    async fn lease(
        &self,
        line: LineNo,
        after: Option<u32>,
    ) -> Result<TicketBlock, RepositoryError> {
        let mut highest = self
            .highest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = match (after, highest.get(&line)) {
            (Some(after), _) => after + 1,
            (None, Some(top)) => top + 1,
            (None, None) => 0,
        };
        let top = highest.entry(line).or_insert(index);
        *top = (*top).max(index);
        let (first, last) = line
            .ticket_block(index)
            .ok_or_else(|| RepositoryError::Unexpected("no block left".into()))?;
        Ok(TicketBlock { index, first, last })
    }
}

/// A ticket of a line as stored in Redis, for audits of tests: its place, user, status and
/// admission instant (µs since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTicket {
    pub place: i64,
    pub user: String,
    pub status: String,
    pub admitted_micros: Option<i64>,
}

/// Every ticket of `line` under `prefix` on the server at `url`, in place order, read in one
/// script (one consistent state of the line).
pub async fn line_tickets(
    url: &str,
    prefix: &str,
    line: LineNo,
) -> redis::RedisResult<Vec<StoredTicket>> {
    let mut conn = connect(url).await?;
    let base = format!("{prefix}{{line:{}}}:", line.get());
    let raw: Vec<Vec<Option<String>>> = redis::Script::new(
        r"
local out = {}
local cursor = '0'
repeat
  local scan = redis.call('SCAN', cursor, 'MATCH', KEYS[1] .. 't:*', 'COUNT', 1000)
  cursor = scan[1]
  for _, key in ipairs(scan[2]) do
    local f = redis.call('HMGET', key, 'user', 'status', 'admitted')
    out[#out + 1] = {string.sub(key, #KEYS[1] + 3), f[1], f[2], f[3]}
  end
until cursor == '0'
return out
",
    )
    .key(base)
    .invoke_async(&mut conn)
    .await?;
    let mut tickets: Vec<StoredTicket> = raw
        .into_iter()
        .filter_map(|fields| {
            let mut fields = fields.into_iter();
            let place = fields.next()??.parse().ok()?;
            Some(StoredTicket {
                place,
                user: fields.next()??,
                status: fields.next()??,
                admitted_micros: fields.next().flatten().and_then(|raw| raw.parse().ok()),
            })
        })
        .collect();
    tickets.sort_by_key(|ticket| ticket.place);
    Ok(tickets)
}
