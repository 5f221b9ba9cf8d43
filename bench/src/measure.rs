//! The load loop: `concurrency` workers, each on its own connection, run units of work until the
//! time or the request budget runs out. Closed loop (each worker sends its next request as soon as
//! the previous answer is in) for peak throughput; with a rate, each unit has a start time on a
//! fixed schedule and its latency is measured from that scheduled time, so a stall is counted
//! against every request it delayed (no coordinated omission).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::client::{Call, Conn};

/// How hard and how long to push.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub concurrency: usize,
    pub duration: Duration,
    /// Upper bound of units of work, whatever the time.
    pub max_requests: u64,
    /// Units per second on a fixed schedule; `None`: closed loop, as fast as answers come.
    pub rate: Option<f64>,
}

/// What one scenario run measured.
#[derive(Debug, Clone)]
pub struct Measure {
    /// Units that got the expected answer.
    pub ok: u64,
    /// Units that failed or got another answer.
    pub failed: u64,
    pub first_failure: Option<String>,
    pub elapsed: Duration,
    /// Latency of every unit, in microseconds.
    pub latency: Histogram<u64>,
    /// CPU time the service process and its PostgreSQL backends spent during the run.
    pub cpu: Option<(Duration, Duration)>,
}

impl Measure {
    pub fn empty() -> Self {
        Self {
            ok: 0,
            failed: 0,
            first_failure: None,
            elapsed: Duration::ZERO,
            latency: new_histogram(),
            cpu: None,
        }
    }

    /// CPU microseconds per expected answer: (service, PostgreSQL).
    pub fn cpu_per_request_us(&self) -> Option<(f64, f64)> {
        let (service, database) = self.cpu?;
        #[allow(clippy::cast_precision_loss)]
        let ok = self.ok.max(1) as f64;
        Some((
            service.as_secs_f64() * 1e6 / ok,
            database.as_secs_f64() * 1e6 / ok,
        ))
    }

    /// Expected answers per second.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            let ok = self.ok as f64;
            ok / seconds
        } else {
            0.0
        }
    }

    /// Latency at quantile `q` (0..=1), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let micros = self.latency.value_at_quantile(q) as f64;
        micros / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let micros = self.latency.max() as f64;
        micros / 1000.0
    }
}

/// Microseconds from 1 µs to 60 s, three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// One unit of work (a request, or a whole journey) on a worker's connection. `n` numbers the
/// units of a run from 0, across all workers, so scenarios can hand out distinct seats or users.
pub trait Scenario: Send + Sync + 'static {
    fn run_one(&self, conn: &mut Conn, n: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The simplest scenario: one request per unit, built from `n`, whose status must be one of
/// `expected`.
pub struct Requests<F> {
    pub build: F,
    pub expected: &'static [u16],
}

impl<F> Scenario for Requests<F>
where
    F: Fn(u64) -> Call + Send + Sync + 'static,
{
    async fn run_one(&self, conn: &mut Conn, n: u64) -> anyhow::Result<()> {
        let call = (self.build)(n);
        let answer = conn.send(&call).await?;
        if self.expected.contains(&answer.status.as_u16()) {
            Ok(())
        } else {
            anyhow::bail!(
                "{} {} answered {}: {}",
                call.method,
                call.path,
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )
        }
    }
}

/// Runs `scenario` against `addr` under `load`.
pub async fn run<S: Scenario>(
    addr: SocketAddr,
    load: Load,
    scenario: Arc<S>,
) -> anyhow::Result<Measure> {
    let mut conns = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        conns.push(Conn::open(addr).await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + load.duration;
    let mut workers = Vec::with_capacity(load.concurrency);
    for mut conn in conns {
        let next = next.clone();
        let scenario = scenario.clone();
        workers.push(tokio::spawn(async move {
            let mut measure = Measure::empty();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= load.max_requests {
                    break;
                }
                let scheduled = match load.rate {
                    Some(rate) => {
                        #[allow(clippy::cast_precision_loss)]
                        let at = start + Duration::from_secs_f64(n as f64 / rate);
                        if at >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(at).await;
                        at
                    }
                    None => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        now
                    }
                };
                let result = scenario.run_one(&mut conn, n).await;
                let micros = u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX);
                measure.latency.saturating_record(micros.max(1));
                match result {
                    Ok(()) => measure.ok += 1,
                    Err(e) => {
                        measure.failed += 1;
                        if measure.first_failure.is_none() {
                            measure.first_failure = Some(format!("{e:#}"));
                        }
                    }
                }
            }
            measure
        }));
    }
    let mut total = Measure::empty();
    for worker in workers {
        let measure = worker.await?;
        total.ok += measure.ok;
        total.failed += measure.failed;
        if total.first_failure.is_none() {
            total.first_failure = measure.first_failure;
        }
        total.latency.add(&measure.latency)?;
    }
    total.elapsed = start.elapsed();
    Ok(total)
}
