//! The event-stream benchmark of docs/PERFORMANCE.md: many clients watch their tokens through
//! `GET /v1/queue/events` on one instance. It measures the instance's CPU and memory while the
//! line stands still and while it moves, and the delay from each admission (its `activeUntil`
//! less the active time) to the `ACTIVE` event at the client. `bench/events.sh` starts the
//! instance.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use concert_bench::cpu::CpuSample;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{Mutex, Semaphore, watch};
use uuid::Uuid;

#[derive(Parser, Clone)]
#[command(
    name = "events-load",
    about = "Event-stream benchmark of docs/PERFORMANCE.md"
)]
struct Args {
    /// The instance's base URL.
    #[arg(long, default_value = "http://127.0.0.1:28483")]
    server: String,
    /// Its process id, for CPU time and memory.
    #[arg(long)]
    server_pid: u32,
    /// Its database's name, for the CPU time of the PostgreSQL backends serving it.
    #[arg(long, default_value = "concert_events")]
    database: String,
    /// Streams to open (one user each).
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// The instance's QUEUE_MAX_ACTIVE.
    #[arg(long, default_value_t = 100)]
    max_active: usize,
    /// The instance's QUEUE_ACTIVE_TTL_SECONDS (to tell when a token was admitted).
    #[arg(long, default_value_t = 600)]
    active_ttl_seconds: i64,
    /// How long an admitted user stays before leaving, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    stay_ms: u64,
    #[arg(long, default_value_t = 10)]
    still_seconds: u64,
    #[arg(long, default_value_t = 20)]
    moving_seconds: u64,
}

/// What every stream reports.
#[derive(Default)]
struct Counts {
    events: AtomicU64,
    admitted: AtomicU64,
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS")
}

struct Phase {
    name: &'static str,
    seconds: f64,
    cpu_percent: f64,
    pg_cpu_percent: f64,
    rss_mib: f64,
    events: u64,
    admitted: u64,
}

async fn measure(
    name: &'static str,
    args: &Args,
    counts: &Counts,
    seconds: u64,
) -> anyhow::Result<Phase> {
    let events = counts.events.load(Ordering::Relaxed);
    let admitted = counts.admitted.load(Ordering::Relaxed);
    let cpu = CpuSample::take(Some(args.server_pid), Some(&args.database));
    let started = std::time::Instant::now();
    let mut rss_peak = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        rss_peak = rss_peak.max(rss_kib(args.server_pid)?);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (server, database) = cpu.until(&CpuSample::take(
        Some(args.server_pid),
        Some(&args.database),
    ));
    #[allow(clippy::cast_precision_loss)]
    Ok(Phase {
        name,
        seconds: elapsed,
        cpu_percent: 100.0 * server.as_secs_f64() / elapsed,
        pg_cpu_percent: 100.0 * database.as_secs_f64() / elapsed,
        rss_mib: rss_peak as f64 / 1024.0,
        events: counts.events.load(Ordering::Relaxed) - events,
        admitted: counts.admitted.load(Ordering::Relaxed) - admitted,
    })
}

/// One watching user: reads its stream; once admitted (and the line is moving), records the
/// delay since its admission, stays a while and leaves.
#[allow(clippy::too_many_arguments)]
async fn watch_one(
    http: reqwest::Client,
    args: Arc<Args>,
    token: String,
    counts: Arc<Counts>,
    delays: Arc<Mutex<Histogram<u64>>>,
    opened: Arc<Semaphore>,
    mut moving: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut response = http
        .get(format!("{}/v1/queue/events", args.server))
        .bearer_auth(&token)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("stream refused: {}", response.status());
    }
    let mut first = true;
    let mut buffered = String::new();
    while let Some(chunk) = response.chunk().await? {
        buffered.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = buffered.find("\n\n") {
            let event: String = buffered.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|line| line.strip_prefix("data: ")) else {
                continue;
            };
            counts.events.fetch_add(1, Ordering::Relaxed);
            if first {
                first = false;
                opened.add_permits(1);
            }
            let status: Value = serde_json::from_str(data)?;
            if status["status"] != "ACTIVE" {
                continue;
            }
            // Admitted: wait for the moving phase (the first ones were admitted on arrival).
            let received = OffsetDateTime::now_utc();
            let until = status["activeUntil"].as_str().context("activeUntil")?;
            let until =
                OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339)?;
            let admitted = until - time::Duration::seconds(args.active_ttl_seconds);
            if *moving.borrow() {
                counts.admitted.fetch_add(1, Ordering::Relaxed);
                let micros = (received - admitted).whole_microseconds().max(0);
                delays
                    .lock()
                    .await
                    .record(u64::try_from(micros).unwrap_or(u64::MAX))?;
            } else {
                moving.wait_for(|moving| *moving).await?;
            }
            tokio::time::sleep(Duration::from_millis(args.stay_ms)).await;
            http.delete(format!("{}/v1/queue/tokens/current", args.server))
                .bearer_auth(&token)
                .send()
                .await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.streams + 64)
        .build()?;

    // Every user takes a token; the first `max_active` are admitted on arrival.
    let joins = Arc::new(Semaphore::new(64));
    let mut joining = Vec::with_capacity(args.streams);
    for _ in 0..args.streams {
        let (http, args, joins) = (http.clone(), Arc::clone(&args), Arc::clone(&joins));
        joining.push(tokio::spawn(async move {
            let _permit = joins.acquire().await?;
            let answer: Value = http
                .post(format!("{}/v1/queue/tokens", args.server))
                .json(&json!({ "userId": Uuid::new_v4().to_string() }))
                .send()
                .await?
                .json()
                .await?;
            answer["token"]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no token: {answer}"))
        }));
    }
    let mut tokens = Vec::with_capacity(args.streams);
    for join in joining {
        tokens.push(join.await??);
    }

    // Open every stream, 256 at a time, each counted once its first event arrived.
    let counts = Arc::new(Counts::default());
    let delays = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let (moving_tx, moving) = watch::channel(false);
    let opened = Arc::new(Semaphore::new(0));
    let opening = Instant::now();
    let mut streams = Vec::with_capacity(args.streams);
    for (n, token) in tokens.into_iter().enumerate() {
        if n >= 256 {
            opened.acquire().await?.forget();
        }
        streams.push(tokio::spawn(watch_one(
            http.clone(),
            Arc::clone(&args),
            token,
            Arc::clone(&counts),
            Arc::clone(&delays),
            Arc::clone(&opened),
            moving.clone(),
        )));
    }
    let _ = opened
        .acquire_many(256.min(u32::try_from(args.streams).unwrap_or(256)))
        .await?;
    let opened_in = opening.elapsed();

    let still = measure("standing still", &args, &counts, args.still_seconds).await?;
    moving_tx.send(true)?;
    let moving = measure("moving", &args, &counts, args.moving_seconds).await?;
    let delays = delays.lock().await.clone();
    for stream in streams {
        stream.abort();
    }

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} streams open on one instance (opened in {:.1} s; QUEUE_MAX_ACTIVE={}, admitted users leave after {} ms)\n",
        args.streams,
        opened_in.as_secs_f64(),
        args.max_active,
        args.stay_ms
    )?;
    writeln!(
        out,
        "| phase | seconds | instance CPU | PostgreSQL CPU | instance RSS (peak) | events delivered | admissions |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|")?;
    for phase in [&still, &moving] {
        writeln!(
            out,
            "| {} | {:.1} | {:.0} % of a core | {:.0} % of a core | {:.0} MiB | {} ({:.0}/s) | {} |",
            phase.name,
            phase.seconds,
            phase.cpu_percent,
            phase.pg_cpu_percent,
            phase.rss_mib,
            phase.events,
            phase.events as f64 / phase.seconds,
            phase.admitted
        )?;
    }
    #[allow(clippy::cast_precision_loss)]
    let ms = |micros: u64| micros as f64 / 1000.0;
    writeln!(
        out,
        "\nadmission → ACTIVE event at the client, {} admissions: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        ms(delays.value_at_quantile(0.5)),
        ms(delays.value_at_quantile(0.99)),
        ms(delays.max())
    )?;
    Ok(())
}
