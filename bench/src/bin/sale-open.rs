//! The sale-open benchmark of docs/PERFORMANCE.md: a burst of new users joining the `default`
//! room's line through several instances at once, then a check of the line they formed, beside
//! the raw limits of the store. `bench/sale-open.sh` starts the instances and the stores and runs
//! each part:
//!
//! ```text
//! sale-open burst --servers 127.0.0.1:28500,... --users 1000000 --line PostgreSQL --out pg.json
//! sale-open pgbench --database-url postgres://... --script bench/sql/join.sql --out pg-raw.json
//! sale-open redis --port 28510 [--script bench/redis/join.lua] --out incr.json
//! sale-open report --postgres pg.json --postgres-baseline pg-raw.json ...
//! ```

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use concert_bench::client::{Call, Conn};
use concert_bench::cpu::CpuSample;
use concert_bench::pgbench::PgBench;
use concert_bench::redis_bench::RedisBenchmark;
use concert_bench::sale_open::{self, Seen};
use concert_bench::sale_open_report::{self, Baseline, CpuPerJoin, Figures, Leg, Sale};
use concert_token::HmacTokenSigner;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Parser)]
#[command(
    name = "sale-open",
    about = "Sale-open benchmark of docs/PERFORMANCE.md"
)]
struct Args {
    #[command(subcommand)]
    part: Part,
}

#[derive(Subcommand)]
enum Part {
    /// New users join the `default` room's line through every server at once; then every
    /// token's status is read and the line checked.
    Burst(BurstArgs),
    /// pgbench running one SQL file (the raw ticket INSERT) for some seconds.
    Pgbench {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value = "/usr/bin/pgbench")]
        pgbench: PathBuf,
        #[arg(long, default_value = "bench/sql/join.sql")]
        script: PathBuf,
        #[arg(long, default_value_t = 48)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The row's name in the table.
        #[arg(long, default_value = "pgbench ticket INSERT (bench/sql/join.sql)")]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// redis-benchmark against a Redis server on 127.0.0.1: `INCR`, or an `EVAL` of `--script`.
    Redis {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value = "/usr/bin/redis-benchmark")]
        redis_benchmark: PathBuf,
        /// A Lua script to run with EVAL (its keys: `--keys`; its arguments: a new user
        /// `u__rand_int__` and the time in milliseconds); without it, `INCR`.
        #[arg(long)]
        script: Option<PathBuf>,
        #[arg(long, value_delimiter = ',')]
        keys: Vec<String>,
        #[arg(long, default_value_t = 48)]
        clients: usize,
        #[arg(long, default_value_t = 1_000_000)]
        requests: u64,
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Renders the table from the other parts' files.
    Report {
        #[arg(long)]
        header: String,
        #[arg(long)]
        postgres: Option<PathBuf>,
        #[arg(long)]
        postgres_baseline: Vec<PathBuf>,
        #[arg(long)]
        redis: Option<PathBuf>,
        /// Why the Redis line was not measured.
        #[arg(long)]
        redis_missing: Option<String>,
        #[arg(long)]
        redis_baseline: Vec<PathBuf>,
        /// Also write the table here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct BurstArgs {
    /// The instances, comma-separated; connection i goes to instance i mod their number.
    #[arg(long, value_delimiter = ',', required = true)]
    servers: Vec<SocketAddr>,
    /// The line's name in the table (`PostgreSQL`, `Redis`).
    #[arg(long)]
    line: String,
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Client connections in all, spread over the instances.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// TOKEN_SECRET of the instances, to read the ticket each token names.
    #[arg(long, env = "TOKEN_SECRET", hide_env_values = true)]
    token_secret: String,
    /// ADMIN_API_KEY of the instances, to read the `default` room's maxActive and figures.
    #[arg(long, env = "ADMIN_API_KEY", hide_env_values = true)]
    admin_key: String,
    /// Process ids of the instances, for their CPU time.
    #[arg(long, value_delimiter = ',')]
    instance_pids: Vec<u32>,
    /// The instances' database, for the CPU time of the PostgreSQL backends serving them.
    #[arg(long)]
    database: Option<String>,
    /// Another store process (the Redis server), whose CPU time counts as the store's too.
    #[arg(long)]
    store_pid: Option<u32>,
    /// Milliseconds to wait after the burst before reading the statuses, so that every
    /// instance's copy of the line (refreshed every ADMISSION_INTERVAL_MS) is up to date.
    #[arg(long, default_value_t = 1500)]
    settle_ms: u64,
    #[arg(long)]
    out: PathBuf,
}

fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "[sale-open] {line}");
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&raw).with_context(|| format!("parsing {}", path.display()))
}

async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(mut conn) = Conn::open(addr).await
            && let Ok(answer) = conn.send(&Call::get("/health/ready")).await
            && answer.status.is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{addr} not ready after 30 s")
}

/// The `default` room as `addr` reports it (GET /v1/admin/rooms/default).
async fn default_room(addr: SocketAddr, admin_key: &str) -> anyhow::Result<serde_json::Value> {
    Conn::open(addr)
        .await?
        .send(&Call::get("/v1/admin/rooms/default").bearer(admin_key))
        .await?
        .expect(&[200])
        .context("reading the default room")
}

/// CPU time so far of the generator, the instances and the store.
struct Cpu {
    generator: CpuSample,
    instances: Vec<CpuSample>,
    backends: CpuSample,
    store: CpuSample,
}

impl Cpu {
    fn take(args: &BurstArgs) -> Self {
        Self {
            generator: CpuSample::take(Some(std::process::id()), None),
            instances: args
                .instance_pids
                .iter()
                .map(|pid| CpuSample::take(Some(*pid), None))
                .collect(),
            backends: CpuSample::take(None, args.database.as_deref()),
            store: CpuSample::take(args.store_pid, None),
        }
    }

    /// Microseconds per placed user from `self` to `later`.
    fn per_join(&self, later: &Self, placed: u64) -> CpuPerJoin {
        #[allow(clippy::cast_precision_loss)]
        let per = |d: Duration| d.as_secs_f64() * 1e6 / placed.max(1) as f64;
        let instances = self
            .instances
            .iter()
            .zip(&later.instances)
            .map(|(a, b)| a.until(b).0)
            .sum();
        CpuPerJoin {
            generator: per(self.generator.until(&later.generator).0),
            instances: per(instances),
            store: per(self.backends.until(&later.backends).1 + self.store.until(&later.store).0),
        }
    }
}

async fn burst(args: BurstArgs) -> anyhow::Result<()> {
    for addr in &args.servers {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "{addr} is not a loopback address: this tool only loads this machine"
        );
        wait_ready(*addr).await?;
    }
    let room = default_room(args.servers[0], &args.admin_key).await?;
    let max_active = room["maxActive"]
        .as_u64()
        .context("maxActive of the default room")?;
    // Users of two runs on one store never collide.
    let run = uuid::Uuid::new_v4().as_u64_pair().0;
    say(&format!(
        "{} line: {} new users join through {} instances on {} connections (maxActive {max_active})",
        args.line,
        sale_open_report::grouped(args.users),
        args.servers.len(),
        args.concurrency
    ));
    let before = Cpu::take(&args);
    let line = args.line.clone();
    let last = std::sync::Mutex::new((Duration::ZERO, 0_u64));
    let burst = sale_open::burst(
        &args.servers,
        args.concurrency,
        args.users,
        run,
        move |at, placed| {
            let mut last = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            #[allow(clippy::cast_precision_loss)]
            let recent = (placed - last.1) as f64 / (at - last.0).as_secs_f64().max(1e-3);
            *last = (at, placed);
            say(&format!(
                "{line} line: {} placed after {:.0} s ({recent:.0}/s in the last interval)",
                sale_open_report::grouped(placed),
                at.as_secs_f64()
            ));
        },
    )
    .await?;
    let after = Cpu::take(&args);
    let m = &burst.measure;
    let unplaced = burst.unplaced();
    say(&format!(
        "{} line: {:.0} joins/s, p50 {:.2} ms, p99 {:.2} ms, all placed after {:.1} s, {} failed \
         attempts, {unplaced} unplaced{}",
        args.line,
        m.throughput(),
        m.quantile_ms(0.5),
        m.quantile_ms(0.99),
        m.elapsed.as_secs_f64(),
        m.failed,
        m.first_failure
            .as_deref()
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default()
    ));
    let cpu = (!args.instance_pids.is_empty()).then(|| before.per_join(&after, m.ok));

    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let room_after = default_room(args.servers[0], &args.admin_key)
        .await
        .map(|r| {
            format!(
                "issued {}, waiting {}, active {}",
                r["issued"], r["waiting"], r["active"]
            )
        })
        .ok();
    say(&format!(
        "checking the line: every user's status ({} polls); the room says {}",
        sale_open_report::grouped(args.users),
        room_after.as_deref().unwrap_or("?")
    ));
    let checked = tokio::time::Instant::now();
    let tokens = Arc::new(burst.tokens);
    let (seen, odd) = sale_open::statuses(&args.servers, args.concurrency, tokens.clone()).await?;
    let check_seconds = checked.elapsed().as_secs_f64();
    let signer = HmacTokenSigner::new(args.token_secret.as_bytes());
    let tickets = sale_open::tickets(&tokens, &signer, run);
    let expected_active = max_active.min(args.users);
    let mut check = sale_open::check_line(
        &seen,
        &tickets,
        sale_open::first_ticket(&tickets),
        expected_active,
    );
    if let Some(odd) = odd
        && seen.contains(&Seen::Other)
    {
        check
            .problems
            .push(format!("first odd status answer: {odd}"));
    }
    say(&format!(
        "line check {}: {} ACTIVE, {} WAITING, in {check_seconds:.1} s{}",
        if check.passed() { "passed" } else { "FAILED" },
        check.active,
        check.waiting,
        if check.passed() {
            String::new()
        } else {
            format!(": {}", check.problems.join("; "))
        }
    ));
    let mut leg = Leg {
        line: args.line.clone(),
        users: args.users,
        instances: args.servers.len(),
        connections: args.concurrency,
        max_active,
        joins: Figures::of(m),
        unplaced,
        active: 0,
        waiting: 0,
        problems: Vec::new(),
        check_seconds,
        room_after,
        cpu,
    };
    leg.set_check(&check);
    write_json(&args.out, &leg)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().part {
        Part::Burst(args) => burst(args).await,
        Part::Pgbench {
            database_url,
            pgbench,
            script,
            clients,
            seconds,
            name,
            out,
        } => {
            let log_dir = std::env::temp_dir().join(format!("sale-open-{}", std::process::id()));
            let runner = PgBench {
                binary: pgbench,
                database_url,
                log_dir: log_dir.clone(),
            };
            let m = runner
                .run(&script, &[], clients, Duration::from_secs(seconds))
                .await?;
            let _ = std::fs::remove_dir_all(log_dir);
            let figures = Figures::of(&m);
            say(&format!(
                "{name}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {clients} clients",
                figures.per_second, figures.p50_ms, figures.p99_ms
            ));
            write_json(
                &out,
                &Baseline {
                    name,
                    clients,
                    figures,
                },
            )
        }
        Part::Redis {
            port,
            redis_benchmark,
            script,
            keys,
            clients,
            requests,
            name,
            out,
        } => {
            let runner = RedisBenchmark {
                binary: redis_benchmark,
                port,
                clients,
                requests,
            };
            let figures = match script {
                Some(path) => {
                    let lua = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    runner
                        .eval(&lua, &keys, &["u__rand_int__", &now.to_string()])
                        .await?
                }
                None => runner.incr().await?,
            };
            let figures = Figures::of_redis(&figures);
            say(&format!(
                "{name}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {clients} clients",
                figures.per_second, figures.p50_ms, figures.p99_ms
            ));
            write_json(
                &out,
                &Baseline {
                    name,
                    clients,
                    figures,
                },
            )
        }
        Part::Report {
            header,
            postgres,
            postgres_baseline,
            redis,
            redis_missing,
            redis_baseline,
            out,
        } => {
            let sale = Sale {
                header,
                postgres: postgres.as_deref().map(read_json).transpose()?,
                postgres_baselines: postgres_baseline
                    .iter()
                    .map(|p| read_json(p))
                    .collect::<anyhow::Result<_>>()?,
                redis: redis.as_deref().map(read_json).transpose()?,
                redis_missing,
                redis_baselines: redis_baseline
                    .iter()
                    .map(|p| read_json(p))
                    .collect::<anyhow::Result<_>>()?,
            };
            let table = sale_open_report::render(&sale);
            std::io::stdout().lock().write_all(table.as_bytes())?;
            if let Some(out) = out {
                std::fs::write(&out, &table)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            Ok(())
        }
    }
}
