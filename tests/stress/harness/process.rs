//! `concert-server` processes: spawned from the built binary on free loopback ports, logs captured
//! to a file, killed when dropped (also when a test panics).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use concert_e2e::{ADMIN_KEY, Client, TOKEN_SECRET, TestLine};
use concert_postgres::testing::TestDatabase;
use tokio::process::{Child, Command};

use super::fleet::{Fleet, Recorder};

/// How long a process may take from spawn to `/health/ready` answering 200 (a loaded 2-core
/// machine, a debug build, other test binaries compiling at the same time).
const READY_WITHIN: Duration = Duration::from_secs(90);

/// The `concert-server` binary: `CONCERT_SERVER_BIN`, else `<target>/debug/concert-server`
/// (built with `cargo build --bin concert-server` when missing).
pub fn server_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| locate_binary().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn locate_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CONCERT_SERVER_BIN") {
        let path = PathBuf::from(path);
        ensure!(
            path.is_file(),
            "CONCERT_SERVER_BIN={} is not a file",
            path.display()
        );
        return Ok(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate lives inside the workspace")?
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    let binary = target.join("debug").join("concert-server");
    if !binary.is_file() {
        eprintln!(
            "stress: {} is missing; running `cargo build --bin concert-server`",
            binary.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--bin", "concert-server"])
            .current_dir(&workspace)
            .status()
            .context("running cargo build --bin concert-server")?;
        ensure!(status.success(), "cargo build --bin concert-server failed");
    }
    ensure!(binary.is_file(), "{} was not built", binary.display());
    Ok(binary)
}

/// A free loopback port (bound, read, released; the server binds it a moment later).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = StdTcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The environment every stress server gets; a test overrides what it needs.
fn base_environment(database_url: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url),
        ("TOKEN_SECRET", TOKEN_SECRET),
        ("ADMIN_API_KEY", ADMIN_KEY),
        ("RUST_LOG", "warn"),
        ("LOG_FORMAT", "human"),
        ("DATABASE_POOL_SIZE", "6"),
        ("ADMISSION_INTERVAL_MS", "100"),
        ("SHUTDOWN_GRACE_SECONDS", "2"),
        ("QUEUE_MAX_ACTIVE", "1000"),
        ("QUEUE_ACTIVE_TTL_SECONDS", "600"),
        ("QUEUE_IDLE_TIMEOUT_SECONDS", "120"),
        ("HOLD_TTL_SECONDS", "300"),
        ("MAX_HOLDS_PER_USER", "4"),
        ("MAX_CHARGE_AMOUNT", "10000000"),
        ("MAX_BALANCE", "1000000000"),
        ("DEMO_DATA", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// One `concert-server` process. Dropping it kills the process (SIGKILL).
pub struct Instance {
    pub index: usize,
    addr: SocketAddr,
    environment: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
}

impl Instance {
    /// Spawns the process on a free port and waits until it is ready. A port taken by someone
    /// else between our probe and the server's bind is retried with another.
    async fn start(
        index: usize,
        environment: Vec<(String, String)>,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let mut instance = Self {
                index,
                addr,
                environment: environment.clone(),
                child: None,
                log: log.clone(),
                starts: 0,
            };
            match instance.launch().await {
                Ok(()) => return Ok(instance),
                Err(e) if instance.has_exited() => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("instance {index} did not start")))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    fn has_exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let binary = server_binary()?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        self.starts += 1;
        writeln!(
            log,
            "==== stress: start #{} of instance {} on {} ====",
            self.starts, self.index, self.addr
        )?;
        let stderr: File = log.try_clone()?;
        let child = Command::new(&binary)
            .envs(
                self.environment
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .env("BIND_ADDR", self.addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        self.child = Some(child);
        self.wait_ready(READY_WITHIN).await
    }

    /// Polls `/health/ready` until it answers 200.
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let client = Client::new(self.addr);
        let started = Instant::now();
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "instance {} exited ({status}) before it was ready; its log:\n{}",
                    self.index,
                    self.log_tail(40)
                );
            }
            if let Ok(answer) = client.get("/health/ready", None).await
                && answer.status == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!(
                    "instance {} not ready within {within:?}; its log:\n{}",
                    self.index,
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`: the process dies at once, in the middle of whatever it was doing.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().context("sending SIGKILL")?;
            child.wait().await.context("reaping the killed server")?;
        }
        Ok(())
    }

    /// Starts the process again on the same address and waits until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        ensure!(self.child.is_none(), "instance {} is running", self.index);
        self.launch().await
    }

    /// The last `lines` lines of this instance's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
            let _ = child.try_wait();
        }
    }
}

/// Settings of one cluster.
pub struct ClusterSpec {
    /// Names the test in logs and figures.
    pub name: &'static str,
    pub instances: usize,
    /// Environment overrides (`HOLD_TTL_SECONDS`, `QUEUE_MAX_ACTIVE`...).
    pub environment: Vec<(&'static str, String)>,
    /// The servers' `DATABASE_URL` when it is not the test database's own (a proxy in front).
    pub database_url: Option<String>,
}

impl ClusterSpec {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            instances: 3,
            environment: Vec::new(),
            database_url: None,
        }
    }

    pub fn env(mut self, key: &'static str, value: impl ToString) -> Self {
        self.environment.push((key, value.to_string()));
        self
    }

    pub fn through(mut self, database_url: String) -> Self {
        self.database_url = Some(database_url);
        self
    }
}

/// Several instances over one fresh database, and a recording fleet of clients for them.
///
/// When a test fails (panic or early return), dropping the cluster prints the tail of every
/// instance's log and keeps the log files; [`Cluster::finish`] removes them after a success.
pub struct Cluster {
    pub name: &'static str,
    pub instances: Vec<Instance>,
    pub fleet: Arc<Fleet>,
    database: Option<TestDatabase>,
    /// Where the instances keep the line (`E2E_QUEUE`).
    pub line: Option<TestLine>,
    log_dir: PathBuf,
    finished: bool,
}

impl Cluster {
    pub async fn start(spec: ClusterSpec, database: TestDatabase) -> anyhow::Result<Self> {
        let log_dir = std::env::temp_dir().join(format!(
            "concert-stress-{}-{}",
            spec.name,
            &database.name()[5..13]
        ));
        std::fs::create_dir_all(&log_dir)?;
        let url = spec
            .database_url
            .clone()
            .unwrap_or_else(|| database.url().to_owned());
        let mut environment = base_environment(&url);
        let line = TestLine::create()?;
        environment.extend(
            line.environment()
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value)),
        );
        for (key, value) in &spec.environment {
            environment.retain(|(k, _)| k != key);
            environment.push(((*key).to_owned(), value.clone()));
        }
        let mut cluster = Self {
            name: spec.name,
            instances: Vec::new(),
            fleet: Arc::new(Fleet::new(Vec::new(), Recorder::new())),
            database: Some(database),
            line: Some(line),
            log_dir,
            finished: false,
        };
        // One after the other: the first creates nothing (the database exists) but all run the
        // migration check under its advisory lock; starting them in turn keeps start-up simple.
        for index in 0..spec.instances {
            let log = cluster.log_dir.join(format!("instance-{index}.log"));
            cluster
                .instances
                .push(Instance::start(index, environment.clone(), log).await?);
        }
        let clients = cluster
            .instances
            .iter()
            .map(|i| Client::new(i.addr()))
            .collect();
        cluster.fleet = Arc::new(Fleet::new(clients, Recorder::new()));
        Ok(cluster)
    }

    pub fn database(&self) -> &TestDatabase {
        self.database
            .as_ref()
            .expect("the database lives as long as the cluster")
    }

    /// Stops every process, drops the database and removes the logs (the test passed).
    pub async fn finish(mut self) -> anyhow::Result<()> {
        for instance in &mut self.instances {
            instance.kill().await?;
        }
        if let Some(database) = self.database.take() {
            database.drop_database().await?;
        }
        if let Some(line) = self.line.take() {
            line.remove().await;
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
        self.finished = true;
        Ok(())
    }
}

impl Drop for Cluster {
    /// On failure: a short tail of each instance's log, so that the test's own error (printed
    /// after this) still fits in a CI excerpt; the whole logs stay on disk.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for instance in &mut self.instances {
            if let Some(child) = &mut instance.child {
                let _ = child.start_kill();
            }
        }
        eprintln!(
            "stress test {:?} failed (seed {:#x}); server logs kept in {}",
            self.name,
            super::seed(),
            self.log_dir.display()
        );
        for instance in &self.instances {
            eprintln!(
                "---- instance {} ({}) log tail ----\n{}",
                instance.index,
                instance.addr,
                instance.log_tail(12)
            );
        }
    }
}
