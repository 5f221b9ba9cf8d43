//! The load generator: sets up the benchmark data, runs every scenario against the service and
//! its raw baseline (bare axum for the HTTP-only path, pgbench with the equivalent SQL for the
//! database paths) with the same client concurrency, and prints the table. Loopback only; every
//! run is bounded in time and in requests. `bench/run.sh` starts what it needs.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use concert_bench::client::{Call, Conn};
use concert_bench::cpu::CpuSample;
use concert_bench::fixtures::{self, BenchConcert, BenchUser, Minter};
use concert_bench::measure::{self, Load, Measure, Requests};
use concert_bench::pgbench::PgBench;
use concert_bench::report::{self, Check, Row};
use concert_bench::scenarios::Journey;
use concert_bench::sqlite_raw::SqliteRaw;

#[derive(Parser, Clone)]
#[command(name = "concert-load", about = "Load generator of docs/PERFORMANCE.md")]
struct Args {
    /// The service under test (started with QUEUE_MAX_ACTIVE large enough for every bench user).
    #[arg(long, default_value = "127.0.0.1:28480")]
    server: SocketAddr,
    /// A second service instance on its own database, started with QUEUE_MAX_ACTIVE=1, for the
    /// waiting-user polls (its line never moves).
    #[arg(long, default_value = "127.0.0.1:28482")]
    queue_server: SocketAddr,
    /// The bare axum hello server.
    #[arg(long, default_value = "127.0.0.1:28481")]
    hello: SocketAddr,
    /// The service's database (pgbench baselines run here too).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/concert_bench"
    )]
    database_url: String,
    /// The queue server's database.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/concert_bench_queue"
    )]
    queue_database_url: String,
    /// ADMIN_API_KEY of the service.
    #[arg(long, env = "ADMIN_API_KEY")]
    admin_key: String,
    /// TOKEN_SECRET of the queue server, to sign tokens for tickets inserted with SQL.
    #[arg(long, env = "TOKEN_SECRET")]
    token_secret: String,
    /// Client connections of every scenario and baseline.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per closed-loop scenario and per baseline.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Tickets waiting in line for the large poll run.
    #[arg(long, default_value_t = 1_000_000)]
    waiting: u64,
    /// Process ids of the service instances, for their peak RSS (VmHWM).
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    queue_server_pid: Option<u32>,
    #[arg(long, default_value = "bench/sql")]
    sql_dir: PathBuf,
    #[arg(long, default_value = "/usr/bin/pgbench")]
    pgbench: PathBuf,
    /// Only these scenarios (comma-separated: poll, seats, hold, contention, charge, pay, journey,
    /// join). `sale-open` is bench/run.sh's own part (bench/sale-open.sh): ignored here.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also write the table here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A line printed above the table (machine, load average...).
    #[arg(long, default_value = "")]
    header: String,
    /// Measure the service only: no pgbench and no bare axum baselines (for an older binary,
    /// whose schema the current baselines' SQL may not fit).
    #[arg(long)]
    no_baselines: bool,
    /// Also write each scenario's throughput and p99 here, for a later run's `--before`.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// The `--summary` of a run against another binary (e.g. the commit before), shown beside
    /// this run's figures with the change.
    #[arg(long)]
    before: Option<PathBuf>,
    /// The service on the embedded store (`DATABASE_URL=sqlite://...`, QUEUE_MAX_ACTIVE large
    /// enough for every bench user): its rows are measured too, after the PostgreSQL ones.
    #[arg(long)]
    embedded_server: Option<SocketAddr>,
    /// A second embedded instance on its own file with QUEUE_MAX_ACTIVE=1 and TTLs of a day, for
    /// the waiting-user polls.
    #[arg(long)]
    embedded_queue_server: Option<SocketAddr>,
    /// The store file of `--embedded-server`, which `sqlite-raw` copies for its baselines.
    #[arg(long)]
    embedded_store: Option<PathBuf>,
    #[arg(long)]
    embedded_pid: Option<u32>,
    #[arg(long)]
    embedded_queue_pid: Option<u32>,
    #[arg(long, default_value = "target/release/sqlite-raw")]
    sqlite_raw: PathBuf,
}

impl Args {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }

    fn closed(&self, max_requests: u64) -> Load {
        Load {
            concurrency: self.concurrency,
            duration: Duration::from_secs(self.seconds),
            max_requests,
            rate: None,
        }
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds)
    }

    fn script(&self, name: &str) -> PathBuf {
        self.sql_dir.join(name)
    }
}

fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "[concert-load] {line}");
}

fn brief(name: &str, m: &Measure) {
    say(&format!(
        "{name}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} ok, {} failed{}{}",
        m.throughput(),
        m.quantile_ms(0.5),
        m.quantile_ms(0.99),
        m.ok,
        m.failed,
        m.first_failure
            .as_deref()
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default(),
        m.cpu_per_request_us()
            .map(|(s, d)| format!(", CPU per request: service {s:.0} µs + PostgreSQL {d:.0} µs"))
            .unwrap_or_default()
    ));
}

async fn wait_ready(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(mut conn) = Conn::open(addr).await
            && let Ok(answer) = conn.send(&Call::get(path)).await
            && answer.status.is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{addr}{path} not ready after 30 s")
}

fn vm_hwm_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmHWM in /proc/<pid>/status")
}

fn loopback_only(args: &Args) -> anyhow::Result<()> {
    let embedded = [args.embedded_server, args.embedded_queue_server];
    for addr in [args.server, args.queue_server, args.hello]
        .into_iter()
        .chain(embedded.into_iter().flatten())
    {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "{addr} is not a loopback address: this tool only loads this machine"
        );
    }
    for url in [&args.database_url, &args.queue_database_url] {
        anyhow::ensure!(
            url.contains("@127.0.0.1") || url.contains("@localhost") || url.contains("@[::1]"),
            "{url}: the database must be on this machine"
        );
    }
    Ok(())
}

/// The database name at the end of a PostgreSQL URL.
fn database_name(url: &str) -> Option<&str> {
    url.rsplit('/').next()
}

struct Bench {
    args: Args,
    pgbench: PgBench,
    rows: Vec<Row>,
    checks: Vec<Check>,
    /// The bare axum hello, once measured: the embedded poll's baseline too.
    hello: Option<Measure>,
}

impl Bench {
    async fn pg(&self, script: &str, vars: &[(&str, String)]) -> anyhow::Result<Option<Measure>> {
        self.pg_with(script, vars, self.args.concurrency).await
    }

    /// pgbench running `script` with `clients` connections (nothing with `--no-baselines`).
    async fn pg_with(
        &self,
        script: &str,
        vars: &[(&str, String)],
        clients: usize,
    ) -> anyhow::Result<Option<Measure>> {
        if self.args.no_baselines {
            return Ok(None);
        }
        let m = self
            .pgbench
            .run(
                &self.args.script(script),
                vars,
                clients,
                self.args.duration(),
            )
            .await?;
        brief(&format!("pgbench {script}"), &m);
        Ok(Some(m))
    }

    async fn service<F>(
        &self,
        name: &str,
        addr: SocketAddr,
        load: Load,
        expected: &'static [u16],
        build: F,
    ) -> anyhow::Result<Measure>
    where
        F: Fn(u64) -> Call + Send + Sync + 'static,
    {
        let (pid, database) = if addr == self.args.queue_server {
            (
                self.args.queue_server_pid,
                database_name(&self.args.queue_database_url),
            )
        } else if Some(addr) == self.args.embedded_server {
            (self.args.embedded_pid, None)
        } else if Some(addr) == self.args.embedded_queue_server {
            (self.args.embedded_queue_pid, None)
        } else {
            (self.args.server_pid, database_name(&self.args.database_url))
        };
        let before = CpuSample::take(pid, database);
        let mut m = measure::run(addr, load, Arc::new(Requests { build, expected })).await?;
        if pid.is_some() {
            m.cpu = Some(before.until(&CpuSample::take(pid, database)));
        }
        brief(name, &m);
        Ok(m)
    }

    /// The best (highest throughput) of `runs` runs: other tenants of a shared machine only ever
    /// slow a run down.
    async fn best_of<F>(
        &self,
        runs: usize,
        name: &str,
        addr: SocketAddr,
        expected: &'static [u16],
        build: F,
    ) -> anyhow::Result<Measure>
    where
        F: Fn(u64) -> Call + Clone + Send + Sync + 'static,
    {
        let mut best: Option<Measure> = None;
        for _ in 0..runs {
            let m = self
                .service(
                    name,
                    addr,
                    self.args.closed(u64::MAX),
                    expected,
                    build.clone(),
                )
                .await?;
            if best
                .as_ref()
                .is_none_or(|b| m.throughput() > b.throughput())
            {
                best = Some(m);
            }
        }
        best.context("no run")
    }

    /// A run at 70 % of `peak` per second, for `seconds`, reporting its p99.
    async fn at_70_percent<F>(
        &mut self,
        name: &str,
        addr: SocketAddr,
        peak: f64,
        build: F,
    ) -> anyhow::Result<()>
    where
        F: Fn(u64) -> Call + Send + Sync + 'static,
    {
        let rate = (peak * 0.7).max(1.0);
        let load = Load {
            rate: Some(rate),
            ..self.args.closed(u64::MAX)
        };
        let m = self
            .service(&format!("{name} at 70 %"), addr, load, &[200], build)
            .await?;
        let p99 = m.quantile_ms(0.99);
        self.checks.push(Check {
            what: format!("{name}: p99 at 70 % of peak ({rate:.0}/s, rate-limited)"),
            value: format!("{p99:.2} ms"),
            target: "≤ 25 ms".into(),
            met: p99 <= 25.0 && m.failed == 0,
        });
        Ok(())
    }

    /// The bare axum hello's best of two runs, measured once (nothing with `--no-baselines`).
    async fn hello(&mut self) -> anyhow::Result<Option<Measure>> {
        if self.hello.is_none() && !self.args.no_baselines {
            let hello = self
                .best_of(2, "hello", self.args.hello, &[200], |_| Call::get("/hello"))
                .await?;
            self.hello = Some(hello);
        }
        Ok(self.hello.clone())
    }

    async fn polls(&mut self) -> anyhow::Result<()> {
        let args = self.args.clone();
        let hello = self.hello().await?;
        let db = fixtures::sql(&args.queue_database_url).await?;
        let minter = Minter::new(&args.token_secret);
        fixtures::block_the_line(&db).await?;
        fixtures::insert_waiting(&db, 1000).await?;
        let tokens = Arc::new(fixtures::waiting_tokens(&db, &minter, 1000).await?);
        // Let one admission step (250 ms) see the new tickets before measuring.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let first = Conn::open(args.queue_server)
            .await?
            .send(&Call::get("/v1/queue/status").bearer(tokens[0].as_str()))
            .await?
            .expect(&[200])?;
        anyhow::ensure!(
            first["status"] == "WAITING",
            "queue server: expected a WAITING ticket, got {first}"
        );
        let poll = poll_call;
        let small = self
            .best_of(
                2,
                "poll (1,000 waiting)",
                args.queue_server,
                &[200],
                poll(tokens.clone()),
            )
            .await?;
        let peak = small.throughput();
        self.rows.push(Row {
            scenario: "waiting-user status poll, 1,000 waiting".into(),
            service: small.clone(),
            baseline: hello.map(|m| ("bare axum hello".into(), m)),
            target: Some(0.6),
            unit: "req/s",
        });
        self.at_70_percent("status poll", args.queue_server, peak, poll(tokens.clone()))
            .await?;

        say(&format!(
            "inserting {} more waiting tickets",
            args.waiting - 1000
        ));
        fixtures::insert_waiting(&db, args.waiting - 1000).await?;
        db.batch_execute("VACUUM ANALYZE queue_tickets").await?;
        let spread = Arc::new(fixtures::waiting_tokens(&db, &minter, 1000).await?);
        fixtures::await_no_autovacuum(&db).await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let large = self
            .best_of(
                2,
                "poll (1,000,000 waiting)",
                args.queue_server,
                &[200],
                poll(spread),
            )
            .await?;
        self.rows.push(Row {
            scenario: format!("waiting-user status poll, {} waiting", args.waiting),
            service: large,
            baseline: Some(("the same poll, 1,000 waiting".into(), small)),
            target: Some(0.9),
            unit: "req/s",
        });
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    loopback_only(&args)?;
    let log_dir = std::env::temp_dir().join(format!("concert-bench-{}", std::process::id()));
    let mut bench = Bench {
        pgbench: PgBench {
            binary: args.pgbench.clone(),
            database_url: args.database_url.clone(),
            log_dir: log_dir.clone(),
        },
        args: args.clone(),
        rows: Vec::new(),
        checks: Vec::new(),
        hello: None,
    };
    wait_ready(args.server, "/health/ready").await?;
    if args.wants("poll") {
        wait_ready(args.queue_server, "/health/ready").await?;
        wait_ready(args.hello, "/hello").await?;
    }

    say("creating concerts");
    let mut admin = Conn::open(args.server).await?;
    let key = args.admin_key.as_str();
    let read_concert = fixtures::create_concert(&mut admin, key, "seat list", 1, 50, 1000).await?;
    let hold_concert = fixtures::create_concert(&mut admin, key, "holds", 20, 1000, 1000).await?;
    let contended = fixtures::create_concert(&mut admin, key, "contended", 1, 50, 1000).await?;
    let pay_concert = fixtures::create_concert(&mut admin, key, "payments", 5, 1000, 1000).await?;
    let journey_concert =
        fixtures::create_concert(&mut admin, key, "journeys", 10, 1000, 1000).await?;
    let raw_hold = fixtures::create_concert(&mut admin, key, "raw holds", 20, 1000, 1000).await?;
    let raw_contended =
        fixtures::create_concert(&mut admin, key, "raw contended", 1, 50, 1000).await?;
    let raw_pay = fixtures::create_concert(&mut admin, key, "raw payments", 40, 1000, 1000).await?;
    let db = fixtures::sql(&args.database_url).await?;
    // The setup just wrote some 100,000 seat rows: vacuum and analyze them now, rather than have
    // autovacuum wake up in the middle of a measured run. Only the catalog tables: analyzing the
    // still empty tables (reservations, wallets, ledger, keys, tickets) would record them as empty,
    // and plans cached while they look tiny (sequential scans) would stay until autovacuum
    // re-analyzes them, a minute or more into the run.
    db.batch_execute("VACUUM ANALYZE concerts, concert_dates, seats")
        .await?;
    fixtures::await_no_autovacuum(&db).await?;

    if args.wants("poll") {
        bench.polls().await?;
    }

    // Readers: active users who only read (and race for the contended seats).
    let readers = Arc::new(fixtures::active_users(args.server, 64).await?);

    if args.wants("seats") {
        let concert = read_concert.id;
        let date = fixtures::FIRST_DATE.to_string();
        let seats = {
            let readers = readers.clone();
            let path = format!("/v1/concerts/{concert}/dates/{date}/seats");
            move |n: u64| {
                let user = &readers[usize::try_from(n).unwrap_or(0) % readers.len()];
                Call::get(path.clone()).bearer(user.token.as_str())
            }
        };
        let service = bench
            .service(
                "seats",
                args.server,
                args.closed(u64::MAX),
                &[200],
                seats.clone(),
            )
            .await?;
        let raw = bench
            .pg(
                "seats.sql",
                &[("concert", concert.to_string()), ("date", date.clone())],
            )
            .await?;
        let peak = service.throughput();
        bench.rows.push(Row {
            scenario: "available seats read (50 seats)".into(),
            service,
            baseline: raw.map(|m| ("pgbench seat list query".into(), m)),
            target: Some(0.5),
            unit: "req/s",
        });
        bench
            .at_70_percent("seats read", args.server, peak, seats)
            .await?;
    }

    if args.wants("hold") {
        // Each user holds up to MAX_HOLDS_PER_USER (4) distinct seats: unit n is user n % users.
        let users = Arc::new(fixtures::active_users(args.server, 2500).await?);
        let budget = (users.len() as u64 * 4).min(hold_concert.capacity());
        let hold = hold_call(hold_concert.clone(), users.clone());
        let service = bench
            .service("hold", args.server, args.closed(budget), &[201], hold)
            .await?;
        let raw = if args.no_baselines {
            None
        } else {
            let reservation = dummy_reservation(&db, &raw_hold).await?;
            bench
                .pg(
                    "hold.sql",
                    &[
                        ("concert", raw_hold.id.to_string()),
                        ("dates", raw_hold.dates.to_string()),
                        ("reservation", reservation.to_string()),
                    ],
                )
                .await?
        };
        let raw_transaction = bench
            .pg(
                "hold_cas.sql",
                &[
                    ("concert", raw_hold.id.to_string()),
                    ("dates", raw_hold.dates.to_string()),
                ],
            )
            .await?;
        bench.rows.push(Row {
            scenario: "seat hold, distinct seats".into(),
            service: service.clone(),
            baseline: raw.map(|m| ("pgbench conditional claim UPDATE".into(), m)),
            target: Some(0.5),
            unit: "req/s",
        });
        bench.rows.push(Row {
            scenario: "seat hold, distinct seats (vs its own statements)".into(),
            service,
            baseline: raw_transaction.map(|m| {
                (
                    "pgbench hold statements (load + compare-and-set write)".into(),
                    m,
                )
            }),
            target: None,
            unit: "req/s",
        });
    }

    if args.wants("contention") {
        let concert = contended.id;
        let date = fixtures::FIRST_DATE.to_string();
        let readers = readers.clone();
        let service = bench
            .service(
                "hold (contended)",
                args.server,
                args.closed(u64::MAX),
                &[201, 409],
                move |n| {
                    let user = &readers[usize::try_from(n).unwrap_or(0) % readers.len()];
                    Call::post(
                        "/v1/reservations",
                        format!(
                            "{{\"concertId\":{concert},\"date\":\"{date}\",\"seatNo\":{}}}",
                            n % 8 + 1
                        ),
                    )
                    .bearer(user.token.as_str())
                },
            )
            .await?;
        let raw = if args.no_baselines {
            None
        } else {
            let reservation = dummy_reservation(&db, &raw_contended).await?;
            db.execute(
                "UPDATE seats SET held_by_reservation = $1, held_by_user = '00000000-0000-0000-0000-00000000b0b0', \
                 held_until = now() + interval '1 day' WHERE concert_id = $2 AND seat_no <= 8",
                &[&reservation, &raw_contended.id],
            )
            .await?;
            bench
                .pg(
                    "hold_contended.sql",
                    &[("concert", raw_contended.id.to_string())],
                )
                .await?
        };
        bench.rows.push(Row {
            scenario: "seat hold, 16 clients on 8 seats (409 after the first 8)".into(),
            service,
            baseline: raw.map(|m| ("pgbench claim UPDATE on held seats".into(), m)),
            target: None,
            unit: "req/s",
        });
    }

    if args.wants("charge") {
        let users: Arc<Vec<uuid::Uuid>> =
            Arc::new((0..1000).map(|_| uuid::Uuid::new_v4()).collect());
        let charge = move |n: u64| {
            let user = users[usize::try_from(n).unwrap_or(0) % users.len()];
            Call::post(
                format!("/v1/users/{user}/points/charge"),
                "{\"amount\":1000}",
            )
            .idempotency_key(format!("c-{n}"))
        };
        let service = bench
            .service(
                "charge",
                args.server,
                args.closed(u64::MAX),
                &[200],
                charge.clone(),
            )
            .await?;
        let raw = bench
            .pg("charge.sql", &[("users", "1000".to_owned())])
            .await?;
        let peak = service.throughput();
        bench.rows.push(Row {
            scenario: "points charge (Idempotency-Key)".into(),
            service,
            baseline: raw.map(|m| ("pgbench charge statements".into(), m)),
            target: None,
            unit: "req/s",
        });
        bench
            .at_70_percent("charge", args.server, peak, charge)
            .await?;
    }

    if args.wants("journey") {
        let load = Load {
            concurrency: args.concurrency * 4,
            ..args.closed(journey_concert.capacity())
        };
        let m = measure::run(
            args.server,
            load,
            Arc::new(Journey {
                concert: journey_concert.clone(),
            }),
        )
        .await?;
        brief("journey", &m);
        bench.rows.push(Row {
            scenario: format!(
                "full journey (token → admitted → seats → hold → charge → pay), {} clients",
                load.concurrency
            ),
            service: m,
            baseline: None,
            target: None,
            unit: "journeys/s",
        });
    }

    if args.wants("pay") {
        let count = pay_concert.capacity().min(5000);
        say(&format!(
            "preparing {count} users with a hold and points for the payments"
        ));
        let payers = prepare_payers(args.server, &pay_concert, count).await?;
        let payers = Arc::new(payers);
        let service = bench
            .service(
                "pay",
                args.server,
                args.closed(count),
                &[201],
                move |n: u64| {
                    let (user, reservation) = &payers[usize::try_from(n).unwrap_or(0)];
                    Call::post(
                        "/v1/payments",
                        format!("{{\"reservationId\":{reservation}}}"),
                    )
                    .bearer(user.token.as_str())
                    .idempotency_key(format!("p-{n}"))
                },
            )
            .await?;
        let raw = if args.no_baselines {
            None
        } else {
            say("preparing the raw payments");
            prepare_raw_payments(&db, &raw_pay).await?;
            bench.pg("pay.sql", &[]).await?
        };
        bench.rows.push(Row {
            scenario: "payment (Idempotency-Key)".into(),
            service,
            baseline: raw.map(|m| ("pgbench payment statements".into(), m)),
            target: Some(0.5),
            unit: "req/s",
        });
    }

    if args.wants("join") {
        // New users joining the line at once: every request draws a new place.
        const JOIN_CLIENTS: usize = 64;
        let load = Load {
            concurrency: JOIN_CLIENTS,
            ..args.closed(u64::MAX)
        };
        let join = |_: u64| {
            Call::post(
                "/v1/queue/tokens",
                format!("{{\"userId\":\"{}\"}}", uuid::Uuid::new_v4()),
            )
        };
        let service = bench
            .service("join", args.server, load, &[201], join)
            .await?;
        let raw = bench.pg_with("join.sql", &[], JOIN_CLIENTS).await?;
        bench.rows.push(Row {
            scenario: format!("queue join by new users, {JOIN_CLIENTS} clients"),
            service,
            baseline: raw.map(|m| ("pgbench bare ticket INSERT".into(), m)),
            target: Some(0.5),
            unit: "req/s",
        });
    }

    if let Some(server) = args.embedded_server {
        embedded(&mut bench, server).await?;
    }

    for (name, pid) in [
        ("service instance", args.server_pid),
        ("queue instance (1,000,000 waiting)", args.queue_server_pid),
        ("embedded-store instance", args.embedded_pid),
    ] {
        if let Some(pid) = pid {
            let kib = vm_hwm_kib(pid)?;
            #[allow(clippy::cast_precision_loss)]
            let mib = kib as f64 / 1024.0;
            bench.checks.push(Check {
                what: format!("peak RSS (VmHWM) of the {name}"),
                value: format!("{mib:.1} MiB"),
                target: "≤ 150 MB".into(),
                met: kib * 1024 <= 150_000_000,
            });
        }
    }

    if let Some(summary) = &args.summary {
        std::fs::write(summary, report::summary(&bench.rows))
            .with_context(|| format!("writing {}", summary.display()))?;
    }
    let before = match &args.before {
        Some(path) => report::parse_summary(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?,
        None => report::Before::default(),
    };
    let table = report::render(&bench.rows, &bench.checks, &args.header, &before);
    std::io::stdout().lock().write_all(table.as_bytes())?;
    if let Some(out) = &args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    let _ = std::fs::remove_dir_all(log_dir);
    Ok(())
}

/// The embedded store's rows: the same requests on a service over one SQLite file, each beside
/// `sqlite-raw` running the adapter's statements for that request on a copy of the file (a
/// waiting user's poll reads no store, so its baseline is the bare axum hello, as on PostgreSQL).
/// Fixtures go through the HTTP API only: nothing writes the service's file behind its back.
async fn embedded(bench: &mut Bench, server: SocketAddr) -> anyhow::Result<()> {
    const LABEL: &str = " (embedded SQLite)";
    let args = bench.args.clone();
    let raw = match &args.embedded_store {
        Some(store) if !args.no_baselines => Some(SqliteRaw {
            binary: args.sqlite_raw.clone(),
            store: store.clone(),
        }),
        _ => None,
    };
    let raw = raw.as_ref();
    wait_ready(server, "/health/ready").await?;
    say("embedded store: creating concerts");
    let mut admin = Conn::open(server).await?;
    let key = args.admin_key.as_str();
    let read_concert = fixtures::create_concert(&mut admin, key, "seat list", 1, 50, 1000).await?;
    let hold_concert = fixtures::create_concert(&mut admin, key, "holds", 20, 1000, 1000).await?;
    let pay_concert = fixtures::create_concert(&mut admin, key, "payments", 5, 1000, 1000).await?;
    let raw_hold = fixtures::create_concert(&mut admin, key, "raw holds", 20, 1000, 1000).await?;
    let raw_pay = fixtures::create_concert(&mut admin, key, "raw payments", 20, 1000, 1000).await?;

    if args.wants("poll")
        && let Some(queue) = args.embedded_queue_server
    {
        wait_ready(queue, "/health/ready").await?;
        let hello = bench.hello().await?;
        // The first user takes the only active slot and keeps it (its instance's TTLs are a
        // day), so the 1,000 who join after it wait, as on the PostgreSQL queue instance.
        fixtures::active_users(queue, 1).await?;
        let waiting = fixtures::joined_users(queue, 1000).await?;
        let tokens: Arc<Vec<String>> = Arc::new(waiting.into_iter().map(|u| u.token).collect());
        let first = Conn::open(queue)
            .await?
            .send(&Call::get("/v1/queue/status").bearer(tokens[0].as_str()))
            .await?
            .expect(&[200])?;
        anyhow::ensure!(
            first["status"] == "WAITING",
            "embedded queue server: expected a WAITING ticket, got {first}"
        );
        let service = bench
            .best_of(
                2,
                "poll (1,000 waiting, embedded)",
                queue,
                &[200],
                poll_call(tokens),
            )
            .await?;
        bench.rows.push(Row {
            scenario: format!("waiting-user status poll, 1,000 waiting{LABEL}"),
            service,
            baseline: hello.map(|m| ("bare axum hello".into(), m)),
            target: None,
            unit: "req/s",
        });
    }

    if args.wants("seats") {
        let readers = Arc::new(fixtures::active_users(server, 64).await?);
        let date = fixtures::FIRST_DATE.to_string();
        let path = format!("/v1/concerts/{}/dates/{date}/seats", read_concert.id);
        let service = bench
            .service(
                "seats (embedded)",
                server,
                args.closed(u64::MAX),
                &[200],
                move |n: u64| {
                    let user = &readers[usize::try_from(n).unwrap_or(0) % readers.len()];
                    Call::get(path.clone()).bearer(user.token.as_str())
                },
            )
            .await?;
        let concert = read_concert.id.to_string();
        let baseline = raw_baseline(
            raw,
            &args,
            &["seats", "--concert", &concert, "--date", &date],
        )
        .await?;
        bench.rows.push(Row {
            scenario: format!("available seats read (50 seats){LABEL}"),
            service,
            baseline: baseline.map(|m| ("sqlite-raw seat list query".into(), m)),
            target: None,
            unit: "req/s",
        });
    }

    if args.wants("hold") {
        let users = Arc::new(fixtures::active_users(server, 2500).await?);
        let budget = (users.len() as u64 * 4).min(hold_concert.capacity());
        let service = bench
            .service(
                "hold (embedded)",
                server,
                args.closed(budget),
                &[201],
                hold_call(hold_concert.clone(), users),
            )
            .await?;
        let (concert, dates) = (raw_hold.id.to_string(), raw_hold.dates.to_string());
        let baseline = raw_baseline(
            raw,
            &args,
            &["hold", "--concert", &concert, "--dates", &dates],
        )
        .await?;
        bench.rows.push(Row {
            scenario: format!("seat hold, distinct seats{LABEL}"),
            service,
            baseline: baseline.map(|m| ("sqlite-raw hold statements (load + save)".into(), m)),
            target: None,
            unit: "req/s",
        });
    }

    if args.wants("charge") {
        let users: Arc<Vec<uuid::Uuid>> =
            Arc::new((0..1000).map(|_| uuid::Uuid::new_v4()).collect());
        let service = bench
            .service(
                "charge (embedded)",
                server,
                args.closed(u64::MAX),
                &[200],
                move |n: u64| {
                    let user = users[usize::try_from(n).unwrap_or(0) % users.len()];
                    Call::post(
                        format!("/v1/users/{user}/points/charge"),
                        "{\"amount\":1000}",
                    )
                    .idempotency_key(format!("ec-{n}"))
                },
            )
            .await?;
        let baseline = raw_baseline(raw, &args, &["charge", "--users", "1000"]).await?;
        bench.rows.push(Row {
            scenario: format!("points charge (Idempotency-Key){LABEL}"),
            service,
            baseline: baseline.map(|m| ("sqlite-raw charge statements".into(), m)),
            target: None,
            unit: "req/s",
        });
    }

    if args.wants("pay") {
        let count = pay_concert.capacity().min(5000);
        say(&format!(
            "embedded store: preparing {count} users with a hold and points for the payments"
        ));
        let payers = Arc::new(prepare_payers(server, &pay_concert, count).await?);
        let service = bench
            .service(
                "pay (embedded)",
                server,
                args.closed(count),
                &[201],
                move |n: u64| {
                    let (user, reservation) = &payers[usize::try_from(n).unwrap_or(0)];
                    Call::post(
                        "/v1/payments",
                        format!("{{\"reservationId\":{reservation}}}"),
                    )
                    .bearer(user.token.as_str())
                    .idempotency_key(format!("ep-{n}"))
                },
            )
            .await?;
        let (concert, dates) = (raw_pay.id.to_string(), raw_pay.dates.to_string());
        let payments = raw_pay.capacity().to_string();
        let baseline = raw_baseline(
            raw,
            &args,
            &[
                "pay",
                "--concert",
                &concert,
                "--dates",
                &dates,
                "--count",
                &payments,
            ],
        )
        .await?;
        bench.rows.push(Row {
            scenario: format!("payment (Idempotency-Key){LABEL}"),
            service,
            baseline: baseline.map(|m| ("sqlite-raw payment statements".into(), m)),
            target: None,
            unit: "req/s",
        });
    }
    Ok(())
}

/// `sqlite-raw` running `scenario` for the run's duration (nothing without a store to copy or
/// with `--no-baselines`).
async fn raw_baseline(
    raw: Option<&SqliteRaw>,
    args: &Args,
    scenario: &[&str],
) -> anyhow::Result<Option<Measure>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let m = raw
        .run(
            scenario.iter().map(|s| (*s).to_owned()).collect(),
            args.duration(),
        )
        .await?;
    brief(&format!("sqlite-raw {}", scenario[0]), &m);
    Ok(Some(m))
}

/// A waiting user's status poll, the `n`-th on the `n % len`-th token.
fn poll_call(tokens: Arc<Vec<String>>) -> impl Fn(u64) -> Call + Clone + Send + Sync + 'static {
    move |n: u64| {
        let i = usize::try_from(n).unwrap_or(0) % tokens.len();
        Call::get("/v1/queue/status").bearer(tokens[i].as_str())
    }
}

fn hold_call(
    concert: BenchConcert,
    users: Arc<Vec<BenchUser>>,
) -> impl Fn(u64) -> Call + Clone + Send + Sync + 'static {
    move |n: u64| {
        let user = &users[usize::try_from(n).unwrap_or(0) % users.len()];
        let (date, seat) = concert.seat(n);
        Call::post(
            "/v1/reservations",
            format!(
                "{{\"concertId\":{},\"date\":\"{date}\",\"seatNo\":{seat}}}",
                concert.id
            ),
        )
        .bearer(user.token.as_str())
    }
}

/// A reservation row the raw claim UPDATEs can point their hold at (the foreign key needs one).
async fn dummy_reservation(
    db: &tokio_postgres::Client,
    concert: &BenchConcert,
) -> anyhow::Result<i64> {
    let row = db
        .query_one(
            "INSERT INTO reservations (user_id, concert_id, date, seat_no, price, status, \
                                       expires_at, created_at, updated_at) \
             VALUES ('00000000-0000-0000-0000-00000000b0b0', $1, DATE '2030-01-01', 50, 0, \
                     'CANCELLED', now(), now(), now()) RETURNING id",
            &[&concert.id],
        )
        .await
        .context("inserting the dummy reservation")?;
    Ok(row.get(0))
}

/// `count` users, each ACTIVE with one hold on the pay concert and the points to pay it.
async fn prepare_payers(
    server: SocketAddr,
    concert: &BenchConcert,
    count: u64,
) -> anyhow::Result<Vec<(BenchUser, i64)>> {
    let users = fixtures::active_users(server, usize::try_from(count)?).await?;
    let items: Vec<(u64, BenchUser)> = (0..count).zip(users).collect();
    let concert = concert.clone();
    fixtures::parallel(
        server,
        items,
        8,
        move |mut conn, (n, user): (u64, BenchUser)| {
            let concert = concert.clone();
            async move {
                let (date, seat) = concert.seat(n);
                let hold = conn
                    .send(
                        &Call::post(
                            "/v1/reservations",
                            format!(
                                "{{\"concertId\":{},\"date\":\"{date}\",\"seatNo\":{seat}}}",
                                concert.id
                            ),
                        )
                        .bearer(user.token.as_str()),
                    )
                    .await?
                    .expect(&[201])
                    .context("payer's hold")?;
                let reservation = hold["reservationId"].as_i64().context("reservationId")?;
                conn.send(&Call::post(
                    format!("/v1/users/{}/points/charge", user.id),
                    "{\"amount\":100000}",
                ))
                .await?
                .expect(&[200])
                .context("payer's points")?;
                Ok((conn, (user, reservation)))
            }
        },
    )
    .await
}

/// Held reservations, funded wallets and ACTIVE tickets for pgbench's payment transactions, all
/// on their own concert, numbered 1.. in `bench_pay` for `pay.sql` to take in turn.
async fn prepare_raw_payments(
    db: &tokio_postgres::Client,
    concert: &BenchConcert,
) -> anyhow::Result<()> {
    let count = i64::try_from(concert.capacity())?;
    let sql = format!(
        "BEGIN;
         CREATE TABLE bench_pay (n bigint PRIMARY KEY, reservation bigint NOT NULL, ticket bigint NOT NULL);
         CREATE SEQUENCE bench_pay_seq;
         CREATE TEMP TABLE raw_payers AS
             SELECT n, md5('raw-payer-' || n)::uuid AS user_id FROM generate_series(1, {count}) n;
         INSERT INTO wallets (user_id, balance, updated_at)
             SELECT user_id, 100000, now() FROM raw_payers;
         INSERT INTO reservations (user_id, concert_id, date, seat_no, price, status, expires_at,
                                   created_at, updated_at)
             SELECT user_id, {concert}, DATE '2030-01-01' + ((n - 1) / 1000)::int,
                    ((n - 1) % 1000 + 1)::int, 1000, 'HELD', now() + interval '1 hour', now(), now()
             FROM raw_payers;
         UPDATE seats s SET held_by_reservation = r.id, held_by_user = r.user_id,
                            held_until = r.expires_at
             FROM reservations r
             WHERE r.concert_id = {concert} AND s.concert_id = {concert} AND s.date = r.date
               AND s.seat_no = r.seat_no;
         INSERT INTO queue_tickets (user_id, status, issued_at, admitted_at, active_until, last_seen)
             SELECT user_id, 'ACTIVE', now(), now(), now() + interval '1 hour', now() FROM raw_payers;
         INSERT INTO bench_pay (n, reservation, ticket)
             SELECT p.n, r.id, t.ticket FROM raw_payers p
             JOIN reservations r ON r.user_id = p.user_id AND r.concert_id = {concert}
             JOIN queue_tickets t ON t.user_id = p.user_id AND t.status = 'ACTIVE';
         COMMIT;",
        concert = concert.id,
    );
    db.batch_execute(&sql)
        .await
        .context("preparing the raw payments")?;
    db.batch_execute("VACUUM ANALYZE wallets, reservations, seats, queue_tickets, bench_pay")
        .await
        .context("analyzing after the raw payments' setup")
}
